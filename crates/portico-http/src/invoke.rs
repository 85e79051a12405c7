//! The function runtime model: every route is a named function, and every invocation is measured
//! the way Lambda measures functions (invocations, errors, duration, concurrent executions) and
//! logged as one JSON line (function, request id, principal, status, duration).

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use portico_core::audit::{Acting, Actor};

use crate::AppState;
use crate::extract::PrincipalSlot;
use crate::problem::Problem;

pub const INVOCATIONS: &str = "portico_function_invocations_total";
pub const ERRORS: &str = "portico_function_errors_total";
pub const DURATION: &str = "portico_function_duration_seconds";
pub const CONCURRENT: &str = "portico_function_concurrent_executions";

#[derive(Clone)]
struct Invocation {
    function: &'static str,
    timeout: Duration,
}

/// Wraps `route` as the function `name`, with its own timeout.
pub(crate) fn function_with_timeout(
    name: &'static str,
    route: MethodRouter<AppState>,
    timeout: Duration,
) -> MethodRouter<AppState> {
    let invocation = Invocation { function: name, timeout };
    route.layer(middleware::from_fn_with_state(invocation, invoke))
}

/// Decrements the concurrency gauge however the invocation ends (even if the client goes away
/// and the future is dropped).
struct Running(&'static str);

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!(CONCURRENT, "function" => self.0).decrement(1.0);
    }
}

async fn invoke(
    State(invocation): State<Invocation>,
    mut request: Request,
    next: Next,
) -> Response {
    let function = invocation.function;
    let slot = PrincipalSlot::default();
    request.extensions_mut().insert(slot.clone());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();

    metrics::gauge!(CONCURRENT, "function" => function).increment(1.0);
    let running = Running(function);
    let started = Instant::now();
    // Writes are attributed to the function until the authorizer knows the caller.
    let acting = Acting::new(Actor::system(function), Some(request_id.clone()));
    let run = portico_core::audit::scope(acting, next.run(request));
    let response = match tokio::time::timeout(invocation.timeout, run).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s and was cancelled",
                invocation.timeout.as_secs()
            ),
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    drop(running);

    let status = response.status().as_u16();
    metrics::counter!(INVOCATIONS, "function" => function).increment(1);
    if status >= 500 {
        metrics::counter!(ERRORS, "function" => function).increment(1);
    }
    metrics::histogram!(DURATION, "function" => function).record(elapsed.as_secs_f64());
    tracing::info!(
        target: "portico::invocation",
        function,
        request_id,
        principal = slot.0.get().map(String::as_str).unwrap_or(""),
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "invocation"
    );
    response
}
