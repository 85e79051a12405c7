//! The audit trail: who changed which record, when, what and why (`GET /v1/audit`), as JSON or
//! CSV, for platform staff and, for their own account, account admins.

use portico_core::Result;
use portico_core::audit::{AuditQuery, AuditRecord};
use portico_core::domain::Caller;
use portico_core::policy;
use portico_core::ports::{Page, PageRequest};

use crate::Context;

/// `GET /v1/audit`: matching records, newest first. An account admin's query is held to their
/// account whatever it asks.
pub async fn list(
    ctx: &Context,
    caller: &Caller,
    mut query: AuditQuery,
    page: PageRequest,
) -> Result<Page<AuditRecord>> {
    if let Some(account) = policy::read_audit(caller)? {
        query.account_id = Some(account);
    }
    // Records name a user by their id; a `sub` asked for is that user's id.
    if let Some(actor) = &query.actor
        && let Some(user) = ctx.users.user_by_sub(actor).await?
    {
        query.actor = Some(user.id);
    }
    ctx.audit.list(&query, &page).await
}

/// The CSV header of `csv`.
pub const CSV_HEADER: &str = "seq,at,actor_kind,actor_id,actor_sub,actor_roles,action,target_kind,target_id,account_id,field,old,new,reason,request_id,digest\n";

/// Records as CSV: one row per changed field (a record without field changes gets one row).
pub fn csv(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for record in records {
        let e = &record.entry;
        let at = e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let kind = serde_json::to_value(&e.actor.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let value = |v: &Option<serde_json::Value>| match v {
            None => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let mut rows: Vec<(String, String, String)> =
            e.changes.iter().map(|c| (c.field.clone(), value(&c.old), value(&c.new))).collect();
        if rows.is_empty() {
            rows.push(Default::default());
        }
        for (field, old, new) in rows {
            let cells = [
                e.seq.to_string(),
                at.clone(),
                kind.clone(),
                e.actor.id.clone(),
                e.actor.sub.clone().unwrap_or_default(),
                e.actor.roles.join(" "),
                e.action.clone(),
                e.target_kind.clone(),
                e.target_id.clone(),
                e.account_id.clone().unwrap_or_default(),
                field,
                old,
                new,
                e.reason.clone().unwrap_or_default(),
                e.request_id.clone().unwrap_or_default(),
                record.digest.clone(),
            ];
            out.push_str(&portico_core::csv::line(cells.iter().map(String::as_str)));
        }
    }
    out
}
