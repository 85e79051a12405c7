//! Portico's local adapters on SQLite: one database file in the data dir, in WAL mode, one writer
//! connection and a few readers. `SqliteStore` implements every record port, one module per
//! aggregate (`accounts.rs`, `users.rs`, `instruments.rs`, `notifications.rs`, `documents.rs`,
//! `catalogue.rs`, `outbox.rs`, sharing `rows.rs`); `SqliteSequence` and `SqliteQueue` the
//! sequence and queue ports.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool.

mod accounts;
mod catalogue;
mod db;
mod documents;
mod instruments;
mod notifications;
mod outbox;
mod queue;
mod rows;
mod sequence;
mod store;
mod users;

pub use db::Database;
pub use queue::{DEAD_LETTER_SUFFIX, SqliteQueue};
pub use sequence::SqliteSequence;
pub use store::SqliteStore;

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

    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::new(
            database(dir),
            SequenceRange {
                start: 500,
                end: 1000,
            },
        )
    }

    #[tokio::test]
    async fn sequence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = database(&dir);
        suite::sequence::values_stay_in_range_and_increase(|range| {
            Arc::new(SqliteSequence::new(db.clone(), range)) as Arc<dyn SequenceGenerator>
        })
        .await;
        let range = SequenceRange {
            start: 1_000,
            end: 1_000_000,
        };
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
    async fn accounts() {
        let dir = tempfile::tempdir().expect("temp dir");
        suite::records::accounts::numbered_and_paged(&store(&dir)).await;
    }

    #[tokio::test]
    async fn users() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        suite::records::users::subjects_and_roles(&store, &store).await;
    }

    #[tokio::test]
    async fn instruments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        suite::records::instruments::serials_and_secrets(&store, &store).await;
    }

    #[tokio::test]
    async fn notifications() {
        let dir = tempfile::tempdir().expect("temp dir");
        suite::records::notifications::redelivery_order_and_reads(&store(&dir)).await;
    }

    #[tokio::test]
    async fn documents() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        suite::records::documents::listing_and_transitions(&store, &store, &store).await;
    }

    #[tokio::test]
    async fn catalogue() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(&dir);
        suite::records::catalogue::products_lots_and_shipments(&store, &store).await;
    }

    #[tokio::test]
    async fn outbox() {
        let dir = tempfile::tempdir().expect("temp dir");
        suite::records::outbox::leases_and_outcomes(&store(&dir)).await;
    }
}
