//! The change table: every domain write appends its record here in the write's own transaction
//! (`record`), so a consumer (the graph projector) that reads the table from its checkpoint on
//! misses nothing that was committed, and sees it in commit order.

use anyhow::Context;
use portico_core::Result;
use portico_core::domain::from_unix_ms;
use portico_core::graph::{Change, ChangeRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;
use crate::rows::{corrupt, now_ms};

/// Appends `change` in the caller's transaction.
pub(crate) fn record(conn: &Connection, change: &Change) -> Result<()> {
    let body = serde_json::to_string(change).context("encoding change")?;
    let mut statement = conn
        .prepare_cached("INSERT INTO changes (at_ms, body) VALUES (?1, ?2)")
        .context("recording change")?;
    statement.execute(params![now_ms(), body]).context("recording change")?;
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
