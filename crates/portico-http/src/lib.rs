//! Portico's HTTP gateway: `app(state)` is the axum Router of every HTTP function. The local host
//! serves it on a socket; the Lambda host feeds it API Gateway events. Nothing here knows which.

mod extract;
pub mod invoke;
mod openapi;
pub mod problem;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{MethodRouter, get};
use portico_auth::{DevIssuer, Verifier};
use portico_functions::Context;
use portico_objects::SignedUrls;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use utoipa_axum::router::OpenApiRouter;

pub use extract::{Transport, bearer_token};
pub use openapi::document as openapi_document;
pub use problem::Problem;

/// How long a file upload or download may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

/// How the API meets the outside world.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// The external base URL that every absolute link starts with (no trailing slash).
    pub public_url: Option<String>,
    /// Browser origins that may call the API; `*` alone is any origin. Never with credentials:
    /// the API authenticates with bearer tokens, not cookies.
    pub cors_origins: Vec<String>,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// What the handlers run on; `AppState::new` shares it.
pub struct AppParts {
    pub context: Arc<Context>,
    pub verifier: Arc<Verifier>,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    /// Present when this host serves document bytes itself (the local host).
    pub signed_urls: Option<Arc<SignedUrls>>,
    pub limits: Limits,
    pub edge: Edge,
    /// What `/readyz` checks, set by the host once its parts run (the local server: the
    /// database, the broker, the workers). Unset, `/readyz` has nothing to wait for.
    pub readiness: std::sync::OnceLock<Arc<dyn Readiness>>,
}

/// One part of a host that must work for it to take traffic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Check {
    pub part: String,
    pub ok: bool,
    /// Why not, or what it found.
    pub detail: String,
}

/// A host's readiness checks (`GET /readyz`).
#[async_trait::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn check(&self) -> Vec<Check>;
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }

    pub fn edge(&self) -> &Edge {
        &self.0.edge
    }

    pub fn readiness(&self) -> Option<&Arc<dyn Readiness>> {
        self.0.readiness.get()
    }

    /// Sets what `/readyz` checks (once; later calls change nothing).
    pub fn set_readiness(&self, readiness: Arc<dyn Readiness>) {
        let _ = self.0.readiness.set(readiness);
    }

    pub fn signed_urls(&self) -> Option<&SignedUrls> {
        self.0.signed_urls.as_deref()
    }

    pub fn context(&self) -> &Context {
        &self.0.context
    }

    pub fn verifier(&self) -> &Verifier {
        &self.0.verifier
    }

    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        self.0.dev_issuer.as_deref()
    }

    fn request_timeout(&self) -> Duration {
        self.0.limits.request_timeout
    }
}

/// The Router of the whole HTTP API.
pub fn app(state: AppState) -> Router {
    routes(state.request_timeout())
        // The dev issuer answers OIDC discovery too (the same metadata under its other name).
        .route(
            "/oauth2/default/.well-known/openid-configuration",
            invoke::function_with_timeout(
                "dev_issuer_metadata",
                get(routes::dev_issuer_metadata),
                state.request_timeout(),
            ),
        )
        .layer(DefaultBodyLimit::max(state.0.limits.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(TimeOrderedRequestId))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn(problem::normalize_errors))
                .layer(CatchPanicLayer::new()),
        )
        // Outermost, so a preflight is answered before routing and every answer, errors too,
        // carries the CORS headers a browser needs to read it.
        .layer(cors(&state.0.edge))
        .with_state(state)
}

/// Request ids are UUIDv7s: ordered by time, so the log store's index of request ids grows at
/// its end. Random (v4) ids made every log line an insert at a random place in that index, which
/// cost the store more than anything else it does per line.
#[derive(Clone, Copy)]
struct TimeOrderedRequestId;

impl MakeRequestId for TimeOrderedRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        axum::http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Every documented route, written once (`transfer`: moves file bytes, so gets the longer timeout): each handler's `#[utoipa::path]`
/// gives its method, path and documentation, and its name is the function name that logs and
/// metrics use. `routes` serves them and `api` documents them, so the two cannot disagree.
macro_rules! each_route {
    ($route:ident) => {
        $route!(healthz);
        $route!(readyz);
        $route!(openapi);
        $route!(get_me);
        $route!(list_accounts);
        $route!(create_account);
        $route!(get_account);
        $route!(list_account_users);
        $route!(add_account_user);
        $route!(list_instruments);
        $route!(register_instrument);
        $route!(get_instrument);
        $route!(list_notifications);
        $route!(read_notification);
        $route!(list_outbox);
        $route!(search_logs);
        $route!(list_audit);
        $route!(get_report);
        $route!(list_products);
        $route!(create_product);
        $route!(get_product);
        $route!(create_lot);
        $route!(get_lot);
        $route!(lot_certificate);
        $route!(lot_impact);
        $route!(recall_lot);
        $route!(list_shipments);
        $route!(create_shipment);
        $route!(list_documents);
        $route!(request_upload);
        $route!(get_document);
        $route!(upload_content, transfer);
        $route!(download_content, transfer);
        $route!(dev_issuer_metadata);
        $route!(dev_issuer_keys);
    };
}

/// The Router of the documented routes. It takes only each handler's path and methods, not its
/// documentation: building the OpenAPI document costs a millisecond, which every Lambda cold
/// start would pay for nothing (only `/openapi.json` needs it, and builds it once).
fn routes(timeout: Duration) -> Router<AppState> {
    use routes::*;
    use utoipa::Path as _;
    use utoipa_axum::PathItemExt as _;
    let mut router = Router::new();
    macro_rules! serve {
        ($handler:ident) => {
            serve!(@ $handler, timeout)
        };
        ($handler:ident, transfer) => {
            serve!(@ $handler, TRANSFER_TIMEOUT)
        };
        (@ $handler:ident, $timeout:expr) => {
            utoipa_axum::paste! {
                let methods = [<__path_ $handler>]::methods();
                let route = methods
                    .iter()
                    .fold(MethodRouter::new(), |route, m| route.on(m.to_method_filter(), $handler));
                let route = invoke::function_with_timeout(stringify!($handler), route, $timeout);
                router = router.route(&[<__path_ $handler>]::path(), route);
            }
        };
    }
    each_route!(serve);
    router
}

/// The documented routes with their documentation, over `base`: what the OpenAPI document is
/// made from.
pub(crate) fn api(base: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    use routes::*;
    let mut api = base;
    macro_rules! document {
        ($handler:ident $(, $timeout:ident)?) => {
            api = api.routes(utoipa_axum::routes!($handler));
        };
    }
    each_route!(document);
    api
}

/// CORS for the configured origins: the methods and headers the API uses, `x-request-id` and
/// `Location` readable by scripts, preflights cached for ten minutes. No origins, no CORS.
fn cors(edge: &Edge) -> CorsLayer {
    use axum::http::{HeaderName, Method, header};
    if edge.cors_origins.is_empty() {
        return CorsLayer::new();
    }
    let origins = if edge.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            edge.cors_origins.iter().filter_map(|o| o.parse().ok()).collect::<Vec<_>>(),
        )
    };
    let request_id = HeaderName::from_static("x-request-id");
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, request_id.clone()])
        .expose_headers([request_id, header::LOCATION])
        .max_age(Duration::from_secs(600))
}
