//! Portico's local log store. Every line `portico serve` and `portico worker` log is also kept
//! in `<data_dir>/logs/logs.db` (SQLite; an FTS5 index of each line's text; the fields asked by
//! most often, `function`, `request_id` and `serial`, in indexed columns), written by one thread
//! from a bounded queue so that logging never waits for the disk, trimmed by age and size, and
//! searched with Kibana's query syntax (`portico_core::logs::query`), translated into SQL with
//! every value bound as a parameter. Beside it: `opensearch` (the same lines in OpenSearch: the
//! `_bulk` sink and the search over it) and `ship` (`portico ship-logs`, the file shipper).

mod layer;
pub mod opensearch;
pub mod ship;
mod store;

pub use layer::StoreLayer;
pub use store::{DROPPED, LogWriter, Retention, SqliteLogs, highlight, open, path};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the report
mod tests;
