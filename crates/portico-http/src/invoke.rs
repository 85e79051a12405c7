//! The function runtime model: every route is a named function, and every invocation is measured
//! the way Lambda measures functions (invocations, errors, duration, concurrent executions) and
//! logged as one JSON line (function, request id, principal, status, duration).

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use utoipa_axum::router::UtoipaMethodRouter;

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

/// Wraps a documented route as the function its handler is named after (the operation id).
pub(crate) fn named(
    (schemas, paths, route): UtoipaMethodRouter<AppState>,
    timeout: Duration,
) -> UtoipaMethodRouter<AppState> {
    let name = paths
        .paths
        .values()
        .flat_map(|item| [&item.get, &item.put, &item.post, &item.delete, &item.patch])
        .flatten()
        .find_map(|op| op.operation_id.as_deref())
        .unwrap_or("unnamed");
    let route = function_with_timeout(intern(name), route, timeout);
    (schemas, paths, route)
}

/// A function name as the `'static` label metrics take. Names come from the route table, so there
/// are as many as there are routes, each kept once however many routers are built.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let Ok(mut names) = names.lock() else {
        return "unnamed";
    };
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
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
    let response = match tokio::time::timeout(invocation.timeout, next.run(request)).await {
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
