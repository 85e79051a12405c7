//! CloudWatch Logs subscription payloads: `{"awslogs": {"data": base64(gzip(JSON))}}`.
//!
//! CloudWatch sends a `CONTROL_MESSAGE` when a subscription is set up, to check the destination is
//! reachable; it carries no log events and is skipped. A payload that cannot be decoded will not
//! decode on a retry either, so it is reported as an error value for the caller to log, not thrown
//! back at Lambda.

use std::io::Read as _;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// Decoded payloads are bounded: CloudWatch delivers at most 1 MB of events per invocation, so
/// anything inflating past this is not a CloudWatch payload.
const MAX_DECODED_BYTES: u64 = 16 * 1024 * 1024;

/// One batch of log events from one log stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatch {
    pub owner: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    pub log_events: Vec<LogEvent>,
}

/// One log line; `id` is unique and stable across redeliveries (use it as a document id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CloudWatch Logs payload: {0}")]
pub struct DecodeError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_type: String,
    #[serde(flatten)]
    batch: Value,
}

/// The log events of a payload, or `None` for a control message.
pub fn decode(payload: &Value) -> Result<Option<LogBatch>, DecodeError> {
    let data = payload
        .get("awslogs")
        .and_then(|a| a.get("data"))
        .and_then(Value::as_str)
        .ok_or_else(|| DecodeError("no awslogs.data".into()))?;
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|e| DecodeError(format!("awslogs.data is not base64: {e}")))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| DecodeError(format!("awslogs.data is not gzip: {e}")))?;
    if json.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecodeError(format!("awslogs.data inflates past {MAX_DECODED_BYTES} bytes")));
    }
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|e| DecodeError(format!("awslogs.data is not a log batch: {e}")))?;
    match envelope.message_type.as_str() {
        "CONTROL_MESSAGE" => Ok(None),
        "DATA_MESSAGE" => serde_json::from_value(envelope.batch)
            .map(Some)
            .map_err(|e| DecodeError(format!("awslogs.data is not a log batch: {e}"))),
        other => Err(DecodeError(format!("unknown messageType {other:?}"))),
    }
}

/// The queue documents the cluster refuses go to, with the reason: never dropped silently.
pub const DEAD_LETTERS: &str = "log-events-dead";

/// The documents of a batch, one per event: `_id` the event's id (so redelivery never
/// duplicates), a daily index by the event's time, the group and stream, and the line
/// (`portico_logs::opensearch::document`: a JSON line's fields merged in, Lambda's platform lines
/// parsed).
pub fn documents(batch: &LogBatch, index_prefix: &str) -> Vec<portico_logs::opensearch::BulkDoc> {
    batch
        .log_events
        .iter()
        .map(|event| {
            let mut base = serde_json::Map::new();
            base.insert("log_group".into(), batch.log_group.clone().into());
            base.insert("log_stream".into(), batch.log_stream.clone().into());
            base.insert("owner".into(), batch.owner.clone().into());
            portico_logs::opensearch::document(
                index_prefix,
                &event.id,
                event.timestamp,
                base,
                &event.message,
            )
        })
        .collect()
}

/// Ships a decoded batch; refused documents go to the dead-letter queue with their reason. An
/// error (the cluster unreachable after retries, or the dead-letter queue unavailable) fails the
/// invocation, so Lambda delivers the batch again; the ids make that harmless.
pub async fn ship(
    sink: &portico_logs::opensearch::BulkSink,
    queue: &dyn portico_core::Queue,
    batch: &LogBatch,
    index_prefix: &str,
) -> Result<portico_logs::opensearch::Shipped, String> {
    let shipped = sink.ship(documents(batch, index_prefix)).await.map_err(|e| e.to_string())?;
    for (doc, reason) in &shipped.refused {
        let body = serde_json::json!({"index": doc.index, "id": doc.id, "reason": reason, "document": doc.source});
        let mut attributes = portico_core::ports::Attributes::new();
        attributes.insert("reason".into(), reason.chars().take(200).collect());
        queue
            .send(DEAD_LETTERS, &body.to_string(), &attributes)
            .await
            .map_err(|e| format!("dead-lettering a refused log event: {e}"))?;
        tracing::warn!(id = doc.id, reason, "log event refused by OpenSearch; dead-lettered");
    }
    tracing::info!(
        log_group = batch.log_group,
        created = shipped.created,
        duplicates = shipped.duplicates,
        refused = shipped.refused.len(),
        "log batch shipped"
    );
    Ok(shipped)
}
