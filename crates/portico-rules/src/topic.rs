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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("instruments/+/events", "instruments/SN1/events"));
        assert!(!matches("instruments/+/events", "instruments/SN1/telemetry"));
        assert!(!matches("instruments/+/events", "instruments/events"));
        assert!(matches("instruments/#", "instruments/SN1/events"));
        assert!(matches("instruments/#", "instruments"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("a//b", "a//b"));
    }
}
