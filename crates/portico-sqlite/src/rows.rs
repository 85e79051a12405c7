//! What every record module shares: decoding rows, paging, cursors, timestamps, conflicts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portico_core::ports::Page;
use portico_core::{Error, Result};
use rusqlite::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::is_unique_violation;

/// Owned statement parameters, for a write that runs on the writer's thread:
/// `values![id.clone(), size as i64]`.
macro_rules! values {
    ($($value:expr),* $(,)?) => {
        vec![$(rusqlite::types::Value::from($value)),*]
    };
}
pub(crate) use values;

/// A row decodes in two steps: SQLite values (which cannot fail in ways a caller caused), then
/// domain values, whose failure means the file was edited by hand or is corrupt. The `i64` is the
/// row's `seq`, the position cursors point at.
pub(crate) type Decoded<T> = (i64, Result<T>);

/// Decodes one row of a record's columns.
pub(crate) type RowFn<T> = fn(&Row<'_>) -> rusqlite::Result<Decoded<T>>;

pub(crate) fn paginate<T>(rows: Vec<Decoded<T>>, limit: u32) -> Result<Page<T>> {
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last_seq = None;
    for (seq, item) in rows.into_iter().take(limit as usize) {
        items.push(item?);
        last_seq = Some(seq);
    }
    let next_cursor = if more { last_seq.map(encode_cursor) } else { None };
    Ok(Page { items, next_cursor })
}

/// Cursors are the last row's position, wrapped so callers treat them as opaque.
fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

/// For lists oldest first: the cursor is the last row seen, and the next page lies above it.
pub(crate) fn decode_cursor(cursor: Option<&str>) -> Result<i64> {
    let Some(cursor) = cursor else { return Ok(0) };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API returned"))
}

/// For lists newest first: the cursor is the last row seen, and the next page lies below it.
pub(crate) fn decode_cursor_newest_first(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None => Ok(i64::MAX),
        cursor => decode_cursor(cursor),
    }
}

/// A failed insert: a unique key taken is the caller's conflict, anything else is ours.
pub(crate) fn conflict_or(e: rusqlite::Error, conflict: String, what: &'static str) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(conflict)
    } else {
        Error::Unexpected(anyhow::Error::new(e).context(what))
    }
}

/// A stored value the domain refuses: the file was edited by hand or is corrupt.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Unexpected(anyhow::anyhow!("{what} in database"))
}

/// A row of `seq, body` where the body is the record as JSON.
pub(crate) fn json_row<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
) -> rusqlite::Result<Decoded<T>> {
    let seq: i64 = row.get(0)?;
    let body: String = row.get(1)?;
    let record = serde_json::from_str(&body)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad record in database: {e}")));
    Ok((seq, record))
}

pub(crate) fn timestamp(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339).map_err(|e| Error::Unexpected(anyhow::anyhow!("formatting timestamp: {e}")))
}

pub(crate) fn parse_timestamp(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad timestamp {text:?} in database: {e}")))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
