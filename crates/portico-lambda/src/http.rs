//! API Gateway proxy events -> the HTTP gateway's Router -> proxy responses.
//!
//! lambda_http turns events into `http::Request`s and prefixes the stage name to the path; the
//! gateway's routes know nothing of stages, so `service` routes on the path the client asked for.

use axum::Router;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, RequestExt, Service};
use lambda_runtime::LambdaEvent;
use tower::util::MapRequest;

type StageStripper = fn(lambda_http::Request) -> lambda_http::Request;

/// The Router as a Lambda HTTP service.
pub type HttpService = MapRequest<Router, StageStripper>;

pub fn service(app: Router) -> HttpService {
    MapRequest::new(app, route_on_client_path as StageStripper)
}

/// Answers one proxy event, exactly as `lambda_http::run(service(app))` would: the JSON that
/// goes back to API Gateway (REST v1 or HTTP API v2 shape, whichever the event came as).
pub async fn handle(
    app: Router,
    event: LambdaEvent<LambdaRequest>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let mut adapter = Adapter::from(service(app));
    let response = adapter.call(event).await?;
    Ok(serde_json::to_value(response)?)
}

fn route_on_client_path(mut request: lambda_http::Request) -> lambda_http::Request {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let raw = request.raw_http_path().to_string();
    let path = match stage.filter(|s| s != "$default") {
        Some(stage) => raw
            .strip_prefix(&format!("/{stage}"))
            .filter(|rest| rest.starts_with('/'))
            .map(str::to_string)
            .unwrap_or(raw),
        None => raw,
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    if let Ok(uri) = path_and_query.parse() {
        *request.uri_mut() = uri;
    }
    request
}
