//! OpenSearch (or Elasticsearch): where logs go on AWS and, from `portico ship-logs`, from any
//! machine. One log line is one document in a daily index (`<prefix>-YYYY.MM.DD`) under an id
//! its shipper chose (the CloudWatch event id, a file's fingerprint and offset), so sending it
//! again never duplicates it. `bulk` sends documents; `search` answers the log search from them.
//! Both go through one `Cluster`: the base URL, the authentication and the HTTP client.

mod bulk;
mod search;

pub use bulk::{BulkDoc, BulkSink, Shipped};
pub use search::OpenSearchLogs;

use std::time::Duration;

use serde_json::{Map, Value};

/// Signs a request just before it is sent (SigV4 for Amazon OpenSearch Service; in
/// `portico-aws`, which knows AWS credentials).
#[async_trait::async_trait]
pub trait Sign: Send + Sync {
    async fn sign(&self, request: &mut reqwest::Request) -> Result<(), BulkError>;
}

/// How the cluster is authenticated to.
#[derive(Clone)]
pub enum Auth {
    None,
    /// A self-managed cluster's user.
    Basic {
        username: String,
        password: String,
    },
    /// Every request signed (Amazon OpenSearch Service: SigV4 with the function's role).
    Signed(std::sync::Arc<dyn Sign>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Basic { .. } => "Basic",
            Auth::Signed(_) => "Signed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OpenSearch: {0}")]
pub struct BulkError(pub String);

/// A cluster: where it is and how to authenticate to it. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl Cluster {
    /// The cluster at `base_url` (`https://search-domain.region.es.amazonaws.com`, or a
    /// self-managed one); each request gives up after `timeout`.
    pub fn new(base_url: &str, auth: Auth, timeout: Duration) -> Result<Cluster, BulkError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| BulkError(format!("building the HTTP client: {e}")))?;
        Ok(Cluster { http, base: base_url.trim_end_matches('/').to_string(), auth })
    }

    /// One request; the status and the body. Errors are the request not getting an answer.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, String), BulkError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| BulkError(format!("method {method}: {e}")))?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Auth::Basic { username, password } = &self.auth {
            request = request.basic_auth(username, Some(password));
        }
        let mut request = request.build().map_err(|e| BulkError(format!("building: {e}")))?;
        if let Auth::Signed(signer) = &self.auth {
            signer.sign(&mut request).await?;
        }
        let response =
            self.http.execute(request).await.map_err(|e| BulkError(format!("sending: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| BulkError(format!("reading: {e}")))?;
        Ok((status, text))
    }

    /// Puts Portico's index template for `<prefix>-*` (idempotent: the same template again).
    pub async fn install_template(&self, prefix: &str) -> Result<(), BulkError> {
        let body = index_template(prefix).to_string();
        let path = format!("/_index_template/{prefix}");
        let (status, text) = self.send("PUT", &path, "application/json", body).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(BulkError(format!("{status}: {}", text.chars().take(300).collect::<String>())))
        }
    }
}

/// How the log indexes are mapped: the message is text (searched by word); every other string is
/// a keyword (matched whole, by prefix or wildcard, as the local store does); `@timestamp` a date.
pub fn index_template(prefix: &str) -> Value {
    serde_json::json!({
        "index_patterns": [format!("{prefix}-*")],
        "priority": 100,
        "template": {
            "mappings": {
                "dynamic_templates": [{
                    "strings_as_keywords": {
                        "match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": 2048}
                    }
                }],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text"},
                    "event_id": {"type": "keyword"}
                }
            }
        }
    })
}

/// The daily index of a time: `<prefix>-YYYY.MM.DD` (UTC).
pub fn daily_index(prefix: &str, timestamp_ms: i64) -> String {
    let day = portico_core::domain::from_unix_ms(timestamp_ms)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{prefix}-{:04}.{:02}.{:02}", day.year(), u8::from(day.month()), day.day())
}

/// The document of one log line: `base` (the shipper's own fields: where the line came from),
/// `event_id`, `@timestamp`, then the line itself: a JSON object's fields merged in (Portico's
/// lines are JSON; the shipper's fields win over a line's field of the same name), or the text as
/// `message` with a Lambda platform line's figures parsed.
pub fn document(
    index_prefix: &str,
    id: &str,
    timestamp_ms: i64,
    base: Map<String, Value>,
    text: &str,
) -> BulkDoc {
    let mut source = base;
    let at = portico_core::domain::from_unix_ms(timestamp_ms)
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    source.insert("@timestamp".into(), at.map_or(Value::Null, Value::String));
    source.insert("event_id".into(), id.into());
    let trimmed = text.trim_end();
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(fields)) => {
            for (name, value) in fields {
                source.entry(name).or_insert(value);
            }
            source.entry("message").or_insert_with(|| trimmed.into());
        }
        _ => {
            source.insert("message".into(), trimmed.into());
            for (name, value) in platform_line(trimmed).unwrap_or_default() {
                source.insert(name, value);
            }
        }
    }
    BulkDoc {
        index: daily_index(index_prefix, timestamp_ms),
        id: id.to_string(),
        source: Value::Object(source),
    }
}

/// A Lambda platform line (`START`, `END`, `REPORT`) as fields: its kind, request id and, for
/// `REPORT`, the durations and memory.
fn platform_line(message: &str) -> Option<Map<String, Value>> {
    let (kind, rest) = message.split_once(' ')?;
    if !matches!(kind, "START" | "END" | "REPORT") {
        return None;
    }
    let mut fields = Map::new();
    fields.insert("lambda_event".into(), kind.into());
    for part in rest.trim_end().split('\t') {
        let Some((name, value)) = part.split_once(':') else { continue };
        let value = value.trim();
        let number = value.split(' ').next().and_then(|n| n.parse::<f64>().ok());
        let key = match name.trim() {
            "RequestId" => {
                fields.insert("request_id".into(), value.split(' ').next().unwrap_or(value).into());
                continue;
            }
            "Version" => "lambda_version",
            "Duration" => "duration_ms",
            "Billed Duration" => "billed_duration_ms",
            "Memory Size" => "memory_mb",
            "Max Memory Used" => "max_memory_used_mb",
            "Init Duration" => "init_duration_ms",
            _ => continue,
        };
        match number {
            Some(n) => fields.insert(key.into(), n.into()),
            None => fields.insert(key.into(), value.into()),
        };
    }
    Some(fields)
}
