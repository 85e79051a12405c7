//! The OpenAPI 3 document, generated from the handlers' annotations and the types they use.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Portico API", description = "The customer portal backend."),
    paths(
        routes::healthz,
        routes::openapi,
        routes::get_me,
        routes::create_account,
        routes::list_accounts,
        routes::get_account,
        routes::add_account_user,
        routes::list_account_users,
        routes::register_instrument,
        routes::list_instruments,
        routes::get_instrument,
        routes::list_notifications,
        routes::read_notification,
        routes::request_upload,
        routes::list_documents,
        routes::get_document,
        routes::upload_content,
        routes::download_content,
        routes::list_outbox,
        routes::create_product,
        routes::list_products,
        routes::get_product,
        routes::create_lot,
        routes::get_lot,
        routes::lot_certificate,
        routes::create_shipment,
        routes::list_shipments,
        routes::dev_issuer_metadata,
        routes::dev_issuer_keys,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}
