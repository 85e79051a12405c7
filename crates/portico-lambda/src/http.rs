//! API Gateway proxy events -> the HTTP gateway's Router -> proxy responses.

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Service};
use lambda_runtime::LambdaEvent;

/// The response lambda_http sends back to API Gateway for this event (v1 or v2 shape, whichever
/// the event came as).
pub async fn handle(
    app: axum::Router,
    event: LambdaEvent<LambdaRequest>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let mut adapter = Adapter::from(app);
    let response = adapter.call(event).await?;
    Ok(serde_json::to_value(response)?)
}
