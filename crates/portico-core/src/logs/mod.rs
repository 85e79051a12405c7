//! The log store's side of the domain: one log line, a search over lines (a query in Kibana's
//! syntax, parsed into `Query` by `query::parse`, and a time range), and the `LogStore` port
//! that answers it (locally SQLite with FTS5; on AWS, OpenSearch).

pub mod query;

pub use query::{QueryError, parse};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;
use crate::ports::{Page, PageRequest};

/// A log line as the process wrote it: when, how severe, where from, the message, and every
/// other field of the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it (`portico_http::invoke`, ...).
    pub target: String,
    pub message: String,
    /// Every other field (`function`, `request_id`, `duration_ms`, `serial`, ...).
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// A stored line, with where it is in the store and what of it matched.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogHit {
    /// The line's place in the store: unique, stable, and a position to page or tail from
    /// (locally the row number; in OpenSearch `<timestamp_ms>:<event id>`).
    pub id: String,
    #[serde(flatten)]
    pub line: LogLine,
    /// The line's message with every matched term in `<mark>…</mark>` (the rest HTML-escaped),
    /// when the query had free-text terms that matched it.
    pub highlight: Option<String>,
}

/// What one term of a query asks of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// The whole value (for free text: the words, in this order).
    Exact(String),
    /// A value (for free text: a word) that starts with this.
    Prefix(String),
    /// A value matching a pattern where `*` stands for any run of characters and `?` for one.
    Wildcard(String),
}

/// A range bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Inclusive(String),
    Exclusive(String),
    Unbounded,
}

/// A parsed query. Field names are the line's: `level`, `target`, `message`, or a field's name.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Every line.
    All,
    /// A field's value, or (no field) the message and field values as free text.
    Term {
        field: Option<String>,
        matches: Match,
    },
    /// A field whose value is one of these.
    OneOf {
        field: String,
        values: Vec<String>,
    },
    /// Numbers compare as numbers, anything else as text.
    Range {
        field: String,
        lower: Bound,
        upper: Bound,
    },
    /// Lines that have the field.
    Exists {
        field: String,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
}

impl Query {
    /// The free-text terms (for highlighting), outside of `Not`.
    pub fn free_text(&self) -> Vec<&Match> {
        match self {
            Query::Term { field: None, matches } => vec![matches],
            Query::And(parts) | Query::Or(parts) => {
                parts.iter().flat_map(Query::free_text).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A search: the query, and the time range `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSearch {
    pub query: Query,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// Where log lines are kept and searched.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Matching lines, newest first.
    async fn search(&self, search: &LogSearch, page: &PageRequest) -> Result<Page<LogHit>>;
    /// Matching lines after the hit `after` (a hit's `id`; `None`: from the start), oldest first
    /// (a tail).
    async fn after(
        &self,
        search: &LogSearch,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogHit>>;
}
