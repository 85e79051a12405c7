//! Kinesis batches -> a record function, with partial batch failures.
//!
//! Records are decoded here one by one (not by `aws_lambda_events`' typed event, which rejects the
//! whole batch when one record's base64 is bad). A record that can never be processed (bad base64,
//! not a JSON object) is logged and skipped: reporting it would make Lambda retry the shard from
//! it forever. A record whose processing fails, and may succeed later, is reported in
//! `batchItemFailures`; Lambda then retries from it, so processing stops there (later records come
//! again) and processing must be idempotent.

use std::future::Future;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// One decoded Kinesis record.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    /// The record's data: a JSON object.
    pub data: Map<String, Value>,
}

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub processed: usize,
    /// Records skipped because they can never be processed, with why.
    pub skipped: Vec<(String, String)>,
    /// Sequence numbers to report in `batchItemFailures`.
    pub failed: Vec<String>,
}

impl BatchOutcome {
    /// The Lambda response: `{"batchItemFailures": [{"itemIdentifier": ...}]}`.
    pub fn response(&self) -> Value {
        let failures: Vec<Value> =
            self.failed.iter().map(|id| json!({ "itemIdentifier": id })).collect();
        json!({ "batchItemFailures": failures })
    }
}

/// Every record of `event` that decodes, in order; the others are logged and counted as
/// skipped in `outcome`.
pub(crate) fn decode_all(event: &Value, outcome: &mut BatchOutcome) -> Vec<StreamRecord> {
    let records =
        event.get("Records").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::with_capacity(records.len());
    for (index, raw) in records.iter().enumerate() {
        match decode(raw) {
            Ok(record) => out.push(record),
            Err(DecodeError { id, reason }) => {
                let id = id.unwrap_or_else(|| format!("record #{index}"));
                tracing::warn!(record = id, reason, "Kinesis record skipped");
                outcome.skipped.push((id, reason));
            }
        }
    }
    out
}

/// Decodes every record of `event` and runs `process` on the good ones, in order.
pub async fn handle<F, Fut>(event: &Value, mut process: F) -> BatchOutcome
where
    F: FnMut(StreamRecord) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut outcome = BatchOutcome::default();
    for record in decode_all(event, &mut outcome) {
        let sequence_number = record.sequence_number.clone();
        match process(record).await {
            Ok(()) => outcome.processed += 1,
            Err(error) => {
                tracing::warn!(
                    sequence_number,
                    error,
                    "Kinesis record failed; Lambda retries from it"
                );
                outcome.failed.push(sequence_number);
                break;
            }
        }
    }
    outcome
}

struct DecodeError {
    id: Option<String>,
    reason: String,
}

fn decode(raw: &Value) -> Result<StreamRecord, DecodeError> {
    let kinesis = raw.get("kinesis");
    let text =
        |field: &str| kinesis.and_then(|k| k.get(field)).and_then(Value::as_str).map(str::to_owned);
    let Some(sequence_number) = text("sequenceNumber") else {
        return Err(DecodeError {
            id: raw.get("eventID").and_then(Value::as_str).map(str::to_owned),
            reason: "no kinesis.sequenceNumber".into(),
        });
    };
    let fail = |reason: String| DecodeError { id: Some(sequence_number.clone()), reason };
    let data = text("data").ok_or_else(|| fail("no kinesis.data".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|e| fail(format!("kinesis.data is not base64: {e}")))?;
    let data = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(fail("kinesis.data is not a JSON object".into())),
        Err(e) => return Err(fail(format!("kinesis.data is not JSON: {e}"))),
    };
    Ok(StreamRecord {
        partition_key: text("partitionKey").unwrap_or_default(),
        sequence_number,
        data,
    })
}
