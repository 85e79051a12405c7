//! The `_bulk` sink: documents go in with `create` and their own ids, so a redelivered batch
//! never duplicates (a 409 is a document already there, counted as done). Items the cluster is
//! too busy for (429, 5xx) are sent again with backoff; items it refuses (a 400 mapping error,
//! say) are handed back with the reason, for the caller to dead-letter; nothing is dropped
//! silently. A request that fails as a whole is retried, then reported as an error (the caller's
//! delivery is retried: Lambda re-invokes, the shipper keeps its checkpoint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Auth, BulkError, Cluster};

/// One document of a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkDoc {
    pub index: String,
    pub id: String,
    pub source: Value,
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

pub struct BulkSink {
    cluster: Cluster,
    attempts: u32,
    backoff: Duration,
    /// The index template to install before the first request, and whether it is in.
    template: Option<(String, AtomicBool)>,
}

impl BulkSink {
    /// The cluster at `base_url` (`https://search-domain.region.es.amazonaws.com`, or a
    /// self-managed one).
    pub fn new(base_url: &str, auth: Auth, timeout: Duration) -> Result<BulkSink, BulkError> {
        Ok(BulkSink::on(Cluster::new(base_url, auth, timeout)?))
    }

    /// The sink into `cluster`.
    pub fn on(cluster: Cluster) -> BulkSink {
        BulkSink { cluster, attempts: 6, backoff: Duration::from_millis(200), template: None }
    }

    /// Installs Portico's index template for `<prefix>-*` before the first documents (once per
    /// process), so that the fields are mapped the way the search expects.
    pub fn with_index_template(mut self, prefix: &str) -> BulkSink {
        self.template = Some((prefix.to_string(), AtomicBool::new(false)));
        self
    }

    /// Retries and the first backoff (doubling each attempt), for tests and tuning.
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> BulkSink {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Sends `docs`; answers what happened to each once every one is done or refused.
    pub async fn ship(&self, docs: Vec<BulkDoc>) -> Result<Shipped, BulkError> {
        if let Some((prefix, installed)) = &self.template
            && !installed.load(Ordering::Relaxed)
        {
            // Without it the documents still go in, dynamically mapped; say so and go on.
            match self.cluster.install_template(prefix).await {
                Ok(()) => installed.store(true, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "the index template is not installed; documents are mapped dynamically")
                }
            }
        }
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
        let (status, text) =
            self.cluster.send("POST", "/_bulk", "application/x-ndjson", body).await?;
        if !(200..300).contains(&status) {
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
