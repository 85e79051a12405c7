//! The change table: every domain write appends its record here in the write's own transaction
//! (`record`), so a consumer (the graph projector) that reads the table from its checkpoint on
//! misses nothing that was committed, and sees it in commit order.

use anyhow::Context;
use portico_core::Result;
use portico_core::audit::{self, AuditEntry};
use portico_core::domain::from_unix_ms;
use portico_core::graph::{Change, ChangeRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;
use crate::rows::{corrupt, now_ms};

/// Appends `change` in the caller's transaction, and its audit record: who (the acting context
/// of the write), what changed (against the target's previous change), chained after the last
/// audit record. A write that changed nothing is not audited, nor a sign-in (`audit::audited`).
pub(crate) fn record(conn: &Connection, change: &Change) -> Result<()> {
    let at_ms = now_ms();
    let body = serde_json::to_string(change).context("encoding change")?;
    let mut statement = conn
        .prepare_cached("INSERT INTO changes (at_ms, body) VALUES (?1, ?2)")
        .context("recording change")?;
    statement.execute(params![at_ms, body]).context("recording change")?;
    let change_seq = conn.last_insert_rowid();
    if !audit::audited(change) {
        return Ok(());
    }

    // The target's previous state: the change its last audit record names.
    let (target, value) = audit::target_of(change);
    let previous: Option<String> = conn
        .prepare_cached(
            "SELECT c.body FROM audit a JOIN changes c ON c.seq = a.change_seq
             WHERE a.target_kind = ?1 AND a.target_id = ?2 ORDER BY a.seq DESC LIMIT 1",
        )
        .and_then(|mut s| s.query_row(params![target.kind, target.id], |r| r.get(0)).optional())
        .context("reading the previous change")?;
    let previous = match previous {
        Some(body) => {
            let change: Change = serde_json::from_str(&body).map_err(|e| {
                corrupt(format!(
                    "the previous change of {}:{} does not decode: {e}",
                    target.kind, target.id
                ))
            })?;
            Some(audit::target_of(&change).1)
        }
        None => None,
    };
    if previous.as_ref() == Some(&value) {
        return Ok(());
    }
    let (last, prev): (i64, String) = conn
        .prepare_cached("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .context("reading the audit chain's head")?
        .unwrap_or((0, audit::GENESIS.to_string()));
    let at = from_unix_ms(at_ms).ok_or_else(|| corrupt(format!("bad clock: {at_ms}")))?;
    let acting = audit::current();
    let entry = AuditEntry::of(last as u64 + 1, at, &acting, change, previous.as_ref());
    let record = audit::chain(entry, &prev);
    let canonical = record.entry.canonical();
    conn.prepare_cached(
        "INSERT INTO audit (seq, at_ms, change_seq, actor_id, action, target_kind, target_id,
                            account_id, body, prev, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            record.entry.seq as i64,
            at_ms,
            change_seq,
            record.entry.actor.id,
            record.entry.action,
            record.entry.target_kind,
            record.entry.target_id,
            record.entry.account_id,
            canonical,
            record.prev,
            record.digest,
        ])
    })
    .context("recording the audit record")?;
    Ok(())
}

/// Reads the change table for its consumers, and keeps each consumer's checkpoint.
#[derive(Clone)]
pub struct ChangeFeed {
    db: Database,
}

impl ChangeFeed {
    pub fn new(db: Database) -> Self {
        ChangeFeed { db }
    }

    /// Up to `limit` changes after sequence number `after`, oldest first. A record's version is
    /// its sequence number.
    pub fn after(&self, after: i64, limit: u32) -> Result<Vec<ChangeRecord>> {
        let rows: Vec<(i64, i64, String)> = self.db.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT seq, at_ms, body FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .context("reading changes")?;
            let rows = statement
                .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .context("reading changes")?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>().context("reading changes")?)
        })?;
        rows.into_iter()
            .map(|(seq, at_ms, body)| {
                let change: Change = serde_json::from_str(&body)
                    .map_err(|e| corrupt(format!("change {seq} does not decode: {e}")))?;
                let at = from_unix_ms(at_ms)
                    .ok_or_else(|| corrupt(format!("change {seq} has a bad time: {at_ms}")))?;
                Ok(ChangeRecord { version: seq.max(0) as u128, at, change })
            })
            .collect()
    }

    /// The sequence number of the newest change (0 when there is none).
    pub fn latest(&self) -> Result<i64> {
        self.db.read(|conn| {
            Ok(conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| r.get(0))
                .context("reading the newest change")?)
        })
    }

    /// How far `consumer` has got; `None` before its first run.
    pub fn checkpoint(&self, consumer: &str) -> Result<Option<i64>> {
        self.db.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT seq FROM change_checkpoints WHERE consumer = ?1",
                    params![consumer],
                    |r| r.get(0),
                )
                .optional()
                .context("reading a change checkpoint")?)
        })
    }

    pub async fn set_checkpoint(&self, consumer: &str, seq: i64) -> Result<()> {
        let consumer = consumer.to_string();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO change_checkpoints (consumer, seq) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                    params![consumer, seq],
                )
                .context("writing a change checkpoint")?;
                Ok(())
            })
            .await
    }
}
