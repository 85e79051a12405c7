//! Who holds which retained message, so one identity cannot pin the broker's memory.
//!
//! The broker keeps one retained message per topic; this ledger mirrors which identity set it and
//! how large it is, and refuses a retained publish that would take its identity, or the broker,
//! past the configured count or bytes. Replacing your own message on a topic only counts the
//! difference; an empty retained payload clears the topic and frees what it held. Like the
//! retained messages themselves, it lives in memory.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub per_identity: usize,
    pub bytes_per_identity: usize,
    pub total: usize,
    pub total_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    IdentityCount,
    IdentityBytes,
    BrokerCount,
    BrokerBytes,
}

impl Refused {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::IdentityCount => "retained_count_per_identity",
            Refused::IdentityBytes => "retained_bytes_per_identity",
            Refused::BrokerCount => "retained_count",
            Refused::BrokerBytes => "retained_bytes",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    count: usize,
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    limits: Limits,
    topics: HashMap<String, (String, usize)>,
    by_identity: HashMap<String, Usage>,
    total: Usage,
}

impl Ledger {
    pub(crate) fn new(limits: Limits) -> Self {
        Ledger {
            limits,
            topics: HashMap::new(),
            by_identity: HashMap::new(),
            total: Usage::default(),
        }
    }

    /// Records `identity` retaining `bytes` on `topic`, or refuses it (and records nothing).
    pub(crate) fn retain(
        &mut self,
        identity: &str,
        topic: &str,
        bytes: usize,
    ) -> Result<(), Refused> {
        if bytes == 0 {
            self.clear(topic);
            return Ok(());
        }
        let previous = self.topics.get(topic);
        let freed_total = previous.map_or(Usage::default(), |(_, b)| Usage { count: 1, bytes: *b });
        let freed_own = match previous {
            Some((owner, b)) if owner == identity => Usage { count: 1, bytes: *b },
            _ => Usage::default(),
        };
        let own = self.by_identity.get(identity).copied().unwrap_or_default();
        if own.count - freed_own.count + 1 > self.limits.per_identity {
            return Err(Refused::IdentityCount);
        }
        if own.bytes - freed_own.bytes + bytes > self.limits.bytes_per_identity {
            return Err(Refused::IdentityBytes);
        }
        if self.total.count - freed_total.count + 1 > self.limits.total {
            return Err(Refused::BrokerCount);
        }
        if self.total.bytes - freed_total.bytes + bytes > self.limits.total_bytes {
            return Err(Refused::BrokerBytes);
        }
        self.clear(topic);
        self.topics.insert(topic.to_owned(), (identity.to_owned(), bytes));
        let own = self.by_identity.entry(identity.to_owned()).or_default();
        own.count += 1;
        own.bytes += bytes;
        self.total.count += 1;
        self.total.bytes += bytes;
        Ok(())
    }

    fn clear(&mut self, topic: &str) {
        let Some((owner, bytes)) = self.topics.remove(topic) else {
            return;
        };
        self.total.count -= 1;
        self.total.bytes -= bytes;
        if let Some(usage) = self.by_identity.get_mut(&owner) {
            usage.count -= 1;
            usage.bytes -= bytes;
            if usage.count == 0 {
                self.by_identity.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(Limits { per_identity: 2, bytes_per_identity: 100, total: 3, total_bytes: 150 })
    }

    #[test]
    fn an_identity_is_held_to_its_count_and_bytes() {
        let mut l = ledger();
        assert_eq!(l.retain("a", "t/1", 10), Ok(()));
        assert_eq!(l.retain("a", "t/2", 10), Ok(()));
        assert_eq!(l.retain("a", "t/3", 10), Err(Refused::IdentityCount));
        // Replacing one's own message counts only the difference.
        assert_eq!(l.retain("a", "t/2", 90), Ok(()));
        assert_eq!(l.retain("a", "t/2", 91), Err(Refused::IdentityBytes));
        // Clearing frees the slot.
        assert_eq!(l.retain("a", "t/1", 0), Ok(()));
        assert_eq!(l.retain("a", "t/3", 10), Ok(()));
    }

    #[test]
    fn the_broker_is_held_to_its_totals_and_takeovers_move_the_charge() {
        let mut l = ledger();
        assert_eq!(l.retain("a", "t/1", 60), Ok(()));
        assert_eq!(l.retain("b", "t/2", 60), Ok(()));
        assert_eq!(l.retain("c", "t/3", 40), Err(Refused::BrokerBytes));
        assert_eq!(l.retain("c", "t/3", 30), Ok(()));
        assert_eq!(l.retain("c", "t/4", 1), Err(Refused::BrokerCount));
        // b replaces a's message: a is charged nothing any more, b twice.
        assert_eq!(l.retain("b", "t/1", 10), Ok(()));
        assert_eq!(l.retain("a", "t/5", 10), Err(Refused::BrokerCount));
        assert_eq!(l.retain("b", "t/3", 10), Err(Refused::IdentityCount));
        assert_eq!(l.retain("b", "t/2", 0), Ok(()));
        assert_eq!(l.retain("a", "t/5", 10), Ok(()));
    }
}
