//! The catalogue: products, lots with their QC results, shipments to accounts, and the lot's
//! Certificate of Analysis for those entitled to it.

use portico_core::domain::{AccountKind, Caller, Lot, Product, QcTest, Shipment};
use portico_core::policy::Scope;
use portico_core::ports::{Page, PageRequest};
use portico_core::{CertificateData, Error, FieldError, Result, policy};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::Context;
use crate::validate;

/// `POST /v1/products`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// 1 to 64 letters, digits, `-`, `_` or `.` (not at either end, never `..`).
    pub sku: String,
    pub name: String,
    pub category: String,
}

/// `POST /v1/lots`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLot {
    /// 1 to 64 letters, digits, `-`, `_` or `.` (not at either end, never `..`): it names the
    /// lot's certificate in the object store.
    pub lot_number: String,
    pub sku: String,
    /// `YYYY-MM-DD`
    pub manufactured_on: String,
    /// `YYYY-MM-DD`
    pub expires_on: String,
    pub qc_tests: Vec<QcTest>,
}

/// `POST /v1/shipments`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShipment {
    pub lot_number: String,
    /// A distributor sending on part of what it received (an onward shipment); absent for a
    /// shipment from the manufacturer.
    #[serde(default)]
    pub from_account_id: Option<String>,
    pub account_id: String,
    /// `YYYY-MM-DD`
    pub shipped_on: String,
    pub quantity: u32,
}

/// Codes (SKUs, lot numbers) appear in URLs and storage keys: a safe alphabet only.
fn date(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(value, &format) {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push(FieldError::new(field, "must be a date as YYYY-MM-DD"));
            None
        }
    }
}

pub async fn create_product(
    ctx: &Context,
    caller: &Caller,
    input: CreateProduct,
) -> Result<Product> {
    policy::require_admin(caller)?;
    let mut errors = Vec::new();
    validate::key_safe_id(&mut errors, "sku", &input.sku);
    validate::text(&mut errors, "name", &input.name, 300);
    validate::text(&mut errors, "category", &input.category, 100);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let product = Product {
        sku: input.sku,
        name: input.name.trim().to_string(),
        category: input.category.trim().to_string(),
        created_at: OffsetDateTime::now_utc(),
    };
    ctx.catalogue.create_product(&product).await?;
    Ok(product)
}

pub async fn get_product(ctx: &Context, caller: &Caller, sku: &str) -> Result<Product> {
    policy::require_provisioned(caller)?;
    ctx.catalogue
        .product(sku)
        .await?
        .ok_or_else(|| Error::NotFound(format!("product `{sku}` not found")))
}

pub async fn list_products(
    ctx: &Context,
    caller: &Caller,
    page: PageRequest,
) -> Result<Page<Product>> {
    policy::require_provisioned(caller)?;
    ctx.catalogue.list_products(&page).await
}

pub async fn create_lot(ctx: &Context, caller: &Caller, input: CreateLot) -> Result<Lot> {
    policy::require_admin(caller)?;
    let mut errors = Vec::new();
    validate::key_safe_id(&mut errors, "lot_number", &input.lot_number);
    validate::key_safe_id(&mut errors, "sku", &input.sku);
    let made = date(&mut errors, "manufactured_on", &input.manufactured_on);
    let expires = date(&mut errors, "expires_on", &input.expires_on);
    if let (Some(m), Some(e)) = (made, expires)
        && e < m
    {
        errors.push(FieldError::new("expires_on", "must not be before manufactured_on"));
    }
    if input.qc_tests.is_empty() || input.qc_tests.len() > 1000 {
        errors.push(FieldError::new("qc_tests", "must list 1 to 1000 tests"));
    }
    for (i, t) in input.qc_tests.iter().enumerate() {
        for (field, value, max) in [
            ("name", &t.name, 300),
            ("method", &t.method, 300),
            ("specification", &t.specification, 300),
            ("result", &t.result, 300),
        ] {
            validate::text(&mut errors, &format!("qc_tests[{i}].{field}"), value, max);
        }
        if t.unit.chars().count() > 50 || t.unit.chars().any(char::is_control) {
            errors.push(FieldError::new(
                format!("qc_tests[{i}].unit"),
                "must be at most 50 characters",
            ));
        }
    }
    if errors.is_empty() && ctx.catalogue.product(&input.sku).await?.is_none() {
        errors.push(FieldError::new("sku", "is not a product in the catalogue"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let lot = Lot {
        lot_number: input.lot_number,
        sku: input.sku,
        manufactured_on: input.manufactured_on,
        expires_on: input.expires_on,
        qc_tests: input.qc_tests,
        created_at: OffsetDateTime::now_utc(),
        recall: None,
    };
    ctx.catalogue.create_lot(&lot).await?;
    Ok(lot)
}

/// Whether the lot was shipped to the caller's account (the fact the policy decides on).
async fn received(ctx: &Context, caller: &Caller, lot_number: &str) -> Result<bool> {
    let Some(account) = caller.account_id() else {
        return Ok(false);
    };
    let shipments = ctx
        .catalogue
        .list_shipments(Some(lot_number), Some(account), &PageRequest { limit: 1, cursor: None })
        .await?;
    Ok(!shipments.items.is_empty())
}

/// `GET /v1/lots/{lot}`
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LotView {
    #[serde(flatten)]
    pub lot: Lot,
    /// Whether the lot was recalled (`recall` says why and when).
    pub recalled: bool,
}

pub async fn get_lot(ctx: &Context, caller: &Caller, lot_number: &str) -> Result<LotView> {
    policy::require_provisioned(caller)?;
    let received = !caller.sees_all_accounts() && received(ctx, caller, lot_number).await?;
    policy::read_lot(caller, lot_number, received)?;
    let lot = ctx
        .catalogue
        .lot(lot_number)
        .await?
        .ok_or_else(|| Error::NotFound(format!("lot `{lot_number}` not found")))?;
    Ok(LotView { recalled: lot.recall.is_some(), lot })
}

pub async fn create_shipment(
    ctx: &Context,
    caller: &Caller,
    input: CreateShipment,
) -> Result<Shipment> {
    policy::create_shipment(caller, input.from_account_id.as_deref())?;
    let mut errors = Vec::new();
    validate::key_safe_id(&mut errors, "lot_number", &input.lot_number);
    date(&mut errors, "shipped_on", &input.shipped_on);
    if input.quantity == 0 {
        errors.push(FieldError::new("quantity", "must be at least 1"));
    }
    if input.from_account_id.as_deref() == Some(input.account_id.as_str()) {
        errors.push(FieldError::new("account_id", "must not be the sending account"));
    }
    if errors.is_empty() {
        if ctx.catalogue.lot(&input.lot_number).await?.is_none() {
            errors.push(FieldError::new("lot_number", "is not a known lot"));
        }
        if ctx.accounts.account(&input.account_id).await?.is_none() {
            errors.push(FieldError::new("account_id", "is not a known account"));
        }
        if let Some(from) = &input.from_account_id {
            match ctx.accounts.account(from).await? {
                None => errors.push(FieldError::new("from_account_id", "is not a known account")),
                Some(a) if a.kind != AccountKind::Distributor => errors.push(FieldError::new(
                    "from_account_id",
                    "only distributors ship lots on; this account is a ".to_string()
                        + a.kind.as_str(),
                )),
                Some(_) => {}
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let shipment = Shipment {
        id: uuid::Uuid::now_v7().to_string(),
        lot_number: input.lot_number,
        from_account_id: input.from_account_id,
        account_id: input.account_id,
        shipped_on: input.shipped_on,
        quantity: input.quantity,
        created_at: OffsetDateTime::now_utc(),
    };
    // The store checks what the sender holds in the same write (concurrent onward shipments
    // cannot overdraw it).
    ctx.catalogue.create_shipment(&shipment).await?;
    Ok(shipment)
}

/// Admins and support see every shipment; members see their account's.
pub async fn list_shipments(
    ctx: &Context,
    caller: &Caller,
    page: PageRequest,
) -> Result<Page<Shipment>> {
    match policy::list_scope(caller)? {
        Scope::All => ctx.catalogue.list_shipments(None, None, &page).await,
        Scope::Account(own) => ctx.catalogue.list_shipments(None, Some(&own), &page).await,
        Scope::Nothing => Ok(Page::empty()),
    }
}

/// The product a lot is of (a lot naming a missing product is a broken store, not a 404).
pub(crate) async fn product_of(ctx: &Context, lot: &Lot) -> Result<Product> {
    ctx.catalogue.product(&lot.sku).await?.ok_or_else(|| {
        Error::Unexpected(anyhow::anyhow!("lot {} names a missing product", lot.lot_number))
    })
}

/// The lot's Certificate of Analysis, rendered once per lot and kept in the object store. A lot
/// changes once at most (its recall), and a recalled lot's certificate is another object.
/// The lot record's last audit record, where a trail is kept.
pub async fn lot_audit_ref(
    ctx: &Context,
    lot_number: &str,
) -> Result<Option<portico_core::ports::AuditRef>> {
    let query = portico_core::audit::AuditQuery {
        target: Some(format!("lot:{lot_number}")),
        ..Default::default()
    };
    match ctx.audit.list(&query, &PageRequest { limit: 1, cursor: None }).await {
        Ok(page) => Ok(page.items.into_iter().next().map(|record| portico_core::ports::AuditRef {
            seq: record.entry.seq,
            at: record
                .entry
                .at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            digest: record.digest,
        })),
        Err(Error::Unavailable(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn certificate(ctx: &Context, caller: &Caller, lot_number: &str) -> Result<Vec<u8>> {
    let lot = get_lot(ctx, caller, lot_number).await?.lot;
    let key = match lot.recall {
        None => format!("certificates/{}.pdf", lot.lot_number),
        Some(_) => format!("certificates/{}.recalled.pdf", lot.lot_number),
    };
    if let Ok(stream) = ctx.objects.get(&key).await {
        let chunks: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(stream)
            .await
            .map_err(|e| anyhow::anyhow!("reading cached certificate: {e}"))?;
        metrics::counter!("portico_pdf_cache_hits_total").increment(1);
        return Ok(chunks.concat());
    }
    let product = product_of(ctx, &lot).await?;
    let audit = lot_audit_ref(ctx, &lot.lot_number).await?;
    let data = CertificateData {
        issuer: ctx.settings.issuer_name.clone(),
        issued_on: lot.created_at.date().to_string(),
        product,
        lot,
        audit,
    };
    let started = std::time::Instant::now();
    let pdf = ctx.renderer.certificate(&data).await?;
    metrics::histogram!("portico_pdf_render_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("portico_pdfs_rendered_total").increment(1);
    let size = pdf.len() as u64;
    let body = futures_util::stream::once(std::future::ready(Ok(bytes::Bytes::from(pdf.clone()))));
    ctx.objects.put(&key, futures_util::StreamExt::boxed(body), size).await?;
    Ok(pdf)
}
