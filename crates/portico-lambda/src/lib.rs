//! Portico's Lambda host: the same functions as the local host, fed by Lambda events.
//!
//! - `http`: API Gateway REST (v1) and HTTP API (v2) proxy events, served by the same axum Router
//!   as the local gateway, through lambda_http's own adapter.
//! - `authorizer`: the API Gateway token authorizer, using the same verifier as every other door.

pub mod authorizer;
pub mod http;
