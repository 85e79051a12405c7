//! Lot traceability: instruments that report loading a lot, a lot's impact (where it went and
//! what it touched, from the graph), and its recall, which tells everyone the impact names.

use std::collections::BTreeMap;

use portico_core::domain::{
    Caller, Lot, LotUse, Notification, Product, Recall, from_unix_ms, unix_ms,
};
use portico_core::graph::{Trace, TracedAccount, TracedDocument, TracedInstrument, TracedUser};
use portico_core::{Error, FieldError, Result, policy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::Context;
use crate::catalogue::product_of;

/// Why a `lot_loaded` event recorded nothing (the `reason` of `portico_lot_uses_ignored_total`).
fn ignored(serial: &str, lot: &str, reason: &'static str) -> Result<Option<LotUse>> {
    metrics::counter!("portico_lot_uses_ignored_total", "reason" => reason).increment(1);
    tracing::warn!(serial, lot, reason, "lot_loaded event ignored");
    Ok(None)
}

/// The namespace of lot-use ids (see `record_lot_use`).
const LOT_USE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2b7e_51a0_93c4_4d1f_8a62_7c0e_f415_9d33);

/// `record_lot_use`: an instrument published `{"type": "lot_loaded", "lot_number": ...}` on its
/// events topic; `event` is what the rule selected (the payload plus `serial` and `received_at`).
/// Recorded once per event: the use's id comes from the event's own id, or else from instrument,
/// lot and time, so a redelivery adds nothing. An unknown instrument or lot is counted and logged,
/// not an error (retrying would not make it known).
pub async fn record_lot_use(ctx: &Context, event: &Value) -> Result<Option<LotUse>> {
    let serial = event
        .get("serial")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("serial", "the rule must select the instrument's serial"))?;
    let Some(lot_number) = event.get("lot_number").and_then(Value::as_str) else {
        return ignored(serial, "", "no_lot_number");
    };
    if !portico_core::domain::is_key_safe_id(lot_number) {
        return ignored(serial, "", "bad_lot_number");
    }
    let Some(instrument) = ctx.instruments.instrument(serial).await? else {
        return ignored(serial, lot_number, "unknown_instrument");
    };
    if ctx.catalogue.lot(lot_number).await?.is_none() {
        return ignored(serial, lot_number, "unknown_lot");
    }
    // When: the event's own time if it gives one, else when the broker received it.
    let received = event.get("received_at").and_then(Value::as_i64).and_then(from_unix_ms);
    let stated = ["loaded_at", "timestamp", "at"]
        .iter()
        .find_map(|k| event.get(*k).and_then(Value::as_str))
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let loaded_at = stated.or(received).unwrap_or_else(OffsetDateTime::now_utc);
    let key = match event.get("event_id").or_else(|| event.get("id")) {
        Some(id) => format!(
            "{serial}\nevent\n{}",
            id.as_str().map_or_else(|| id.to_string(), str::to_string)
        ),
        None => format!("{serial}\n{lot_number}\n{}", unix_ms(loaded_at)),
    };
    let lot_use = LotUse {
        id: uuid::Uuid::new_v5(&LOT_USE_NAMESPACE, key.as_bytes()).to_string(),
        lot_number: lot_number.to_string(),
        serial: serial.to_string(),
        account_id: instrument.account_id,
        loaded_at,
    };
    if ctx.catalogue.record_lot_use(&lot_use).await? {
        metrics::counter!("portico_lot_uses_recorded_total").increment(1);
        tracing::info!(serial, lot = lot_number, "lot use recorded");
    }
    Ok(Some(lot_use))
}

/// `GET /v1/lots/{lot}/impact`
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Impact {
    pub lot: Lot,
    pub product: Product,
    pub recalled: bool,
    /// The commit time of the newest change the graph had applied: the answer is complete up to
    /// then (the graph follows the API within moments; see ARCHITECTURE.md).
    pub as_of: Option<String>,
    /// Every account that holds or used the lot, with the paths it travelled.
    pub accounts: Vec<TracedAccount>,
    /// Instruments that loaded the lot.
    pub instruments: Vec<TracedInstrument>,
    /// Ready run files that name the lot, or were produced on those instruments since they
    /// loaded it.
    pub documents: Vec<TracedDocument>,
    /// Whom to tell: the lab managers and account admins of those accounts.
    pub users: Vec<TracedUser>,
}

/// A lot's catalogue record and product, or 404.
async fn lot_and_product(ctx: &Context, lot_number: &str) -> Result<(Lot, Product)> {
    let lot = ctx
        .catalogue
        .lot(lot_number)
        .await?
        .ok_or_else(|| Error::NotFound(format!("lot `{lot_number}` not found")))?;
    let product = product_of(ctx, &lot).await?;
    Ok((lot, product))
}

fn impact_of(lot: Lot, product: Product, trace: Trace) -> Impact {
    Impact {
        recalled: lot.recall.is_some(),
        lot,
        product,
        as_of: trace.as_of.and_then(|t| t.format(&Rfc3339).ok()),
        accounts: trace.accounts,
        instruments: trace.instruments,
        documents: trace.documents,
        users: trace.members.into_iter().filter(|u| policy::told_of_recall(&u.roles)).collect(),
    }
}

pub async fn impact(ctx: &Context, caller: &Caller, lot_number: &str) -> Result<Impact> {
    policy::trace_lot(caller, lot_number)?;
    let (lot, product) = lot_and_product(ctx, lot_number).await?;
    let trace = ctx.graph.trace(lot_number).await?;
    Ok(impact_of(lot, product, trace))
}

/// The impact as one spreadsheet: a row per account, instrument, document and user.
pub fn impact_csv(impact: &Impact) -> String {
    let mut out = String::from("kind,id,name,account_id,detail,at\n");
    let mut row = |fields: [&str; 6]| {
        out.push_str(&portico_core::csv::line(fields));
    };
    for a in &impact.accounts {
        let paths: Vec<String> = a.paths.iter().map(|p| p.join(" > ")).collect();
        row(["account", &a.account_id, &a.name, &a.account_id, &paths.join(" | "), ""]);
    }
    for i in &impact.instruments {
        let at = i.first_loaded_at.format(&Rfc3339).unwrap_or_default();
        row(["instrument", &i.serial, &i.name, &i.account_id, "loaded", &at]);
    }
    for d in &impact.documents {
        let at = d.created_at.format(&Rfc3339).unwrap_or_default();
        let detail = match (&d.instrument_serial, d.names_lot) {
            (_, true) => "names the lot".to_string(),
            (Some(serial), false) => format!("produced on {serial}"),
            (None, false) => String::new(),
        };
        row(["document", &d.document_id, &d.filename, &d.account_id, &detail, &at]);
    }
    for u in &impact.users {
        let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
        let detail = format!("{} ({})", u.email, roles.join(" "));
        row(["user", &u.user_id, &u.display_name, &u.account_id, &detail, ""]);
    }
    out
}

/// A CSV field: quoted when it needs to be, and never read as a formula by a spreadsheet.
/// `POST /v1/lots/{lot}/recall`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallLot {
    /// Why the lot is recalled; told to everyone the recall reaches.
    pub reason: String,
}

/// What a recall did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecallOutcome {
    pub lot_number: String,
    /// The recall as first recorded (a repeated call answers the same one).
    pub recall: Recall,
    /// Whether this call recorded it.
    #[serde(skip)]
    pub created: bool,
    /// Everyone the recall was sent to, by this call or an earlier one.
    pub notified: Vec<String>,
    /// As of when the graph knew the lot's reach.
    pub as_of: Option<String>,
}

/// Records the recall once and tells every user the impact names: a `lot_recall` notification
/// (stored, and published on their topic) and a recall notice by e-mail. Notifications and
/// e-mails have ids derived from lot and user, so calling again tells nobody twice, and tells
/// those the graph reached only since.
pub async fn recall(
    ctx: &Context,
    caller: &Caller,
    lot_number: &str,
    input: RecallLot,
) -> Result<RecallOutcome> {
    policy::recall_lot(caller, lot_number)?;
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 || reason.contains('\0') {
        return Err(Error::Validation(vec![FieldError::new(
            "reason",
            "must be 1 to 2000 characters",
        )]));
    }
    portico_core::audit::set_reason(reason);
    let recalled_by = caller.user_id().unwrap_or(&caller.sub).to_string();
    let asked =
        Recall { reason: reason.to_string(), recalled_by, recalled_at: OffsetDateTime::now_utc() };
    let (lot, created) = ctx
        .catalogue
        .recall_lot(lot_number, &asked)
        .await?
        .ok_or_else(|| Error::NotFound(format!("lot `{lot_number}` not found")))?;
    let recall = lot.recall.clone().ok_or_else(|| {
        Error::Unexpected(anyhow::anyhow!("lot {lot_number} was recalled but has no recall"))
    })?;
    let product = product_of(ctx, &lot).await?;
    let trace = ctx.graph.trace(lot_number).await?;
    let impact = impact_of(lot, product, trace);
    // The notices name the recall's record in the audit trail.
    let audit = crate::catalogue::lot_audit_ref(ctx, lot_number).await?;

    let notifications: Vec<Notification> = impact
        .users
        .iter()
        .map(|user| Notification {
            id: crate::notifications::notification_id(
                &format!("lot_recall\n{lot_number}"),
                &user.user_id,
            ),
            user_id: user.user_id.clone(),
            kind: "lot_recall".into(),
            title: format!("Recall: {} lot {lot_number}", impact.product.name),
            body: recall.reason.clone(),
            data: json!({
                "lot_number": lot_number,
                "sku": impact.product.sku,
                "reason": recall.reason,
                "recalled_at": recall.recalled_at.format(&Rfc3339).unwrap_or_default(),
                "account_id": user.account_id,
                "audit": audit,
            }),
            created_at: OffsetDateTime::now_utc(),
            read_at: None,
        })
        .collect();
    let new = crate::notifications::deliver(ctx, &notifications).await?;

    // Each account's notice names what of that account the lot touched.
    let mut by_account: BTreeMap<&str, (Vec<&TracedInstrument>, Vec<&TracedDocument>)> =
        BTreeMap::new();
    for i in &impact.instruments {
        by_account.entry(&i.account_id).or_default().0.push(i);
    }
    for d in &impact.documents {
        by_account.entry(&d.account_id).or_default().1.push(d);
    }
    for user in &impact.users {
        let (instruments, documents) =
            by_account.get(user.account_id.as_str()).cloned().unwrap_or_default();
        let email = crate::email::lot_recall(
            &user.email,
            &impact.lot,
            &impact.product,
            &recall.reason,
            &instruments,
            &documents,
            audit.as_ref(),
        )?;
        crate::email::queue(ctx, email).await?;
    }
    tracing::info!(
        lot = lot_number,
        created,
        recipients = impact.users.len(),
        newly_notified = new.len(),
        "lot recall"
    );
    Ok(RecallOutcome {
        lot_number: lot_number.to_string(),
        recall,
        created,
        notified: impact.users.iter().map(|u| u.user_id.clone()).collect(),
        as_of: impact.as_of,
    })
}
