//! Portico's local adapters on SQLite: one database file in the data dir, in WAL mode, one writer
//! connection and a few readers. Implements the `Store` and `SequenceGenerator` ports.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool.

mod catalogue;
mod db;
mod queue;
mod sequence;
mod store;

pub use db::Database;
pub use queue::{DEAD_LETTER_SUFFIX, SqliteQueue};
pub use sequence::SqliteSequence;
pub use store::SqliteStore;
