//! The `kinesis` handler's work on the AWS host: a batch of graph elements (what the
//! `stream-poller` puts on the warehouse's stream, one JSON `Element` per record) loaded into
//! Snowflake as one load (`portico_snowflake`: a MERGE per group of columns).
//!
//! Loads are idempotent, so a failed load reports the batch's first record in
//! `batchItemFailures` and Lambda delivers the whole batch again. A record that is not an
//! element can never load; it is logged and skipped, never reported (it would stop its shard).

use portico_core::graph::Element;
use portico_core::warehouse::{Upsert, upserts};
use portico_snowflake::SnowflakeWarehouse;
use serde_json::Value;

use crate::kinesis::{BatchOutcome, decode_all};

/// Loads the elements of `event` into `warehouse`.
pub async fn load(event: &Value, warehouse: &SnowflakeWarehouse) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    let mut elements: Vec<Element> = Vec::new();
    let mut first: Option<String> = None;
    for record in decode_all(event, &mut outcome) {
        match serde_json::from_value::<Element>(Value::Object(record.data)) {
            Ok(element) => {
                first.get_or_insert(record.sequence_number);
                elements.push(element);
            }
            Err(e) => {
                let reason = format!("not a graph element: {e}");
                tracing::warn!(record = record.sequence_number, reason, "warehouse record skipped");
                outcome.skipped.push((record.sequence_number, reason));
            }
        }
    }
    let Some(first) = first else {
        return outcome;
    };
    let rows: Vec<Upsert> = elements.iter().flat_map(upserts).collect();
    match warehouse.load(&rows).await {
        Ok(merged) => {
            tracing::info!(
                elements = elements.len(),
                statements = merged.statements,
                inserted = merged.inserted,
                updated = merged.updated,
                "warehouse loaded"
            );
            metrics::counter!("portico_warehouse_elements_loaded_total")
                .increment(elements.len() as u64);
            outcome.processed = elements.len();
        }
        Err(e) => {
            tracing::warn!(error = %e, elements = elements.len(), "warehouse load failed; Lambda delivers the batch again");
            outcome.failed.push(first);
        }
    }
    outcome
}
