//! The audit trail on SQLite: the `audit` table `changes::record` appends to (one chain, in
//! commit order: the database has one writer), listed newest first and verified link by link.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::Result;
use portico_core::audit::{
    AuditEntry, AuditQuery, AuditRecord, AuditTrail, Broken, StoredLink, Verified,
};
use portico_core::ports::{Page, PageRequest};
use rusqlite::Row;
use rusqlite::types::Value;

use crate::rows::{Decoded, corrupt};
use crate::store::{Order, SqliteStore};

fn audit_row(row: &Row<'_>) -> rusqlite::Result<Decoded<AuditRecord>> {
    let seq: i64 = row.get(0)?;
    let body: String = row.get(1)?;
    let prev: String = row.get(2)?;
    let digest: String = row.get(3)?;
    let record = serde_json::from_str::<AuditEntry>(&body)
        .map(|entry| AuditRecord { entry, prev, digest })
        .map_err(|e| corrupt(format!("audit record {seq} does not decode: {e}")));
    Ok((seq, record))
}

#[async_trait]
impl AuditTrail for SqliteStore {
    async fn list(&self, query: &AuditQuery, page: &PageRequest) -> Result<Page<AuditRecord>> {
        let (target_kind, target_id) = match query.target.as_deref().map(|t| t.split_once(':')) {
            Some(Some((kind, id))) => (Some(kind.to_string()), Some(id.to_string())),
            Some(None) => (query.target.clone(), None),
            None => (None, None),
        };
        let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
        let number = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        let filter = [
            text(target_kind),
            text(target_id),
            text(query.actor.clone()),
            text(query.action.clone()),
            number(query.from_ms),
            number(query.to_ms),
            text(query.account_id.clone()),
        ];
        let select = "SELECT seq, body, prev, digest FROM audit WHERE
             (?2 IS NULL OR target_kind = ?2) AND (?3 IS NULL OR target_id = ?3)
             AND (?4 IS NULL OR actor_id = ?4) AND (?5 IS NULL OR action = ?5)
             AND (?6 IS NULL OR at_ms >= ?6) AND (?7 IS NULL OR at_ms < ?7)
             AND (?8 IS NULL OR account_id = ?8)";
        let params: Vec<&dyn rusqlite::ToSql> =
            filter.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        self.listing(
            select,
            &params,
            audit_row,
            page,
            Order::NewestFirst,
            "listing the audit trail",
        )
    }

    async fn verify(&self) -> Result<std::result::Result<Verified, Broken>> {
        // One read transaction sees one state of the chain, however long the walk.
        self.db.read(|conn| {
            let mut statement = conn
                .prepare("SELECT seq, body, prev, digest FROM audit ORDER BY rowid")
                .context("reading the audit trail")?;
            let links = statement.query_map([], link_row).context("reading the audit trail")?;
            let mut read_error = None;
            let verified = portico_core::audit::verify(links.map_while(|l| match l {
                Ok(link) => Some(link),
                Err(e) => {
                    read_error = Some(e);
                    None
                }
            }));
            match read_error {
                Some(e) => Err(anyhow::Error::from(e).context("reading the audit trail").into()),
                None => Ok(verified),
            }
        })
    }
}

impl SqliteStore {
    /// The audit records committed in `[from_ms, to_ms)`, in chain order, as stored (for the
    /// daily export).
    pub fn audit_links_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<StoredLink>> {
        self.db.read(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT seq, body, prev, digest FROM audit WHERE at_ms >= ?1 AND at_ms < ?2
                     ORDER BY seq",
                )
                .context("reading the audit trail")?;
            let links = statement
                .query_map(rusqlite::params![from_ms, to_ms], link_row)
                .context("reading the audit trail")?;
            Ok(links.collect::<rusqlite::Result<Vec<_>>>().context("reading the audit trail")?)
        })
    }

    /// The stored record at `seq`, if there is one.
    pub fn audit_link(&self, seq: u64) -> Result<Option<StoredLink>> {
        self.db.read(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT seq, body, prev, digest FROM audit WHERE seq = ?1")
                .context("reading the audit trail")?;
            Ok(rusqlite::OptionalExtension::optional(
                statement.query_row(rusqlite::params![seq as i64], link_row),
            )
            .context("reading the audit trail")?)
        })
    }

    /// When the first audit record was committed (ms), if there is one.
    pub fn audit_first_ms(&self) -> Result<Option<i64>> {
        self.db.read(|conn| {
            Ok(conn
                .query_row("SELECT at_ms FROM audit ORDER BY seq LIMIT 1", [], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .context("reading the audit trail")?)
        })
    }
}

fn link_row(r: &Row<'_>) -> rusqlite::Result<StoredLink> {
    Ok(StoredLink {
        seq: r.get::<_, i64>(0)?.max(0) as u64,
        canonical: r.get(1)?,
        prev: r.get(2)?,
        digest: r.get(3)?,
    })
}
