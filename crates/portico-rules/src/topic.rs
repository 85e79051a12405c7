//! MQTT topic names and filters.

/// Whether `topic` (a topic name, no wildcards) matches `filter` (which may use `+` and `#`).
/// Topics starting with `$` are only matched by filters that start with the same `$` level, as
/// MQTT requires (so `#` never matches `$SYS/...`).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Checks a topic filter: non-empty, `#` only as the whole last level, `+` only as a whole level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains('#') && !other.contains('+'),
    })
}

/// Checks a topic name for publishing: non-empty, no wildcards.
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("instruments/+/events", "instruments/SN1/events"));
        assert!(!matches(
            "instruments/+/events",
            "instruments/SN1/telemetry"
        ));
        assert!(!matches("instruments/+/events", "instruments/events"));
        assert!(matches("instruments/#", "instruments/SN1/events"));
        assert!(matches("instruments/#", "instruments"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("a//b", "a//b"));
    }

    #[test]
    fn filter_and_name_validity() {
        assert!(valid_filter("a/+/b/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b#"));
        assert!(!valid_filter("a/+b"));
        assert!(!valid_filter(""));
        assert!(valid_name("a/b"));
        assert!(!valid_name("a/+"));
        assert!(!valid_name(""));
    }
}
