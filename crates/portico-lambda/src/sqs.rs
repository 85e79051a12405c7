//! SQS batches carrying S3 `ObjectCreated` events -> the document worker's function. Each record
//! stands alone: one that can succeed later is reported in `batchItemFailures` (SQS redelivers only
//! it); one that can never succeed (not an upload event) is logged and dropped.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use portico_app::s3_events;
use portico_functions::Context;
use portico_functions::documents;

pub async fn handle(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let Some(body) = record.body.as_deref() else {
            tracing::warn!(message_id = id, "SQS record without a body dropped");
            continue;
        };
        if let Err(e) = documents::process_upload(ctx, &s3_events::keys(body)).await {
            tracing::warn!(message_id = id, error = %e, "upload event failed; SQS will redeliver it");
            failures.push(failure(id));
        }
    }
    response(failures)
}

/// Batches from the upload queue's dead-letter queue: each event failed too often, so its
/// document is marked failed (the message can then go; SQS keeps a copy only until deleted).
pub async fn handle_dead_letters(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        if let Err(e) = documents::dead_lettered(ctx, &s3_events::keys(body)).await {
            tracing::warn!(message_id = id, error = %e, "dead-lettered upload not recorded; SQS will redeliver it");
            failures.push(failure(id));
        }
    }
    response(failures)
}

fn failure(id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}

fn response(failures: Vec<BatchItemFailure>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}
