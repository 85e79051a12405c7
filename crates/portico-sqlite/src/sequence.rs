//! The sequence generator on SQLite: one row per sequence holding the next value, advanced in an
//! immediate (write-locked) transaction, so values are unique and increasing across every process
//! sharing the file, and a crash can only skip values, never repeat them.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::ports::SequenceRange;
use portico_core::{Error, Result, SequenceGenerator};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;

pub struct SqliteSequence {
    db: Database,
    range: SequenceRange,
}

impl SqliteSequence {
    /// A generator handing out values from `range` (this region's part of the number space).
    pub fn new(db: Database, range: SequenceRange) -> Self {
        SqliteSequence { db, range }
    }
}

#[async_trait]
impl SequenceGenerator for SqliteSequence {
    async fn next(&self, sequence: &str) -> Result<u64> {
        let name = sequence.to_string();
        let range = self.range;
        self.db
            .transaction("sequence", move |tx| {
                let value = allocate(tx, &name, range)?;
                Ok(value)
            })
            .await
    }
}

/// Takes the next value of `name` inside the caller's write transaction, so the caller can commit
/// it together with whatever the value is for.
pub(crate) fn allocate(tx: &Connection, name: &str, range: SequenceRange) -> Result<u64> {
    // Cached statements: this runs in every account creation, on the writer thread.
    let stored: Option<i64> = tx
        .prepare_cached("SELECT next_value FROM sequences WHERE name = ?1")
        .and_then(|mut select| select.query_row(params![name], |row| row.get(0)))
        .optional()
        .context("reading sequence")?;
    // A range moved upwards by the operator takes effect; one moved below values already issued
    // never makes them issue again.
    let value = stored.map_or(range.start, |v| (v as u64).max(range.start));
    if value >= range.end {
        return Err(Error::Unavailable(format!(
            "sequence `{name}` has used up its range {}..{}; configure a new range for this region",
            range.start, range.end
        )));
    }
    tx.prepare_cached(
        "INSERT INTO sequences (name, next_value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET next_value = excluded.next_value",
    )
    .and_then(|mut advance| advance.execute(params![name, (value + 1) as i64]))
    .context("advancing sequence")?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_increase_within_the_range_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.db");
        let range = SequenceRange { start: 10, end: 13 };
        let seq = SqliteSequence::new(Database::open(&path).expect("db"), range);
        assert_eq!(seq.next("a").await.expect("value"), 10);
        assert_eq!(seq.next("a").await.expect("value"), 11);
        assert_eq!(seq.next("b").await.expect("value"), 10);
        drop(seq);

        let seq = SqliteSequence::new(Database::open(&path).expect("db"), range);
        assert_eq!(seq.next("a").await.expect("value"), 12);
        assert!(matches!(seq.next("a").await, Err(Error::Unavailable(_))));

        let moved = SqliteSequence::new(
            Database::open(&path).expect("db"),
            SequenceRange { start: 100, end: 200 },
        );
        assert_eq!(moved.next("a").await.expect("value"), 100);
    }
}
