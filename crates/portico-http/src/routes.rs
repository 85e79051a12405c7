//! The HTTP functions: thin handlers that extract a typed input, call a function, encode its
//! result. Each is annotated for the OpenAPI document.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::{StreamExt, TryStreamExt};
use portico_core::Error;
use portico_core::audit::{AuditQuery, AuditRecord};
use portico_core::domain::{
    Account, Document, DocumentStatus, Instrument, Lot, Notification, OutboxEntry, Product,
    Shipment, User,
};
use portico_core::logs::LogHit;
use portico_core::ports::Page;
use portico_functions::accounts::{self, AddUser, CreateAccount};
use portico_functions::audit;
use portico_functions::catalogue::{self, CreateLot, CreateProduct, CreateShipment, LotView};
use portico_functions::documents::{self, DocumentView, RequestUpload, UploadTicket};
use portico_functions::email;
use portico_functions::identity::{self, Me};
use portico_functions::instruments::{self, RegisterInstrument, RegisteredInstrument};
use portico_functions::logs;
use portico_functions::notifications;
use portico_functions::reports;
use portico_functions::trace::{self, Impact, RecallLot, RecallOutcome};
use portico_objects::UploadGrant;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::{Authenticated, JsonBody, Links, PageParams, Paging};
use crate::problem::Problem;

type Answer<T> = Result<T, Problem>;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness, for a load balancer or an orchestrator: 200 when every part this host needs
/// works (locally: the database takes a write, the MQTT broker accepts connections, the
/// workers run), 503 naming the parts that do not. Liveness stays `/healthz`.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, body = Vec<crate::Check>, description = "Every part works"),
        (status = 503, description = "A problem document naming the parts that do not work, with `checks`",
            content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    let checks = match state.readiness() {
        Some(readiness) => readiness.check().await,
        None => Vec::new(),
    };
    let failing: Vec<String> =
        checks.iter().filter(|c| !c.ok).map(|c| format!("{} ({})", c.part, c.detail)).collect();
    if failing.is_empty() {
        return Json(checks).into_response();
    }
    // A problem document like every error, with the checks beside it.
    let body = serde_json::json!({
        "type": "urn:portico:problem:not-ready",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("not ready: {}", failing.join("; ")),
        "checks": checks,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, crate::problem::PROBLEM_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document of this API")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

/// Who the caller is to Portico. Works for any valid token, also before the caller is added to
/// an account.
#[utoipa::path(get, path = "/v1/me", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
pub async fn get_me(Authenticated(caller): Authenticated) -> Json<Me> {
    Json(identity::me(&caller))
}

/// Creates an account with the next account number (admins only).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    request_body = CreateAccount,
    responses((status = 201, body = Account)))]
pub async fn create_account(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(input): JsonBody<CreateAccount>,
) -> Answer<impl IntoResponse> {
    let account = accounts::create_account(state.context(), &caller, input).await?;
    Ok(created(format!("/v1/accounts/{}", account.id), account))
}

/// Lists the accounts the caller can see, oldest first.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Account>)))]
pub async fn list_accounts(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Account>>> {
    Ok(Json(accounts::list_accounts(state.context(), &caller, page).await?))
}

/// One account: admins and support see every account, members their own.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = Account)))]
pub async fn get_account(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Answer<Json<Account>> {
    Ok(Json(accounts::get_account(state.context(), &caller, &id).await?))
}

/// Adds a user to an account (admins, and the account's account_admins).
#[utoipa::path(post, path = "/v1/accounts/{id}/users", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    request_body = AddUser,
    responses((status = 201, body = User),
        (status = 409, body = Problem)))]
pub async fn add_account_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AddUser>,
) -> Answer<impl IntoResponse> {
    let user = accounts::add_user(state.context(), &caller, &id, input).await?;
    Ok(created(format!("/v1/accounts/{id}/users/{}", user.id), user))
}

/// Lists an account's users, oldest first (admins and the account's members).
#[utoipa::path(get, path = "/v1/accounts/{id}/users", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id"),
        PageParams),
    responses((status = 200, body = Page<User>)))]
pub async fn list_account_users(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    Paging(page): Paging,
) -> Answer<Json<Page<User>>> {
    Ok(Json(accounts::list_users(state.context(), &caller, &id, page).await?))
}

/// Registers an instrument to an account (admins, the account's account_admins). The answer holds
/// the instrument's device secret, shown this once.
#[utoipa::path(post, path = "/v1/instruments", tag = "instruments", security(("bearer" = [])),
    request_body = RegisterInstrument,
    responses((status = 201, body = RegisteredInstrument), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn register_instrument(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(input): JsonBody<RegisterInstrument>,
) -> Answer<impl IntoResponse> {
    let registered = instruments::register(state.context(), &caller, input).await?;
    let location = format!("/v1/instruments/{}", registered.instrument.serial);
    // The secret must not linger in any cache on the way back.
    Ok(([(header::CACHE_CONTROL, "no-store")], created(location, registered)))
}

/// Lists the instruments the caller can see, oldest first.
#[utoipa::path(get, path = "/v1/instruments", tag = "instruments", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Instrument>)))]
pub async fn list_instruments(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Instrument>>> {
    Ok(Json(instruments::list(state.context(), &caller, page).await?))
}

/// One instrument, if the caller can see it.
#[utoipa::path(get, path = "/v1/instruments/{serial}", tag = "instruments", security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number")),
    responses((status = 200, body = Instrument)))]
pub async fn get_instrument(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(serial): Path<String>,
) -> Answer<Json<Instrument>> {
    Ok(Json(instruments::get(state.context(), &caller, &serial).await?))
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Notification>)))]
pub async fn list_notifications(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Notification>>> {
    Ok(Json(notifications::list(state.context(), &caller, page).await?))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "Notification id")),
    responses((status = 200, body = Notification)))]
pub async fn read_notification(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Answer<Json<Notification>> {
    Ok(Json(notifications::mark_read(state.context(), &caller, &id).await?))
}

/// Asks to upload a file to the caller's account: answers a signed `upload_url` to `PUT` the
/// bytes to (with the declared `Content-Type` and exactly `size` bytes) before `expires_at`.
#[utoipa::path(post, path = "/v1/documents/uploads", tag = "documents", security(("bearer" = [])),
    request_body = RequestUpload,
    responses((status = 201, body = UploadTicket)))]
pub async fn request_upload(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    links: Links,
    JsonBody(input): JsonBody<RequestUpload>,
) -> Answer<impl IntoResponse> {
    let mut ticket = documents::request_upload(state.context(), &caller, input).await?;
    ticket.upload_url = links.absolute(state.edge().public_url.as_deref(), ticket.upload_url);
    let location = format!("/v1/documents/{}", ticket.document_id);
    Ok(created(location, ticket))
}

/// The caller's account's documents, newest first.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Document>)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Document>>> {
    Ok(Json(documents::list(state.context(), &caller, page).await?))
}

/// A document's status and what the worker found in it; a signed `download_url` once ready.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Document id")),
    responses((status = 200, body = DocumentView)))]
pub async fn get_document(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    links: Links,
    Path(id): Path<String>,
) -> Answer<Json<DocumentView>> {
    let mut view = documents::get(state.context(), &caller, &id).await?;
    view.download_url =
        view.download_url.map(|u| links.absolute(state.edge().public_url.as_deref(), u));
    Ok(Json(view))
}

/// The signed upload: the file's bytes, streamed to storage. The link is the credential.
#[utoipa::path(put, path = "/v1/documents/{id}/content", tag = "documents",
    params(("id" = String, Path, description = "Document id"),
        ("expires" = i64, Query, description = "From the signed URL"),
        ("size" = u64, Query, description = "From the signed URL"),
        ("type" = String, Query, description = "From the signed URL"),
        ("sig" = String, Query, description = "From the signed URL")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Stored; the document is being checked"),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem)))]
pub async fn upload_content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer<impl IntoResponse> {
    let signer = state.signed_urls().ok_or_else(not_served_here)?;
    let grant = UploadGrant {
        expires: param(&query, "expires")?,
        size: param(&query, "size")?,
        content_type: query.get("type").cloned().ok_or_else(bad_link)?,
    };
    let signature = query.get("sig").ok_or_else(bad_link)?;
    signer.check_upload(&id, &grant, signature, OffsetDateTime::now_utc().unix_timestamp())?;
    let ctx = state.context();
    let document = ctx
        .documents
        .document(&id)
        .await?
        .ok_or_else(|| Problem::from(Error::NotFound(format!("document `{id}` not found"))))?;
    if document.status != DocumentStatus::Pending {
        return Err(Error::Conflict("this document's file was already uploaded".into()).into());
    }
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    if sent_type.as_deref() != Some(grant.content_type.as_str()) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("send the file as `Content-Type: {}`, as declared", grant.content_type),
        ));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length
        && length > document.size
    {
        return Err(Error::TooLarge(format!(
            "the body has {length} bytes, {} were declared",
            document.size
        ))
        .into());
    }
    documents::reserve_upload(ctx, &document.id).await?;
    let mut reservation = Reservation { state: Some(state.clone()), id: document.id.clone() };
    let stream = body.into_data_stream().map_err(std::io::Error::other).boxed();
    let stored = match ctx.objects.put(&document.object_key(), stream, document.size).await {
        Ok(stored) => stored,
        Err(e) => {
            // Released before answering, so the client sees `pending` as soon as it is told.
            reservation.state = None;
            documents::release_upload(ctx, &document.id).await?;
            return Err(e.into());
        }
    };
    // Stored: from here on the document never goes back to pending, so no later PUT can replace
    // bytes the worker may be checking.
    reservation.state = None;
    documents::upload_completed(ctx, &document, &stored).await?;
    Ok((
        [(header::ETAG, format!("\"{}\"", stored.sha256))],
        Json(
            serde_json::json!({"document_id": document.id, "size": stored.size, "sha256": stored.sha256}),
        ),
    ))
}

/// The signed download of a ready document's bytes.
#[utoipa::path(get, path = "/v1/documents/{id}/content", tag = "documents",
    params(("id" = String, Path, description = "Document id"),
        ("expires" = i64, Query, description = "From the signed URL"),
        ("sig" = String, Query, description = "From the signed URL")),
    responses((status = 200, description = "The file"), (status = 403, body = Problem)))]
pub async fn download_content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<impl IntoResponse> {
    let signer = state.signed_urls().ok_or_else(not_served_here)?;
    let expires: i64 = param(&query, "expires")?;
    let signature = query.get("sig").ok_or_else(bad_link)?;
    signer.check_download(&id, expires, signature, OffsetDateTime::now_utc().unix_timestamp())?;
    let ctx = state.context();
    let document = ctx
        .documents
        .document(&id)
        .await?
        .filter(|d| d.status == DocumentStatus::Ready)
        .ok_or_else(|| Problem::from(Error::NotFound(format!("document `{id}` is not ready"))))?;
    let stream = ctx.objects.get(&document.object_key()).await?;
    let disposition =
        format!("attachment; filename=\"{}\"", document.filename.replace(['"', '\\'], "_"));
    Ok((
        [
            (header::CONTENT_TYPE, document.content_type.clone()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, document.size.to_string()),
        ],
        Body::from_stream(stream),
    ))
}

fn bad_link() -> Problem {
    Problem::from(Error::Forbidden("this link is incomplete; use the URL exactly as given".into()))
}

fn not_served_here() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "this host does not serve document files")
}

fn param<T: std::str::FromStr>(query: &HashMap<String, String>, name: &str) -> Result<T, Problem> {
    query.get(name).and_then(|v| v.parse().ok()).ok_or_else(bad_link)
}

/// A document reserved by an upload PUT that has not stored its bytes yet. Dropped while still
/// armed (the PUT failed, or the client went away mid-body and axum dropped the handler), it
/// gives the document back to `pending`.
struct Reservation {
    state: Option<AppState>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let id = std::mem::take(&mut self.id);
        tokio::spawn(async move {
            if let Err(e) = documents::release_upload(state.context(), &id).await {
                tracing::warn!(document_id = id, error = %e, "releasing an upload reservation failed");
            }
        });
    }
}

/// Log lines, newest first (admins, support): `q` in Kibana's query syntax (`level:ERROR AND
/// function:create_account`, `serial:SN-1`, `"pump pressure"`, `duration_ms:>100`,
/// `request_id:*`), `from` / `to` as RFC 3339 times or ages (`1h`). Free-text hits come with
/// the message's matches marked. A query that does not parse is a 400 naming the position.
#[utoipa::path(get, path = "/v1/logs", tag = "logs", security(("bearer" = [])),
    params(("q" = Option<String>, Query, description = "Kibana query syntax; empty for every line"),
        ("from" = Option<String>, Query, description = "RFC 3339 time or an age such as 1h"),
        ("to" = Option<String>, Query, description = "RFC 3339 time or an age such as 15m"),
        PageParams),
    responses((status = 200, body = Page<LogHit>)))]
pub async fn search_logs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<HashMap<String, String>>,
    Paging(page): Paging,
) -> Answer<Json<Page<LogHit>>> {
    let get = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let search = logs::search_of(get("q").unwrap_or(""), get("from"), get("to"))?;
    Ok(Json(logs::search(state.context(), &caller, &search, page).await?))
}

/// The audit trail, newest first: who changed which record, when, what (each field's old and
/// new value; secrets only as changed) and why. Admins and support read all of it; an account
/// admin reads their own account's records. `?format=csv` for a spreadsheet (one row per field).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(("target" = Option<String>, Query, description = "`kind:id` (`lot:L-1`) or a kind (`lot`)"),
        ("actor" = Option<String>, Query, description = "a user id or sub, an instrument serial, a system function"),
        ("action" = Option<String>, Query, description = "`create` or `update`"),
        ("from" = Option<String>, Query, description = "RFC 3339 time or an age such as 7d"),
        ("to" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`"),
        PageParams),
    responses((status = 200, description = "A page of records; as CSV with `?format=csv`",
        content((Page<AuditRecord> = "application/json"), (String = "text/csv")))))]
pub async fn list_audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<HashMap<String, String>>,
    Paging(page): Paging,
) -> Answer<axum::response::Response> {
    let get = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let csv = is_csv(get("format"))?;
    let now = OffsetDateTime::now_utc();
    let bound = |name: &str| get(name).map(|v| logs::time_bound(name, v, now)).transpose();
    let audit_query = AuditQuery {
        target: get("target").map(str::to_string),
        actor: get("actor").map(str::to_string),
        action: get("action").map(str::to_string),
        from_ms: bound("from")?,
        to_ms: bound("to")?,
        account_id: None,
    };
    let page = audit::list(state.context(), &caller, audit_query, page).await?;
    if !csv {
        return Ok(Json(page).into_response());
    }
    let mut body = audit::CSV_HEADER.to_string();
    body.push_str(&audit::csv(&page.items));
    let mut response = csv_attachment("audit.csv", body);
    if let Some(cursor) = page.next_cursor
        && let Ok(value) = header::HeaderValue::from_str(&cursor)
    {
        // The next page of a CSV export (its body has no room for a cursor).
        response.headers_mut().insert("x-next-cursor", value);
    }
    Ok(response)
}

/// A report from the warehouse (admins and support; an account admin gets it for their own
/// account): `alerts-by-account` (per ISO week, account and severity), `shipments-by-product`,
/// `lot-exposure` (per lot: the accounts and instruments it reached), `uploads-by-account`,
/// `active-users` (per ISO week and account). `from` / `to` are dates, both included (by
/// default the 52 weeks to today). `format`: `json` (the default), `csv`, or a chart, `svg` or
/// `png` (800x450). The warehouse trails the API by seconds; `as_of` says how far it got.
#[utoipa::path(get, path = "/v1/reports/{name}", tag = "reports", security(("bearer" = [])),
    params(("name" = String, Path, description = "the report"),
        ("from" = Option<String>, Query, description = "first day, YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "last day, YYYY-MM-DD (included)"),
        ("format" = Option<String>, Query, description = "`json` (the default), `csv`, `svg` or `png`")),
    responses((status = 200, description = "The report; as CSV, SVG or PNG with `format`",
        content((reports::ReportBody = "application/json"), (String = "text/csv"),
            (String = "image/svg+xml"), (Vec<u8> = "image/png")))))]
pub async fn get_report(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<axum::response::Response> {
    let get = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let format = get("format").unwrap_or("json");
    if !["json", "csv", "svg", "png"].contains(&format) {
        return Err(Error::invalid("format", "must be json, csv, svg or png").into());
    }
    let table = reports::report(state.context(), &caller, &name, get("from"), get("to")).await?;
    let file = format!("{}.{format}", table.report.name());
    Ok(match format {
        "csv" => csv_attachment(&file, reports::csv(&table)),
        "svg" => {
            let svg = portico_charts::svg(&portico_charts::chart(&table));
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        "png" => {
            let chart = portico_charts::chart(&table);
            let png = tokio::task::spawn_blocking(move || {
                portico_charts::png(&portico_charts::svg(&chart))
            })
            .await
            .map_err(|e| Error::Unexpected(e.into()))?
            .map_err(|e| Error::Unexpected(e.into()))?;
            ([(header::CONTENT_TYPE, "image/png")], png).into_response()
        }
        _ => Json(reports::body(&table)).into_response(),
    })
}

/// The e-mail outbox, newest first (admins): every e-mail with its delivery state.
#[utoipa::path(get, path = "/v1/outbox", tag = "email", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "pending, sending, sent or failed"),
        PageParams),
    responses((status = 200, body = Page<OutboxEntry>)))]
pub async fn list_outbox(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<HashMap<String, String>>,
    Paging(page): Paging,
) -> Answer<Json<Page<OutboxEntry>>> {
    let status = query.get("status").map(String::as_str);
    Ok(Json(email::list_outbox(state.context(), &caller, status, page).await?))
}

/// Adds a product to the catalogue (admins).
#[utoipa::path(post, path = "/v1/products", tag = "catalogue", security(("bearer" = [])),
    request_body = CreateProduct,
    responses((status = 201, body = Product),
        (status = 409, body = Problem)))]
pub async fn create_product(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(input): JsonBody<CreateProduct>,
) -> Answer<impl IntoResponse> {
    let product = catalogue::create_product(state.context(), &caller, input).await?;
    Ok(created(format!("/v1/products/{}", product.sku), product))
}

/// The catalogue, oldest first.
#[utoipa::path(get, path = "/v1/products", tag = "catalogue", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Product>)))]
pub async fn list_products(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Product>>> {
    Ok(Json(catalogue::list_products(state.context(), &caller, page).await?))
}

/// One product.
#[utoipa::path(get, path = "/v1/products/{sku}", tag = "catalogue", security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = Product)))]
pub async fn get_product(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(sku): Path<String>,
) -> Answer<Json<Product>> {
    Ok(Json(catalogue::get_product(state.context(), &caller, &sku).await?))
}

/// Records a manufactured lot with its QC results (admins).
#[utoipa::path(post, path = "/v1/lots", tag = "catalogue", security(("bearer" = [])),
    request_body = CreateLot,
    responses((status = 201, body = Lot),
        (status = 409, body = Problem)))]
pub async fn create_lot(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(input): JsonBody<CreateLot>,
) -> Answer<impl IntoResponse> {
    let lot = catalogue::create_lot(state.context(), &caller, input).await?;
    Ok(created(format!("/v1/lots/{}", lot.lot_number), lot))
}

/// One lot, and whether it was recalled: staff, and members of accounts that received it.
#[utoipa::path(get, path = "/v1/lots/{lot}", tag = "catalogue", security(("bearer" = [])),
    params(("lot" = String, Path, description = "Lot number")),
    responses((status = 200, body = LotView)))]
pub async fn get_lot(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(lot): Path<String>,
) -> Answer<Json<LotView>> {
    Ok(Json(catalogue::get_lot(state.context(), &caller, &lot).await?))
}

/// Traceability (admins, support): the accounts the lot reached, directly or through
/// distributors, with the paths it travelled; the instruments that loaded it; the run files it
/// may have affected; whom to tell. `?format=csv` for a spreadsheet.
#[utoipa::path(get, path = "/v1/lots/{lot}/impact", tag = "traceability", security(("bearer" = [])),
    params(("lot" = String, Path, description = "Lot number"),
        ("format" = Option<String>, Query, description = "`json` (the default) or `csv`")),
    responses((status = 200, description = "The impact; as CSV with `?format=csv`",
        content((Impact = "application/json"), (String = "text/csv")))))]
pub async fn lot_impact(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(lot): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<axum::response::Response> {
    let csv = is_csv(query.get("format").map(String::as_str))?;
    let impact = trace::impact(state.context(), &caller, &lot).await?;
    if !csv {
        return Ok(Json(impact).into_response());
    }
    Ok(csv_attachment(&format!("impact-{lot}.csv"), trace::impact_csv(&impact)))
}

/// `?format=`: `json` (or none) or `csv`.
fn is_csv(format: Option<&str>) -> Result<bool, Problem> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(Error::invalid("format", "must be json or csv").into()),
    }
}

/// A CSV download named `filename`.
fn csv_attachment(filename: &str, body: String) -> axum::response::Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// Recalls a lot (admins): recorded once (201; a repeat answers the same recall, 200), and
/// everyone the impact names is told by MQTT notification, in `GET /v1/notifications` and by
/// e-mail, each once.
#[utoipa::path(post, path = "/v1/lots/{lot}/recall", tag = "traceability", security(("bearer" = [])),
    params(("lot" = String, Path, description = "Lot number")),
    request_body = RecallLot,
    responses((status = 201, body = RecallOutcome), (status = 200, body = RecallOutcome)))]
pub async fn recall_lot(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(lot): Path<String>,
    JsonBody(input): JsonBody<RecallLot>,
) -> Answer<impl IntoResponse> {
    let outcome = trace::recall(state.context(), &caller, &lot, input).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(outcome)))
}

/// The lot's Certificate of Analysis (PDF/A-2b): staff, and members of accounts that received it.
#[utoipa::path(get, path = "/v1/lots/{lot}/certificate.pdf", tag = "catalogue", security(("bearer" = [])),
    params(("lot" = String, Path, description = "Lot number")),
    responses((status = 200, description = "The certificate", content_type = "application/pdf")))]
pub async fn lot_certificate(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(lot): Path<String>,
) -> Answer<impl IntoResponse> {
    let pdf = catalogue::certificate(state.context(), &caller, &lot).await?;
    let disposition = format!("inline; filename=\"certificate-{lot}.pdf\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        pdf,
    ))
}

/// Records a lot shipped to an account: admins; or a distributor's account admin, for an onward
/// shipment (`from_account_id`) of no more than the distributor holds (422 otherwise).
#[utoipa::path(post, path = "/v1/shipments", tag = "catalogue", security(("bearer" = [])),
    request_body = CreateShipment,
    responses((status = 201, body = Shipment)))]
pub async fn create_shipment(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(input): JsonBody<CreateShipment>,
) -> Answer<impl IntoResponse> {
    let shipment = catalogue::create_shipment(state.context(), &caller, input).await?;
    Ok(created(format!("/v1/shipments?lot={}", shipment.lot_number), shipment))
}

/// Shipments: staff see all, members their account's.
#[utoipa::path(get, path = "/v1/shipments", tag = "catalogue", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<Shipment>)))]
pub async fn list_shipments(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Paging(page): Paging,
) -> Answer<Json<Page<Shipment>>> {
    Ok(Json(catalogue::list_shipments(state.context(), &caller, page).await?))
}

/// The dev issuer's authorization server metadata (only when no external issuer is configured).
#[utoipa::path(get, path = "/oauth2/default/.well-known/oauth-authorization-server", tag = "dev issuer",
    responses((status = 200, description = "OAuth 2.0 authorization server metadata"),
        (status = 404, body = Problem)))]
pub async fn dev_issuer_metadata(
    State(state): State<AppState>,
    links: Links,
) -> Answer<impl IntoResponse> {
    let issuer = state.dev_issuer().ok_or_else(no_dev_issuer)?;
    let mut jwks_uri =
        links.absolute(state.edge().public_url.as_deref(), "/oauth2/default/v1/keys".to_string());
    if jwks_uri.starts_with('/') {
        // Metadata needs an absolute URI: the issuer's own origin.
        jwks_uri = format!("{}/v1/keys", issuer.issuer());
    }
    Ok(Json(issuer.metadata(&jwks_uri)))
}

/// The dev issuer's signing keys (JWKS).
#[utoipa::path(get, path = "/oauth2/default/v1/keys", tag = "dev issuer",
    responses((status = 200, description = "JSON Web Key Set"), (status = 404, body = Problem)))]
pub async fn dev_issuer_keys(State(state): State<AppState>) -> Answer<impl IntoResponse> {
    let issuer = state.dev_issuer().ok_or_else(no_dev_issuer)?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(issuer.jwks().clone())))
}

fn no_dev_issuer() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "this server uses an external issuer; it serves no keys of its own",
    )
}

fn created<T: Serialize>(location: String, body: T) -> impl IntoResponse {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body))
}
