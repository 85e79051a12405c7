//! Portico's local adapters on SQLite: one database file in the data dir, in WAL mode, one writer
//! connection and a few readers. `SqliteStore` implements every record port, one module per
//! aggregate (`accounts.rs`, `users.rs`, `instruments.rs`, `notifications.rs`, `documents.rs`,
//! `catalogue.rs`, `outbox.rs`, sharing `rows.rs`); `SqliteSequence` and `SqliteQueue` the
//! sequence and queue ports.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool.

mod accounts;
mod audit;
pub mod backup;
mod catalogue;
mod changes;
mod db;
mod documents;
mod graph;
mod instruments;
mod notifications;
mod outbox;
mod queue;
mod rows;
mod sequence;
mod store;
mod users;
mod warehouse;

pub use changes::ChangeFeed;
pub use db::Database;
pub use graph::SqliteGraph;
pub use queue::{DEAD_LETTER_SUFFIX, SqliteQueue};
pub use sequence::SqliteSequence;
pub use store::SqliteStore;
pub use warehouse::{Loaded, SqliteWarehouse, snapshot};

/// The shared adapter contract (`portico-contract`), run on the SQLite adapters.
#[cfg(test)]
mod contract {
    use std::sync::Arc;

    use portico_contract as suite;
    use portico_core::ports::SequenceRange;
    use portico_core::{Queue, SequenceGenerator};

    use crate::{Database, SqliteQueue, SqliteSequence, SqliteStore};

    fn database(dir: &tempfile::TempDir) -> Database {
        Database::open(&dir.path().join("portico.db")).expect("db")
    }

    #[tokio::test]
    async fn sequence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = database(&dir);
        suite::sequence::values_stay_in_range_and_increase(|range| {
            Arc::new(SqliteSequence::new(db.clone(), range)) as Arc<dyn SequenceGenerator>
        })
        .await;
        let range = SequenceRange { start: 1_000, end: 1_000_000 };
        let generators = (0..2)
            .map(|_| {
                Arc::new(SqliteSequence::new(database(&dir), range)) as Arc<dyn SequenceGenerator>
            })
            .collect();
        suite::sequence::concurrent_callers_never_share_a_value(generators, range, 200).await;
    }

    #[tokio::test]
    async fn queue() {
        let dir = tempfile::tempdir().expect("temp dir");
        let q: Arc<dyn Queue> = Arc::new(SqliteQueue::new(database(&dir), 3));
        suite::queue::visibility_receipts_and_dead_letters(q.as_ref(), "contract-a").await;
        suite::queue::long_polling_visibility_changes_and_deletes(q, "contract-b").await;
    }

    #[tokio::test]
    async fn graph() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut made = 0;
        suite::graph::projection_is_idempotent_and_order_free(|| {
            made += 1;
            let db = Database::open(&dir.path().join(format!("graph-{made}.db"))).expect("db");
            async move { crate::SqliteGraph::new(db) }
        })
        .await;
    }

    #[tokio::test]
    async fn every_record_port() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut made = 0;
        suite::records::every_port(|| {
            made += 1;
            let db = Database::open(&dir.path().join(format!("store-{made}.db"))).expect("db");
            let range = SequenceRange { start: 500, end: 1000 };
            async move { SqliteStore::new(db, range) }
        })
        .await;
    }
}
