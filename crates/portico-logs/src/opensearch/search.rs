//! The log search over OpenSearch (`GET /v1/logs` on AWS): the same parsed query the local store
//! answers, translated into OpenSearch's query DSL (every value a JSON string or number in its
//! own clause, never query-string text), newest first, paged with `search_after` on
//! (`@timestamp`, `event_id`). Field semantics follow the index template: the message is text,
//! other strings are keywords.

use async_trait::async_trait;
use portico_core::logs::{Bound, LogHit, LogLine, LogSearch, LogStore, Match, Query};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, FieldError, Result};
use serde_json::{Map, Value, json};

use super::Cluster;

/// The lines shipped to `<prefix>-*` indexes.
pub struct OpenSearchLogs {
    cluster: Cluster,
    prefix: String,
}

/// Where a hit is in the order of the search: its time and its event id. A hit's `id` is this,
/// written `<timestamp_ms>:<event_id>`, so that it serves as a cursor too.
struct Position {
    timestamp_ms: i64,
    event_id: String,
}

impl Position {
    fn parse(text: &str) -> Result<Position> {
        let bad =
            || Error::Validation(vec![FieldError::new("cursor", "not a cursor of this listing")]);
        let (ms, id) = text.split_once(':').ok_or_else(bad)?;
        Ok(Position { timestamp_ms: ms.parse().map_err(|_| bad())?, event_id: id.to_string() })
    }
}

impl OpenSearchLogs {
    pub fn new(cluster: Cluster, index_prefix: &str) -> OpenSearchLogs {
        OpenSearchLogs { cluster, prefix: index_prefix.to_string() }
    }

    async fn run(
        &self,
        search: &LogSearch,
        descending: bool,
        after: Option<Position>,
        size: u32,
    ) -> Result<Vec<LogHit>> {
        let body = request_body(search, descending, after.as_ref(), size);
        let path =
            format!("/{}-*/_search?ignore_unavailable=true&allow_no_indices=true", self.prefix);
        let (status, text) = self
            .cluster
            .send("POST", &path, "application/json", body.to_string())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        if !(200..300).contains(&status) {
            let reason: String = text.chars().take(300).collect();
            return Err(if status == 400 {
                Error::BadRequest(FieldError::new(
                    "q",
                    format!("OpenSearch refused the search: {reason}"),
                ))
            } else {
                Error::Unavailable(format!("OpenSearch answered {status}: {reason}"))
            });
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Unavailable(format!("OpenSearch: not a search answer: {e}")))?;
        let hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
        Ok(hits.iter().filter_map(hit_of).collect())
    }
}

#[async_trait]
impl LogStore for OpenSearchLogs {
    async fn search(&self, search: &LogSearch, page: &PageRequest) -> Result<Page<LogHit>> {
        let after = page.cursor.as_deref().map(Position::parse).transpose()?;
        let hits = self.run(search, true, after, page.limit + 1).await?;
        Ok(Page::from_one_extra(hits, page.limit, |h| h.id.clone()))
    }

    async fn after(
        &self,
        search: &LogSearch,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogHit>> {
        let after = after.map(Position::parse).transpose()?;
        self.run(search, false, after, limit).await
    }
}

/// The `_search` body of a search.
fn request_body(
    search: &LogSearch,
    descending: bool,
    after: Option<&Position>,
    size: u32,
) -> Value {
    let mut filter = vec![dsl(&search.query)];
    if search.from_ms.is_some() || search.to_ms.is_some() {
        let mut range = Map::new();
        if let Some(from) = search.from_ms {
            range.insert("gte".into(), from.into());
        }
        if let Some(to) = search.to_ms {
            range.insert("lt".into(), to.into());
        }
        range.insert("format".into(), "epoch_millis".into());
        filter.push(json!({"range": {"@timestamp": range}}));
    }
    let order = if descending { "desc" } else { "asc" };
    let mut body = json!({
        "size": size,
        "track_total_hits": false,
        "query": {"bool": {"filter": filter}},
        "sort": [
            {"@timestamp": {"order": order}},
            {"event_id": {"order": order, "missing": "_last"}}
        ],
    });
    if let Some(after) = after {
        body["search_after"] = json!([after.timestamp_ms, after.event_id]);
    }
    let free: Vec<Value> =
        search.query.free_text().into_iter().map(|m| free_text(m, &["message"])).collect();
    if !free.is_empty() {
        body["highlight"] = json!({
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
            "encoder": "html",
            "fields": {"message": {"number_of_fragments": 0}},
            "highlight_query": {"bool": {"should": free}}
        });
    }
    body
}

/// Free text over `fields` (`*`: every field): the words in this order, a word's prefix, or a
/// wildcard over the message's words.
fn free_text(matches: &Match, fields: &[&str]) -> Value {
    match matches {
        Match::Exact(text) => {
            json!({"multi_match": {"query": text, "type": "phrase", "fields": fields, "lenient": true}})
        }
        Match::Prefix(text) => {
            json!({"multi_match": {"query": text, "type": "phrase_prefix", "fields": fields, "lenient": true}})
        }
        Match::Wildcard(pattern) => {
            json!({"wildcard": {"message": {"value": pattern, "case_insensitive": true}}})
        }
    }
}

/// A range bound's value: a number when it reads as one (numeric fields compare as numbers).
fn bound_value(text: &str) -> Value {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => json!(n),
        _ => json!(text),
    }
}

/// The query DSL of a parsed query.
fn dsl(query: &Query) -> Value {
    match query {
        Query::All => json!({"match_all": {}}),
        Query::Term { field: None, matches } => free_text(matches, &["message", "*"]),
        Query::Term { field: Some(field), matches } if field == "message" => {
            free_text(matches, &["message"])
        }
        Query::Term { field: Some(field), matches } => {
            // Levels are stored upper-case; `level:error` means the same as `level:ERROR`.
            let value =
                |v: &String| if field == "level" { v.to_ascii_uppercase() } else { v.clone() };
            match matches {
                Match::Exact(v) => json!({"term": {field: {"value": value(v)}}}),
                Match::Prefix(v) => json!({"prefix": {field: {"value": value(v)}}}),
                Match::Wildcard(v) => json!({"wildcard": {field: {"value": value(v)}}}),
            }
        }
        Query::OneOf { field, values } => json!({"terms": {field: values}}),
        Query::Range { field, lower, upper } => {
            let mut range = Map::new();
            for (bound, inclusive, exclusive) in [(lower, "gte", "gt"), (upper, "lte", "lt")] {
                match bound {
                    Bound::Inclusive(v) => range.insert(inclusive.into(), bound_value(v)),
                    Bound::Exclusive(v) => range.insert(exclusive.into(), bound_value(v)),
                    Bound::Unbounded => None,
                };
            }
            json!({"range": {field: range}})
        }
        Query::Exists { field } => json!({"exists": {"field": field}}),
        Query::And(parts) => json!({"bool": {"filter": parts.iter().map(dsl).collect::<Vec<_>>()}}),
        Query::Or(parts) => json!({"bool": {
            "should": parts.iter().map(dsl).collect::<Vec<_>>(),
            "minimum_should_match": 1
        }}),
        Query::Not(inner) => json!({"bool": {"must_not": [dsl(inner)]}}),
    }
}

/// Fields of a document that are the line's own parts, not its fields.
const OWN: [&str; 6] = ["@timestamp", "timestamp", "level", "target", "message", "event_id"];

/// A search hit as a log hit; hits without a time are skipped (not Portico's documents).
fn hit_of(hit: &Value) -> Option<LogHit> {
    let source = hit.get("_source")?.as_object()?;
    let at = source.get("@timestamp")?.as_str()?;
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let timestamp_ms = portico_core::domain::unix_ms(at);
    let text =
        |name: &str| source.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let event_id = source
        .get("event_id")
        .and_then(Value::as_str)
        .or_else(|| hit.get("_id").and_then(Value::as_str))
        .unwrap_or_default();
    let fields = source
        .iter()
        .filter(|(name, _)| !OWN.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let level = match text("level") {
        level if level.is_empty() => "INFO".to_string(),
        level => level,
    };
    Some(LogHit {
        id: format!("{timestamp_ms}:{event_id}"),
        line: LogLine {
            timestamp_ms,
            level,
            target: text("target"),
            message: text("message"),
            fields,
        },
        highlight: hit["highlight"]["message"][0].as_str().map(str::to_string),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the report
mod tests {
    use super::*;

    fn body(q: &str) -> Value {
        let search =
            LogSearch { query: portico_core::logs::parse(q).unwrap(), from_ms: None, to_ms: None };
        request_body(&search, true, None, 10)["query"]["bool"]["filter"][0].clone()
    }

    #[test]
    fn kibana_queries_become_query_dsl() {
        assert_eq!(body("level:error"), json!({"term": {"level": {"value": "ERROR"}}}));
        assert_eq!(
            body("serial:SN-1 AND NOT function:rule*"),
            json!({"bool": {"filter": [
                {"term": {"serial": {"value": "SN-1"}}},
                {"bool": {"must_not": [{"prefix": {"function": {"value": "rule"}}}]}}
            ]}})
        );
        assert_eq!(body("duration_ms:>100"), json!({"range": {"duration_ms": {"gt": 100.0}}}));
        assert_eq!(body("request_id:*"), json!({"exists": {"field": "request_id"}}));
        assert_eq!(
            body("\"pump pressure\""),
            json!({"multi_match": {"query": "pump pressure", "type": "phrase", "fields": ["message", "*"], "lenient": true}})
        );
        // A value that looks like query syntax stays a value.
        assert_eq!(body("serial:\"x) OR (*\""), json!({"term": {"serial": {"value": "x) OR (*"}}}));
    }

    #[test]
    fn pages_continue_after_the_last_hit() {
        let search = LogSearch { query: Query::All, from_ms: Some(5), to_ms: Some(9) };
        let at = Position::parse("1780000000000:ev:1").unwrap();
        let body = request_body(&search, true, Some(&at), 3);
        assert_eq!(body["search_after"], json!([1_780_000_000_000_i64, "ev:1"]));
        assert_eq!(
            body["query"]["bool"]["filter"][1],
            json!({"range": {"@timestamp": {"gte": 5, "lt": 9, "format": "epoch_millis"}}})
        );
        assert!(Position::parse("nope").is_err());
    }
}
