//! The audit trail's side of the domain: who changed which record, when, what changed and why,
//! in records that are append-only and hash-chained, so that an edited, deleted or reordered
//! record shows (FDA 21 CFR Part 11, EU GMP Annex 11).
//!
//! Every domain write already appends a change record (the whole new record) in its own
//! transaction; the stores append the audit record beside it, in the same transaction, from the
//! change (`AuditEntry::of`: the target and the diff against the target's previous state) and
//! from the acting context. The acting context (`Acting`: the actor, their roles, the request id,
//! a reason) is set by the hosts where a request, a rule invocation or a job begins (`scope`),
//! filled in by the authorizer once the caller is known (`set_actor`) and by functions that take
//! a reason (`set_reason`), and read by the stores (`current`). It travels with the task, like a
//! request id in a log span, so the ports do not each grow an argument for it.
//!
//! The chain: each record carries the digest of the one before it (`prev`), and its own
//! (`digest` = SHA-256 of `prev`, a newline and the record's canonical JSON). `verify` walks a
//! chain and names the first record that does not fit.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::Caller;
use crate::graph::Change;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person, through the API (or an MQTT client).
    User,
    /// An instrument, through the events it published.
    Instrument,
    /// Portico itself: a worker, a rule's built-in function, the demo seed, the CLI.
    System,
}

/// Who acted, as they were at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user id (or, for a caller without a user record yet, their `sub`), the instrument's
    /// serial, or the system function's name.
    pub id: String,
    /// The identity provider's subject, for users.
    pub sub: Option<String>,
    /// The roles the actor held when acting.
    pub roles: Vec<String>,
}

impl Actor {
    pub fn system(function: &str) -> Actor {
        Actor { kind: ActorKind::System, id: function.to_string(), sub: None, roles: Vec::new() }
    }

    pub fn instrument(serial: &str) -> Actor {
        Actor { kind: ActorKind::Instrument, id: serial.to_string(), sub: None, roles: Vec::new() }
    }

    pub fn caller(caller: &Caller) -> Actor {
        Actor {
            kind: ActorKind::User,
            id: caller.user_id().unwrap_or(&caller.sub).to_string(),
            sub: Some(caller.sub.clone()),
            roles: caller.roles().iter().map(|r| r.as_str().to_string()).collect(),
        }
    }
}

/// The context of a write: who, in which request, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub reason: Option<String>,
}

impl Acting {
    pub fn new(actor: Actor, request_id: Option<String>) -> Acting {
        Acting { actor, request_id, reason: None }
    }
}

tokio::task_local! {
    static ACTING: Arc<Mutex<Acting>>;
}

thread_local! {
    /// The acting context on a blocking thread (a store's writer runs there).
    static BLOCKING: RefCell<Option<Acting>> = const { RefCell::new(None) };
}

/// Runs `future` as `acting`: every write it makes is attributed to it.
pub async fn scope<F: std::future::Future>(acting: Acting, future: F) -> F::Output {
    ACTING.scope(Arc::new(Mutex::new(acting)), future).await
}

fn update(f: impl FnOnce(&mut Acting)) {
    let _ = ACTING.try_with(|acting| {
        if let Ok(mut acting) = acting.lock() {
            f(&mut acting);
        }
    });
}

/// The actor of the current scope, once the caller is known (the authorizer calls this).
pub fn set_actor(actor: Actor) {
    update(|acting| acting.actor = actor);
}

/// The reason the caller gave (a recall's, say), for the writes that follow in this scope.
pub fn set_reason(reason: &str) {
    update(|acting| acting.reason = Some(reason.to_string()));
}

/// The acting context of this task (or of the blocking call a store runs it in); outside of any
/// scope, Portico itself.
pub fn current() -> Acting {
    if let Ok(acting) = ACTING.try_with(|acting| acting.lock().map(|a| a.clone()).ok())
        && let Some(acting) = acting
    {
        return acting;
    }
    BLOCKING
        .with(|b| b.borrow().clone())
        .unwrap_or_else(|| Acting::new(Actor::system("portico"), None))
}

/// Runs `f` (on a blocking thread) with `acting` as the current context.
pub fn within<T>(acting: Acting, f: impl FnOnce() -> T) -> T {
    let before = BLOCKING.with(|b| b.replace(Some(acting)));
    let value = f();
    BLOCKING.with(|b| *b.borrow_mut() = before);
    value
}

/// One field's change. Secrets never appear: only that they changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    /// Any JSON value (null: the field had none).
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Fields whose values never go into the trail.
const SECRET_FIELDS: [&str; 4] = ["device_secret", "device_secret_hash", "secret", "password"];
const REDACTED: &str = "(changed)";

/// The changed top-level fields of `new` against `old` (all of them for a creation).
pub fn diff(old: Option<&Value>, new: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (before, after) = (old.get(name), new.get(name));
            if before == after
                || (before.is_none_or(Value::is_null) && after.is_none_or(Value::is_null))
            {
                return None;
            }
            let secret = SECRET_FIELDS.contains(&name.as_str());
            let shown = |v: Option<&Value>| {
                v.filter(|v| !v.is_null())
                    .map(|v| if secret { Value::from(REDACTED) } else { v.clone() })
            };
            Some(FieldChange { field: name.clone(), old: shown(before), new: shown(after) })
        })
        .collect()
}

/// What an audit record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `account`, `user`, `instrument`, `product`, `lot`, `shipment`, `lot_use`, `document`,
    /// `alert`, `sign_in`.
    pub kind: &'static str,
    pub id: String,
    /// The account the record belongs to (what an `account_admin` may review), if one.
    pub account_id: Option<String>,
}

/// Whether a change gets an audit record. A sign-in changes no record (it is access, kept for
/// the reports), so it is not audited: the trail stays "who changed what".
pub fn audited(change: &Change) -> bool {
    !matches!(change, Change::SignIn(_))
}

/// The target of a change, and the record as JSON.
pub fn target_of(change: &Change) -> (Target, Value) {
    let (kind, id, account_id, value) = match change {
        Change::Account(a) => ("account", a.id.clone(), Some(a.id.clone()), json(a)),
        Change::User(u) => ("user", u.id.clone(), u.account_id.clone(), json(u)),
        Change::Instrument(i) => {
            ("instrument", i.serial.clone(), Some(i.account_id.clone()), json(i))
        }
        Change::Product(p) => ("product", p.sku.clone(), None, json(p)),
        Change::Lot(l) => ("lot", l.lot_number.clone(), None, json(l)),
        Change::Shipment(s) => ("shipment", s.id.clone(), Some(s.account_id.clone()), json(s)),
        Change::LotUse(u) => ("lot_use", u.id.clone(), Some(u.account_id.clone()), json(u)),
        Change::Document(d) => ("document", d.id.clone(), Some(d.account_id.clone()), json(d)),
        Change::Alert(a) => ("alert", a.id.clone(), Some(a.account_id.clone()), json(a)),
        Change::SignIn(s) => ("sign_in", s.id.clone(), s.account_id.clone(), json(s)),
    };
    (Target { kind, id, account_id }, value)
}

/// A record as JSON (every domain record serializes; `Null` would only diff as empty).
fn json<T: Serialize>(record: &T) -> Value {
    serde_json::to_value(record).unwrap_or_default()
}

/// An audit record before it is chained: what the stores write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Its place in its chain, from 1.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub actor: Actor,
    /// `create` or `update` (a recall is an update of its lot, with the reason).
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub account_id: Option<String>,
    pub changes: Vec<FieldChange>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// The entry for `change` at `seq`, given the target's previous state (`None`: created now).
    pub fn of(
        seq: u64,
        at: OffsetDateTime,
        acting: &Acting,
        change: &Change,
        previous: Option<&Value>,
    ) -> AuditEntry {
        let (target, value) = target_of(change);
        let mut changes = diff(previous, &value);
        // A registration sets the device secret; the record does not hold it, so say so here.
        if previous.is_none() && target.kind == "instrument" {
            changes.push(FieldChange {
                field: "device_secret".into(),
                old: None,
                new: Some(REDACTED.into()),
            });
        }
        let action = if previous.is_none() { "create" } else { "update" };
        AuditEntry {
            seq,
            at,
            actor: acting.actor.clone(),
            action: action.into(),
            target_kind: target.kind.into(),
            target_id: target.id,
            account_id: target.account_id,
            changes,
            reason: acting.reason.clone(),
            request_id: acting.request_id.clone(),
        }
    }

    /// The canonical JSON the digest is taken over (field order fixed by the struct).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A stored audit record: the entry, the digest of the record before it, and its own.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecord {
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev: String,
    pub digest: String,
}

/// The `prev` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The digest of a record whose canonical JSON is `canonical`, after the record digested `prev`.
pub fn digest(prev: &str, canonical: &str) -> String {
    let mut input = Vec::with_capacity(prev.len() + 1 + canonical.len());
    input.extend_from_slice(prev.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(canonical.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Chains `entry` after the record whose digest is `prev`.
pub fn chain(entry: AuditEntry, prev: &str) -> AuditRecord {
    let digest = digest(prev, &entry.canonical());
    AuditRecord { entry, prev: prev.to_string(), digest }
}

/// A stored record as read back: its sequence number, the canonical JSON as stored, and the
/// digests as stored (verification recomputes from exactly these bytes).
#[derive(Debug, Clone)]
pub struct StoredLink {
    pub seq: u64,
    pub canonical: String,
    pub prev: String,
    pub digest: String,
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first record that does not fit (or, for a missing record, the one after the gap).
    pub seq: u64,
    pub why: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// The digest of the last record (what a signed export anchors).
    pub head: String,
}

/// Walks `links` (in stored order) and checks each one: its sequence number follows the last
/// (nothing deleted, nothing moved), its `prev` is the last record's digest, its digest is its
/// own, and its content says the same sequence number.
pub fn verify(links: impl IntoIterator<Item = StoredLink>) -> Result<Verified, Broken> {
    let mut expected_prev = GENESIS.to_string();
    let mut records = 0;
    for (expected_seq, link) in (1u64..).zip(links) {
        if link.seq != expected_seq {
            return Err(Broken {
                seq: link.seq,
                why: format!("record {expected_seq} is missing (found {} next)", link.seq),
            });
        }
        if link.prev != expected_prev {
            return Err(Broken {
                seq: link.seq,
                why: "its prev is not the digest of the record before it (moved or rewritten)"
                    .into(),
            });
        }
        if digest(&link.prev, &link.canonical) != link.digest {
            return Err(Broken {
                seq: link.seq,
                why: "its content does not match its digest (edited)".into(),
            });
        }
        let said: Option<u64> = serde_json::from_str::<Value>(&link.canonical)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64));
        if said != Some(link.seq) {
            return Err(Broken { seq: link.seq, why: "its content names another place".into() });
        }
        expected_prev = link.digest;
        records += 1;
    }
    Ok(Verified { records, head: expected_prev })
}

/// A search of the trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// `kind:id` (e.g. `lot:L-1`) or a kind alone (`lot`).
    pub target: Option<String>,
    /// An actor's id (user id, serial, function) or `sub`.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only records of this account (what an `account_admin` sees).
    pub account_id: Option<String>,
}

/// Reads the trail (newest first) and walks the chain.
#[async_trait::async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    async fn list(
        &self,
        query: &AuditQuery,
        page: &crate::ports::PageRequest,
    ) -> crate::Result<crate::ports::Page<AuditRecord>>;
    async fn verify(&self) -> crate::Result<Result<Verified, Broken>>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the report
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_name_changed_fields_and_hide_secrets() {
        let old = json!({"name": "Acme", "kind": "customer", "secret": "a", "gone": 1});
        let new = json!({"name": "Acme Labs", "kind": "customer", "secret": "b"});
        let changes = diff(Some(&old), &new);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["gone", "name", "secret"]);
        assert_eq!(changes[1].old, Some(json!("Acme")));
        assert_eq!(changes[1].new, Some(json!("Acme Labs")));
        assert_eq!(changes[2].new, Some(json!("(changed)")), "a secret's value never shows");
        assert_eq!(diff(None, &json!({"a": null})), Vec::new());
    }

    fn links(n: u64) -> Vec<StoredLink> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let canonical = json!({"seq": seq, "x": seq * 10}).to_string();
                let digest = digest(&prev, &canonical);
                let link =
                    StoredLink { seq, canonical, prev: prev.clone(), digest: digest.clone() };
                prev = digest;
                link
            })
            .collect()
    }

    #[test]
    fn verification_finds_edits_deletions_and_reorders() {
        assert_eq!(verify(links(5)).unwrap().records, 5);
        let mut edited = links(5);
        edited[2].canonical = json!({"seq": 3, "x": 31}).to_string();
        assert_eq!(verify(edited).unwrap_err().seq, 3);
        let mut deleted = links(5);
        deleted.remove(1);
        assert_eq!(verify(deleted).unwrap_err().seq, 3);
        let mut swapped = links(5);
        swapped.swap(1, 2);
        let (a, b) = (swapped[1].seq, swapped[2].seq);
        swapped[1].seq = b;
        swapped[2].seq = a;
        assert_eq!(verify(swapped).unwrap_err().seq, 2, "a reordered pair");
        let mut tail_cut = links(5);
        tail_cut.pop();
        assert_eq!(verify(tail_cut).unwrap().records, 4, "(a cut tail is what anchors catch)");
    }

    #[tokio::test]
    async fn the_acting_context_travels_with_the_task() {
        assert_eq!(current().actor, Actor::system("portico"));
        let acting = Acting::new(Actor::system("http"), Some("req-1".into()));
        let seen = scope(acting, async {
            set_actor(Actor::instrument("SN-1"));
            set_reason("contaminated");
            let now = current();
            within(now.clone(), current)
        })
        .await;
        assert_eq!(seen.actor, Actor::instrument("SN-1"));
        assert_eq!(seen.reason.as_deref(), Some("contaminated"));
        assert_eq!(seen.request_id.as_deref(), Some("req-1"));
    }
}
