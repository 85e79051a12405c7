//! The broker's access policy: who may publish to and subscribe to which topics.
//!
//! A policy is a list of grants. A grant names who it is for (instruments, account members, any
//! user, or holders of some roles) and topic patterns whose levels may be `${user_id}`,
//! `${account_id}`, `${serial}` (the connected instrument) or `${account_serial}` (the serial of an
//! instrument of the caller's account). A subscription is allowed only if *every* topic its filter
//! can match is allowed, so wildcards can never widen a grant.

use serde::Deserialize;

use crate::domain::Role;

/// Who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User { user_id: String, sub: String, account_id: Option<String>, roles: Vec<Role> },
    Instrument { serial: String, account_id: String },
}

impl Principal {
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Principal::User { account_id, .. } => account_id.as_deref(),
            Principal::Instrument { account_id, .. } => Some(account_id),
        }
    }
}

/// How a client id relates to the identity connecting with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdClaim {
    /// Reserved for this identity: no one else may use it, and a session another identity holds
    /// under it is discarded when the owner connects.
    Owner,
    /// Reserved for another identity: refused.
    Foreign,
    /// Nobody's in particular: the identity whose session holds it keeps it while that session
    /// lives, and other identities are refused meanwhile.
    Free,
}

/// Whose `client_id` is. An instrument's serial belongs to that instrument
/// (`is_instrument_serial`: some registered instrument has `client_id` as its serial), and an id that begins with a
/// user id (`<user_id>`, `<user_id>-phone`, ...) belongs to that user: a stable client id that no
/// other account can squat. Everything else is free.
pub fn claim_client_id(
    principal: &Principal,
    client_id: &str,
    is_instrument_serial: bool,
) -> ClientIdClaim {
    let serial_claim = match principal {
        Principal::Instrument { serial, .. } if serial == client_id => ClientIdClaim::Owner,
        _ if is_instrument_serial => ClientIdClaim::Foreign,
        _ => ClientIdClaim::Free,
    };
    if serial_claim != ClientIdClaim::Free {
        return serial_claim;
    }
    match (leading_user_id(client_id), principal) {
        (None, _) => ClientIdClaim::Free,
        (Some(id), Principal::User { user_id, .. }) if id.eq_ignore_ascii_case(user_id) => {
            ClientIdClaim::Owner
        }
        (Some(_), _) => ClientIdClaim::Foreign,
    }
}

/// The UUID (a user id's shape) that `client_id` starts with, if it starts with one.
fn leading_user_id(client_id: &str) -> Option<&str> {
    let head = client_id.get(..36)?;
    let shaped = head.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    shaped.then_some(head)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Instrument,
    /// A user who belongs to an account.
    Member,
    /// Any user Portico knows (members and platform staff).
    User,
    Roles(Vec<Role>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Plus,
    Hash,
    UserId,
    AccountId,
    Serial,
    AccountSerial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Level>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    who: Who,
    publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
}

/// The access policy of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    grant: Vec<GrantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    who: Option<String>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// The policy of SPEC.md, plus `users/${user_id}/notifications` for platform staff, who receive
/// instrument alerts there too.
pub const DEFAULT_POLICY: &str = r#"
[[grant]]
who = "instrument"
publish = ["instruments/${serial}/telemetry", "instruments/${serial}/events"]
subscribe = ["instruments/${serial}/commands"]

[[grant]]
who = "member"
publish = ["accounts/${account_id}/channels/+"]
subscribe = ["users/${user_id}/notifications", "accounts/${account_id}/channels/+"]

[[grant]]
who = "user"
subscribe = ["users/${user_id}/notifications"]

[[grant]]
roles = ["lab_manager", "account_admin"]
publish = ["instruments/${account_serial}/commands"]
subscribe = ["instruments/${account_serial}/#"]

[[grant]]
roles = ["support", "admin"]
subscribe = ["instruments/+/#"]
"#;

impl Policy {
    pub fn default_policy() -> Policy {
        match Self::from_toml(DEFAULT_POLICY) {
            Ok(policy) => policy,
            Err(e) => unreachable!("the built-in policy does not parse: {e}"),
        }
    }

    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let grants = file
            .grant
            .into_iter()
            .enumerate()
            .map(|(i, entry)| grant(i, entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { grants })
    }

    /// Whether `principal` may do `action` on `topic` (a topic name for publish, a filter for
    /// subscribe). `serial_in_account` answers whether a serial belongs to the principal's account.
    pub fn allows(
        &self,
        principal: &Principal,
        action: Action,
        topic: &str,
        serial_in_account: &dyn Fn(&str) -> bool,
    ) -> bool {
        let valid = match action {
            Action::Publish => valid_topic_name(topic),
            Action::Subscribe => valid_topic_filter(topic),
        };
        if !valid {
            return false;
        }
        let levels: Vec<&str> = topic.split('/').collect();
        self.grants
            .iter()
            .filter(|g| applies(&g.who, principal))
            .flat_map(|g| match action {
                Action::Publish => g.publish.iter(),
                Action::Subscribe => g.subscribe.iter(),
            })
            .any(|p| covers(p, principal, &levels, serial_in_account))
    }

    /// The topic levels that some grant reads as `${account_serial}`: the serials a caller must
    /// look up before asking `allows` about `topic`. Only grants whose literal levels before the
    /// variable match the topic count, so most topics need no lookup at all.
    pub fn account_serial_candidates<'t>(&self, topic: &'t str) -> Vec<&'t str> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out: Vec<&str> = Vec::new();
        for grant in &self.grants {
            for pattern in grant.publish.iter().chain(&grant.subscribe) {
                for (i, level) in pattern.0.iter().enumerate() {
                    let prefix_matches = pattern.0[..i].iter().zip(&levels).all(|(p, t)| match p {
                        Level::Literal(lit) => lit == t,
                        _ => true,
                    });
                    if *level == Level::AccountSerial
                        && prefix_matches
                        && let Some(candidate) = levels.get(i)
                        && !out.contains(candidate)
                    {
                        out.push(candidate);
                    }
                }
            }
        }
        out
    }
}

fn grant(index: usize, entry: GrantEntry) -> Result<Grant, PolicyError> {
    let at = |m: String| PolicyError(format!("grant {}: {m}", index + 1));
    let who = match (entry.who.as_deref(), entry.roles) {
        (Some("instrument"), None) => Who::Instrument,
        (Some("member"), None) => Who::Member,
        (Some("user"), None) => Who::User,
        (None, Some(roles)) if !roles.is_empty() => Who::Roles(
            roles
                .iter()
                .map(|r| Role::parse(r).ok_or_else(|| at(format!("unknown role {r:?}"))))
                .collect::<Result<_, _>>()?,
        ),
        (Some(other), None) => {
            return Err(at(format!(
                "who = {other:?}: expected \"instrument\", \"member\" or \"user\""
            )));
        }
        _ => return Err(at("give exactly one of `who` or a non-empty `roles`".into())),
    };
    let patterns = |list: Vec<String>| -> Result<Vec<Pattern>, PolicyError> {
        list.iter().map(|p| pattern(p).map_err(|m| at(format!("{p:?}: {m}")))).collect()
    };
    let publish = patterns(entry.publish)?;
    let subscribe = patterns(entry.subscribe)?;
    let uses = |level: &Level| publish.iter().chain(&subscribe).any(|p| p.0.contains(level));
    if who != Who::Instrument && uses(&Level::Serial) {
        return Err(at("${serial} is only known for instruments".into()));
    }
    if who == Who::Instrument && (uses(&Level::UserId) || uses(&Level::AccountSerial)) {
        return Err(at("instruments have no ${user_id} or ${account_serial}".into()));
    }
    Ok(Grant { who, publish, subscribe })
}

fn pattern(text: &str) -> Result<Pattern, String> {
    if !valid_topic_filter(text) && !text.contains("${") {
        return Err("not a valid topic filter".into());
    }
    let levels: Vec<&str> = text.split('/').collect();
    let parsed = levels
        .iter()
        .enumerate()
        .map(|(i, level)| match *level {
            "+" => Ok(Level::Plus),
            "#" if i == levels.len() - 1 => Ok(Level::Hash),
            "${user_id}" => Ok(Level::UserId),
            "${account_id}" => Ok(Level::AccountId),
            "${serial}" => Ok(Level::Serial),
            "${account_serial}" => Ok(Level::AccountSerial),
            other if other.contains("${") => Err(format!("unknown variable in level {other:?}")),
            other if other.contains(['+', '#']) || other.starts_with('$') => {
                Err(format!("level {other:?} is not allowed"))
            }
            other => Ok(Level::Literal(other.to_string())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pattern(parsed))
}

fn applies(who: &Who, principal: &Principal) -> bool {
    match (who, principal) {
        (Who::Instrument, Principal::Instrument { .. }) => true,
        (Who::User, Principal::User { .. }) => true,
        (Who::Member, Principal::User { account_id, .. }) => account_id.is_some(),
        (Who::Roles(wanted), Principal::User { roles, .. }) => {
            wanted.iter().any(|r| roles.contains(r))
        }
        _ => false,
    }
}

/// Whether every topic matched by `levels` (a filter, or a plain topic name) is matched by
/// `pattern` once its variables are bound for `principal`.
fn covers(
    pattern: &Pattern,
    principal: &Principal,
    levels: &[&str],
    serial_in_account: &dyn Fn(&str) -> bool,
) -> bool {
    // `+` and `#` never match a first level that starts with `$`; neither does any grant.
    if levels.first().is_some_and(|l| l.starts_with('$')) {
        return false;
    }
    for (i, want) in pattern.0.iter().enumerate() {
        if *want == Level::Hash {
            return true;
        }
        let Some(got) = levels.get(i) else {
            return false;
        };
        let wildcard = *got == "+" || *got == "#";
        let ok = match want {
            Level::Hash => true,
            Level::Plus => *got != "#",
            Level::Literal(lit) => !wildcard && got == lit,
            Level::UserId => match principal {
                Principal::User { user_id, .. } => !wildcard && got == user_id,
                Principal::Instrument { .. } => false,
            },
            Level::AccountId => principal.account_id().is_some_and(|a| !wildcard && *got == a),
            Level::Serial => match principal {
                Principal::Instrument { serial, .. } => !wildcard && got == serial,
                Principal::User { .. } => false,
            },
            Level::AccountSerial => {
                principal.account_id().is_some()
                    && !wildcard
                    && !got.is_empty()
                    && serial_in_account(got)
            }
        };
        if !ok {
            return false;
        }
    }
    levels.len() == pattern.0.len()
}

/// A topic name one may publish to: non-empty, no wildcards, no NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A topic filter one may subscribe to: `#` only as the whole last level, `+` only whole levels.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, account: Option<&str>, roles: &[Role]) -> Principal {
        Principal::User {
            user_id: id.into(),
            sub: format!("{id}@example.com"),
            account_id: account.map(str::to_owned),
            roles: roles.to_vec(),
        }
    }

    fn instrument(serial: &str, account: &str) -> Principal {
        Principal::Instrument { serial: serial.into(), account_id: account.into() }
    }

    /// Account `a1` owns instrument `SN1`; account `a2` owns `SN2`.
    fn check(p: &Principal, action: Action, topic: &str) -> bool {
        let policy = Policy::default_policy();
        let account = p.account_id().map(str::to_owned);
        policy.allows(p, action, topic, &|serial| match serial {
            "SN1" => account.as_deref() == Some("a1"),
            "SN2" => account.as_deref() == Some("a2"),
            _ => false,
        })
    }

    use Action::{Publish as P, Subscribe as S};

    #[test]
    fn the_spec_table_row_by_row() {
        let sn1 = instrument("SN1", "a1");
        let rows: &[(&Principal, Action, &str, bool)] = &[
            (&sn1, P, "instruments/SN1/telemetry", true),
            (&sn1, P, "instruments/SN1/events", true),
            (&sn1, P, "instruments/SN2/events", false),
            (&sn1, P, "instruments/SN1/commands", false),
            (&sn1, S, "instruments/SN1/commands", true),
            (&sn1, S, "instruments/SN1/#", false),
            (&sn1, S, "instruments/+/commands", false),
        ];
        for (p, a, t, want) in rows {
            assert_eq!(check(p, *a, t), *want, "{p:?} {a:?} {t}");
        }
        let sci = user("u1", Some("a1"), &[Role::Scientist]);
        let lm = user("u2", Some("a1"), &[Role::LabManager]);
        let aa = user("u3", Some("a1"), &[Role::AccountAdmin]);
        let support = user("u4", None, &[Role::Support]);
        let admin = user("u5", None, &[Role::Admin]);
        let rows: &[(&Principal, Action, &str, bool)] = &[
            (&sci, P, "accounts/a1/channels/general", true),
            (&sci, P, "accounts/a2/channels/general", false),
            (&sci, S, "accounts/a1/channels/+", true),
            (&sci, S, "accounts/a1/channels/general", true),
            (&sci, S, "accounts/a1/channels/#", false),
            (&sci, S, "users/u1/notifications", true),
            (&sci, S, "users/u2/notifications", false),
            (&sci, S, "instruments/SN1/events", false),
            (&sci, P, "instruments/SN1/commands", false),
            (&lm, P, "instruments/SN1/commands", true),
            (&lm, P, "instruments/SN2/commands", false),
            (&lm, S, "instruments/SN1/#", true),
            (&lm, S, "instruments/SN1/events", true),
            (&lm, S, "instruments/SN2/events", false),
            (&lm, S, "instruments/+/events", false),
            (&lm, S, "instruments/#", false),
            (&aa, P, "instruments/SN1/commands", true),
            (&aa, S, "instruments/SN1/telemetry", true),
            (&support, S, "instruments/+/#", true),
            (&support, S, "instruments/SN2/events", true),
            (&support, S, "users/u4/notifications", true),
            (&support, P, "instruments/SN1/commands", false),
            (&support, S, "accounts/a1/channels/+", false),
            (&admin, S, "instruments/#", false),
            (&admin, S, "instruments/+/#", true),
        ];
        for (p, a, t, want) in rows {
            assert_eq!(check(p, *a, t), *want, "{p:?} {a:?} {t}");
        }
    }

    #[test]
    fn wildcards_and_odd_topics_never_widen_a_grant() {
        let sci = user("u1", Some("a1"), &[Role::Scientist]);
        let admin = user("u5", None, &[Role::Admin, Role::Support]);
        for filter in [
            "#",
            "+/#",
            "users/+/notifications",
            "users/#",
            "+/u1/notifications/#",
            "accounts/+/channels/+",
            "$SYS/#",
            "$SYS/broker/uptime",
            "users/u1/notifications/#",
            "users/u1/+",
            "",
            "users/u1/notifications/extra",
        ] {
            assert!(!check(&sci, S, filter), "{filter}");
        }
        assert!(!check(&admin, S, "#"));
        assert!(!check(&admin, S, "+/+/#"));
        assert!(!check(&admin, S, "$SYS/#"));
        for topic in
            ["accounts/a1/channels/+", "accounts/a1/channels/#", "", "accounts/a1/channels/"]
        {
            // An empty last level is a distinct (allowed) channel name; wildcards never publish.
            let want = topic == "accounts/a1/channels/";
            assert_eq!(check(&sci, P, topic), want, "{topic:?}");
        }
    }

    #[test]
    fn topic_names_and_filters() {
        assert!(valid_topic_filter("a/+/b/#"));
        for bad in ["a/#/b", "a/b#", "a/+b", ""] {
            assert!(!valid_topic_filter(bad), "{bad:?}");
        }
        assert!(valid_topic_name("a/b"));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name(""));
    }

    #[test]
    fn policy_files_are_checked() {
        let custom = r#"
            [[grant]]
            roles = ["scientist"]
            subscribe = ["labs/${account_id}/#"]
        "#;
        let policy = Policy::from_toml(custom).expect("parses");
        let sci = user("u1", Some("a1"), &[Role::Scientist]);
        assert!(policy.allows(&sci, S, "labs/a1/x/y", &|_| false));
        assert!(!policy.allows(&sci, S, "labs/+/x", &|_| false));
        for bad in [
            "[[grant]]\nwho = \"robot\"\n",
            "[[grant]]\nwho = \"member\"\nroles = [\"admin\"]\n",
            "[[grant]]\nroles = [\"wizard\"]\n",
            "[[grant]]\nwho = \"member\"\nsubscribe = [\"a/${nope}\"]\n",
            "[[grant]]\nwho = \"member\"\nsubscribe = [\"a/#/b\"]\n",
            "[[grant]]\nwho = \"member\"\nsubscribe = [\"x/${serial}\"]\n",
        ] {
            assert!(Policy::from_toml(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Policy::default_policy().account_serial_candidates("instruments/SN9/events"),
            vec!["SN9"]
        );
        assert!(
            Policy::default_policy().account_serial_candidates("accounts/a1/channels/x").is_empty()
        );
    }

    #[test]
    fn client_ids_of_instruments_and_user_prefixes_are_reserved() {
        use ClientIdClaim::{Foreign, Free, Owner};
        let bob_id = "0190b1c2-7a3e-7cde-8f01-23456789abcd";
        let bob = user(bob_id, Some("a1"), &[Role::Scientist]);
        let mallory = user("0190b1c2-0000-7cde-8f01-23456789abcd", Some("a2"), &[]);
        let sn1 = instrument("SN1", "a1");
        let rows: &[(&Principal, &str, bool, ClientIdClaim)] = &[
            (&sn1, "SN1", true, Owner),
            (&sn1, "SN2", true, Foreign),
            (&sn1, "rig-7", false, Free),
            (&bob, "SN1", true, Foreign),
            (&bob, "bob-phone", false, Free),
            (&bob, bob_id, false, Owner),
            (&bob, "0190B1C2-7A3E-7CDE-8F01-23456789ABCD-phone", false, Owner),
            (&bob, &format!("{bob_id}/laptop"), false, Owner),
            (&mallory, &format!("{bob_id}-phone"), false, Foreign),
            (&sn1, bob_id, false, Foreign),
            (&mallory, "0190b1c2-7a3e-7cde-8f01", false, Free),
            (&mallory, "zz90b1c2-7a3e-7cde-8f01-23456789abcd", false, Free),
        ];
        for (principal, client_id, serial, expected) in rows {
            assert_eq!(
                claim_client_id(principal, client_id, *serial),
                *expected,
                "{principal:?} as {client_id}"
            );
        }
    }
}
