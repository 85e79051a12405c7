//! An OpenSearch (or Elasticsearch) `_bulk` sink: documents go in with `create` and their own
//! ids, so a redelivered batch never duplicates (a 409 is a document already there, counted as
//! done). Items the cluster is too busy for (429, 5xx) are sent again with backoff; items it
//! refuses (a 400 mapping error, say) are handed back with the reason, for the caller to
//! dead-letter; nothing is dropped silently. A request that fails as a whole is retried, then
//! reported as an error (the caller's delivery is retried: Lambda re-invokes, the shipper keeps
//! its checkpoint).

use std::time::Duration;

use serde_json::{Value, json};

/// One document of a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkDoc {
    pub index: String,
    pub id: String,
    pub source: Value,
}

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

/// What a `ship` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Shipped {
    pub created: usize,
    /// Already in the index (a redelivery).
    pub duplicates: usize,
    /// Refused for good, with the cluster's reason.
    pub refused: Vec<(BulkDoc, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OpenSearch: {0}")]
pub struct BulkError(pub String);

pub struct BulkSink {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    attempts: u32,
    backoff: Duration,
}

impl BulkSink {
    /// The cluster at `base_url` (`https://search-domain.region.es.amazonaws.com`, or a
    /// self-managed one).
    pub fn new(base_url: &str, auth: Auth, timeout: Duration) -> Result<BulkSink, BulkError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| BulkError(format!("building the HTTP client: {e}")))?;
        Ok(BulkSink {
            http,
            url: format!("{}/_bulk", base_url.trim_end_matches('/')),
            auth,
            attempts: 6,
            backoff: Duration::from_millis(200),
        })
    }

    /// Retries and the first backoff (doubling each attempt), for tests and tuning.
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> BulkSink {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Sends `docs`; answers what happened to each once every one is done or refused.
    pub async fn ship(&self, docs: Vec<BulkDoc>) -> Result<Shipped, BulkError> {
        let mut shipped = Shipped::default();
        let mut pending = docs;
        let mut delay = self.backoff;
        for attempt in 1..=self.attempts {
            if pending.is_empty() {
                break;
            }
            let items = match self.send(&pending).await {
                Ok(items) => items,
                Err(e) if attempt < self.attempts => {
                    tracing::warn!(error = %e, attempt, "bulk request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if items.len() != pending.len() {
                return Err(BulkError(format!(
                    "{} results for {} documents",
                    items.len(),
                    pending.len()
                )));
            }
            let mut again = Vec::new();
            for (doc, item) in pending.into_iter().zip(items) {
                let result = item.get("create").or_else(|| item.get("index")).unwrap_or(&item);
                let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
                match status {
                    200..=299 => shipped.created += 1,
                    409 => shipped.duplicates += 1,
                    429 | 500..=599 => again.push(doc),
                    _ => {
                        let reason = result
                            .get("error")
                            .map(|e| match e.get("reason").and_then(Value::as_str) {
                                Some(reason) => format!("{status}: {reason}"),
                                None => format!("{status}: {e}"),
                            })
                            .unwrap_or_else(|| format!("status {status}"));
                        shipped.refused.push((doc, reason));
                    }
                }
            }
            pending = again;
            if !pending.is_empty() && attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        for doc in pending {
            shipped
                .refused
                .push((doc, format!("still refused after {} attempts (429/5xx)", self.attempts)));
        }
        Ok(shipped)
    }

    /// One `_bulk` request; the per-item results in order.
    async fn send(&self, docs: &[BulkDoc]) -> Result<Vec<Value>, BulkError> {
        let mut body = String::new();
        for doc in docs {
            body.push_str(&json!({"create": {"_index": doc.index, "_id": doc.id}}).to_string());
            body.push('\n');
            body.push_str(&doc.source.to_string());
            body.push('\n');
        }
        let mut request =
            self.http.post(&self.url).header("content-type", "application/x-ndjson").body(body);
        if let Auth::Basic { username, password } = &self.auth {
            request = request.basic_auth(username, Some(password));
        }
        let mut request = request.build().map_err(|e| BulkError(format!("building: {e}")))?;
        if let Auth::Signed(signer) = &self.auth {
            signer.sign(&mut request).await?;
        }
        let response =
            self.http.execute(request).await.map_err(|e| BulkError(format!("sending: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| BulkError(format!("reading: {e}")))?;
        if !status.is_success() {
            return Err(BulkError(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| BulkError(format!("not a bulk answer: {e}")))?;
        answer
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| BulkError("the answer has no items".into()))
    }
}

/// The daily index of a time: `<prefix>-YYYY.MM.DD` (UTC).
pub fn daily_index(prefix: &str, timestamp_ms: i64) -> String {
    let day = portico_core::domain::from_unix_ms(timestamp_ms)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{prefix}-{:04}.{:02}.{:02}", day.year(), u8::from(day.month()), day.day())
}
