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
use axum::routing::{get, post, put};
use portico_auth::{DevIssuer, Verifier};
use portico_functions::Context;
use portico_objects::SignedUrls;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

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
pub struct AppState(Arc<Shared>);

struct Shared {
    context: Arc<Context>,
    verifier: Arc<Verifier>,
    dev_issuer: Option<Arc<DevIssuer>>,
    /// Present when this host serves document bytes itself (the local host).
    signed_urls: Option<Arc<SignedUrls>>,
    limits: Limits,
    edge: Edge,
}

impl AppState {
    pub fn new(
        context: Arc<Context>,
        verifier: Arc<Verifier>,
        dev_issuer: Option<Arc<DevIssuer>>,
        signed_urls: Option<Arc<SignedUrls>>,
        limits: Limits,
        edge: Edge,
    ) -> Self {
        AppState(Arc::new(Shared {
            context,
            verifier,
            dev_issuer,
            signed_urls,
            limits,
            edge,
        }))
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
    use invoke::function as f;
    let s = &state;
    Router::new()
        .route("/healthz", f("healthz", get(routes::healthz), s))
        .route("/openapi.json", f("openapi", get(routes::openapi), s))
        .route("/v1/me", f("get_me", get(routes::get_me), s))
        .route(
            "/v1/accounts",
            f("list_accounts", get(routes::list_accounts), s).merge(f(
                "create_account",
                post(routes::create_account),
                s,
            )),
        )
        .route(
            "/v1/accounts/{id}",
            f("get_account", get(routes::get_account), s),
        )
        .route(
            "/v1/accounts/{id}/users",
            f("list_account_users", get(routes::list_account_users), s).merge(f(
                "add_account_user",
                post(routes::add_account_user),
                s,
            )),
        )
        .route(
            "/v1/instruments",
            f("list_instruments", get(routes::list_instruments), s).merge(f(
                "register_instrument",
                post(routes::register_instrument),
                s,
            )),
        )
        .route(
            "/v1/instruments/{serial}",
            f("get_instrument", get(routes::get_instrument), s),
        )
        .route(
            "/v1/notifications",
            f("list_notifications", get(routes::list_notifications), s),
        )
        .route(
            "/v1/notifications/{id}/read",
            f("read_notification", post(routes::read_notification), s),
        )
        .route("/v1/outbox", f("list_outbox", get(routes::list_outbox), s))
        .route(
            "/v1/products",
            f("list_products", get(routes::list_products), s).merge(f(
                "create_product",
                post(routes::create_product),
                s,
            )),
        )
        .route(
            "/v1/products/{sku}",
            f("get_product", get(routes::get_product), s),
        )
        .route("/v1/lots", f("create_lot", post(routes::create_lot), s))
        .route("/v1/lots/{lot}", f("get_lot", get(routes::get_lot), s))
        .route(
            "/v1/lots/{lot}/certificate.pdf",
            f("lot_certificate", get(routes::lot_certificate), s),
        )
        .route(
            "/v1/shipments",
            f("list_shipments", get(routes::list_shipments), s).merge(f(
                "create_shipment",
                post(routes::create_shipment),
                s,
            )),
        )
        .route(
            "/v1/documents",
            f("list_documents", get(routes::list_documents), s),
        )
        .route(
            "/v1/documents/uploads",
            f("request_upload", post(routes::request_upload), s),
        )
        .route(
            "/v1/documents/{id}",
            f("get_document", get(routes::get_document), s),
        )
        .route(
            "/v1/documents/{id}/content",
            // File bytes may take long on a slow link: these get their own, longer timeout.
            invoke::function_with_timeout(
                "upload_content",
                put(routes::upload_content),
                TRANSFER_TIMEOUT,
            )
            .merge(invoke::function_with_timeout(
                "download_content",
                get(routes::download_content),
                TRANSFER_TIMEOUT,
            )),
        )
        .route(
            "/oauth2/default/.well-known/oauth-authorization-server",
            f("dev_issuer_metadata", get(routes::dev_issuer_metadata), s),
        )
        .route(
            "/oauth2/default/.well-known/openid-configuration",
            f("dev_issuer_metadata", get(routes::dev_issuer_metadata), s),
        )
        .route(
            "/oauth2/default/v1/keys",
            f("dev_issuer_keys", get(routes::dev_issuer_keys), s),
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
            edge.cors_origins
                .iter()
                .filter_map(|o| o.parse().ok())
                .collect::<Vec<_>>(),
        )
    };
    let request_id = HeaderName::from_static("x-request-id");
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            request_id.clone(),
        ])
        .expose_headers([request_id, header::LOCATION])
        .max_age(Duration::from_secs(600))
}
