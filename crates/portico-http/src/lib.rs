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
use axum::routing::get;
use portico_auth::{DevIssuer, Verifier};
use portico_functions::Context;
use portico_objects::SignedUrls;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_axum::router::OpenApiRouter;

pub use extract::bearer_token;
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
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }

    pub fn edge(&self) -> &Edge {
        &self.0.edge
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
    // Without the base document (its schemas): the server needs only the routes, and building
    // the whole document at every start would cost a Lambda's init time for nothing.
    let (documented, _) = api(OpenApiRouter::new(), state.request_timeout()).split_for_parts();
    documented
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
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn(problem::normalize_errors))
                .layer(CatchPanicLayer::new()),
        )
        // Outermost, so a preflight is answered before routing and every answer, errors too,
        // carries the CORS headers a browser needs to read it.
        .layer(cors(&state.0.edge))
        .with_state(state)
}

/// Every documented route, from one source: each handler's `#[utoipa::path]` gives its method,
/// path and documentation, and its name is the function name that logs and metrics use. The
/// same router yields the OpenAPI document (over `base`), so the two cannot disagree.
pub(crate) fn api(base: OpenApiRouter<AppState>, timeout: Duration) -> OpenApiRouter<AppState> {
    use routes::*;
    let f = |route| invoke::named(route, timeout);
    // File bytes may take long on a slow link: these get their own, longer timeout.
    let transfer = |route| invoke::named(route, TRANSFER_TIMEOUT);
    base.routes(f(utoipa_axum::routes!(healthz)))
        .routes(f(utoipa_axum::routes!(openapi)))
        .routes(f(utoipa_axum::routes!(get_me)))
        .routes(f(utoipa_axum::routes!(list_accounts)))
        .routes(f(utoipa_axum::routes!(create_account)))
        .routes(f(utoipa_axum::routes!(get_account)))
        .routes(f(utoipa_axum::routes!(list_account_users)))
        .routes(f(utoipa_axum::routes!(add_account_user)))
        .routes(f(utoipa_axum::routes!(list_instruments)))
        .routes(f(utoipa_axum::routes!(register_instrument)))
        .routes(f(utoipa_axum::routes!(get_instrument)))
        .routes(f(utoipa_axum::routes!(list_notifications)))
        .routes(f(utoipa_axum::routes!(read_notification)))
        .routes(f(utoipa_axum::routes!(list_outbox)))
        .routes(f(utoipa_axum::routes!(list_products)))
        .routes(f(utoipa_axum::routes!(create_product)))
        .routes(f(utoipa_axum::routes!(get_product)))
        .routes(f(utoipa_axum::routes!(create_lot)))
        .routes(f(utoipa_axum::routes!(get_lot)))
        .routes(f(utoipa_axum::routes!(lot_certificate)))
        .routes(f(utoipa_axum::routes!(list_shipments)))
        .routes(f(utoipa_axum::routes!(create_shipment)))
        .routes(f(utoipa_axum::routes!(list_documents)))
        .routes(f(utoipa_axum::routes!(request_upload)))
        .routes(f(utoipa_axum::routes!(get_document)))
        .routes(transfer(utoipa_axum::routes!(upload_content)))
        .routes(transfer(utoipa_axum::routes!(download_content)))
        .routes(f(utoipa_axum::routes!(dev_issuer_metadata)))
        .routes(f(utoipa_axum::routes!(dev_issuer_keys)))
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
