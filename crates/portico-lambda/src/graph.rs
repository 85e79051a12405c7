//! `graph-projector`: DynamoDB stream batches (the table's new images) -> change records ->
//! the graph (Neptune), with partial batch failures. Only with the `aws` feature: which items
//! are domain records is the DynamoDB adapter's knowledge (`portico_aws::change_record`).
//!
//! A record that can never be read (no new image, bad `data`) is logged and skipped, as in
//! `kinesis.rs`: reporting it would make Lambda retry the shard from it forever. The batch's
//! changes are applied together; if that fails, the batch's first record is reported, so Lambda
//! retries the whole batch (the projection is idempotent, so what was applied is harmless).

use portico_core::GraphStore;
use portico_core::graph::ChangeRecord;
use serde_json::Value;

use crate::kinesis::BatchOutcome;

pub async fn handle(graph: &dyn GraphStore, event: &Value) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    let records =
        event.get("Records").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut changes: Vec<ChangeRecord> = Vec::new();
    let mut first: Option<String> = None;
    for (index, raw) in records.iter().enumerate() {
        let id = raw
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .map_or_else(|| format!("record #{index}"), str::to_string);
        match portico_aws::change_record(raw) {
            Ok(Some(change)) => {
                first.get_or_insert_with(|| id.clone());
                changes.push(change);
            }
            Ok(None) => outcome.processed += 1,
            Err(reason) => {
                tracing::warn!(record = id, reason, "stream record skipped");
                outcome.skipped.push((id, reason));
            }
        }
    }
    match portico_functions::graph::project(graph, &changes).await {
        Ok(n) => outcome.processed += n,
        Err(e) => {
            tracing::warn!(error = %e, changes = changes.len(), "graph projection failed; Lambda retries the batch");
            outcome.failed.extend(first);
        }
    }
    outcome
}
