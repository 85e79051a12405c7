//! Backoff for failed MQTT authentication, per source address and per username.
//!
//! A few failures are free (a mistyped secret, a token that expired a moment ago). Past them, the
//! key is blocked for a time that doubles with every further failure, up to a cap; while blocked,
//! CONNECTs are refused before any credential is checked, so a flood costs the server almost
//! nothing. Refusals while blocked do not lengthen the block (a legitimate client behind the same
//! address gets back in once it ends), and failures are forgotten after a quiet spell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures from one address before backoff starts (many clients can share an address).
const FREE_PER_ADDRESS: u32 = 20;
/// Failures for one username before backoff starts.
const FREE_PER_USERNAME: u32 = 5;
const FIRST_BLOCK: Duration = Duration::from_secs(1);
const LONGEST_BLOCK: Duration = Duration::from_secs(60);
/// A key with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Keys remembered at most; past it, the quiet ones are forgotten first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Username(String),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    records: HashMap<Key, Record>,
}

impl Throttle {
    /// Whether a CONNECT from `address` as `username` must be refused without a check; answers
    /// how long the block lasts.
    pub(crate) fn blocked(
        &self,
        address: Option<IpAddr>,
        username: Option<&str>,
        now: Instant,
    ) -> Option<Duration> {
        keys(address, username)
            .filter_map(|key| self.records.get(&key)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    pub(crate) fn failed(&mut self, address: Option<IpAddr>, username: Option<&str>, now: Instant) {
        if self.records.len() >= MAX_KEYS {
            self.records.retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if self.records.len() >= MAX_KEYS {
                self.records.clear();
            }
        }
        for key in keys(address, username) {
            let free = match key {
                Key::Address(_) => FREE_PER_ADDRESS,
                Key::Username(_) => FREE_PER_USERNAME,
            };
            let record = self.records.entry(key).or_insert(Record {
                failures: 0,
                last_failure: now,
                blocked_until: None,
            });
            if now.duration_since(record.last_failure) >= FORGET_AFTER {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last_failure = now;
            if record.failures > free {
                let doublings = (record.failures - free - 1).min(16);
                let block = FIRST_BLOCK.saturating_mul(1 << doublings).min(LONGEST_BLOCK);
                record.blocked_until = Some(now + block);
            }
        }
    }

    /// A successful login clears its username's record (not its address's: one good login must
    /// not reset a flood's count).
    pub(crate) fn succeeded(&mut self, username: Option<&str>) {
        if let Some(username) = username {
            self.records.remove(&Key::Username(username.to_owned()));
        }
    }
}

fn keys(address: Option<IpAddr>, username: Option<&str>) -> impl Iterator<Item = Key> {
    address.map(Key::Address).into_iter().chain(username.map(|u| Key::Username(u.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_username_is_blocked_after_its_free_failures_and_the_block_doubles() {
        let mut t = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE_PER_USERNAME {
            t.failed(None, Some("SN-1"), start);
        }
        assert_eq!(t.blocked(None, Some("SN-1"), start), None);
        t.failed(None, Some("SN-1"), start);
        assert_eq!(t.blocked(None, Some("SN-1"), start), Some(FIRST_BLOCK));
        assert_eq!(t.blocked(None, Some("SN-2"), start), None, "others are free");
        let later = start + FIRST_BLOCK;
        assert_eq!(t.blocked(None, Some("SN-1"), later), None, "the block ends");
        t.failed(None, Some("SN-1"), later);
        assert_eq!(t.blocked(None, Some("SN-1"), later), Some(FIRST_BLOCK * 2));
        for _ in 0..20 {
            t.failed(None, Some("SN-1"), later);
        }
        assert_eq!(t.blocked(None, Some("SN-1"), later), Some(LONGEST_BLOCK));
    }

    #[test]
    fn an_address_gets_more_free_failures_and_success_does_not_clear_it() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for n in 0..FREE_PER_ADDRESS {
            t.failed(HOME, Some(&format!("user-{n}")), now);
        }
        assert_eq!(t.blocked(HOME, Some("someone"), now), None);
        t.succeeded(Some("user-1"));
        t.failed(HOME, Some("user-x"), now);
        assert!(t.blocked(HOME, Some("someone"), now).is_some());
        assert!(t.blocked(None, Some("someone"), now).is_none());
    }

    #[test]
    fn success_clears_a_username_and_quiet_keys_are_forgotten() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..=FREE_PER_USERNAME {
            t.failed(None, Some("bob"), now);
        }
        t.succeeded(Some("bob"));
        assert_eq!(t.blocked(None, Some("bob"), now), None);
        for _ in 0..FREE_PER_USERNAME {
            t.failed(None, Some("carol"), now);
        }
        let much_later = now + FORGET_AFTER;
        t.failed(None, Some("carol"), much_later);
        assert_eq!(t.blocked(None, Some("carol"), much_later), None);
    }
}
