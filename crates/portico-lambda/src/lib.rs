//! Portico's Lambda host: the same functions as the local host, fed by Lambda events.
//!
//! - `http`: API Gateway REST (v1) and HTTP API (v2) proxy events, served by the same axum Router
//!   as the local gateway, through lambda_http's own adapter.
//! - `authorizer`: the API Gateway token authorizer, using the same verifier as every other door.
//! - `sqs`: SQS batches of S3 upload events for the document worker, with partial batch failures.
//! - `iot`: the AWS IoT rule action, running the function the rule names.
//! - `kinesis`: Kinesis batches, decoded record by record, with partial batch failures;
//!   `warehouse` loads the warehouse stream's graph elements into Snowflake.
//! - `logs`: CloudWatch Logs subscription payloads, decoded (control messages skipped).
//!
//! Metrics leave each invocation as CloudWatch EMF lines on stdout (`emf`).

pub mod authorizer;
pub mod emf;
#[cfg(feature = "aws")]
pub mod graph;
pub mod handler;
pub mod http;
pub mod iot;
pub mod kinesis;
pub mod logs;
#[cfg(feature = "aws")]
pub mod poller;
pub mod sqs;
pub mod warehouse;
