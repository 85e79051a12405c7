//! Instruments: registration (with a one-time device secret) and who may see them.

use portico_core::domain::{Caller, Instrument};
use portico_core::policy::Scope;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::Context;
use crate::validate;

/// `POST /v1/instruments`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInstrument {
    /// The instrument's serial number: 1 to 64 letters, digits, `-`, `_` or `.` (not at either
    /// end, never `..`); it is also the instrument's MQTT username, client id and a topic level.
    pub serial: String,
    pub model: String,
    pub account_id: String,
    pub name: String,
}

/// The answer to a registration: the only time the device secret is ever shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisteredInstrument {
    #[serde(flatten)]
    pub instrument: Instrument,
    /// The instrument's MQTT password. Store it on the instrument now; Portico keeps only a hash.
    pub device_secret: String,
}

pub async fn register(
    ctx: &Context,
    caller: &Caller,
    input: RegisterInstrument,
) -> Result<RegisteredInstrument> {
    let mut errors = Vec::new();
    validate::key_safe_id(&mut errors, "serial", &input.serial);
    validate::text(&mut errors, "model", &input.model, 100);
    validate::text(&mut errors, "name", &input.name, 200);
    validate::token_like(&mut errors, "account_id", &input.account_id, 64);
    policy::register_instrument(caller, &input.account_id)?;
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if ctx.accounts.account(&input.account_id).await?.is_none() {
        return Err(policy::not_found_account(&input.account_id));
    }
    // Hashing is deliberately slow: keep it off the async workers.
    let (secret, hash) = tokio::task::spawn_blocking(|| {
        let secret = portico_auth::device_secret::generate()?;
        let hash = portico_auth::device_secret::hash(&secret)?;
        Some((secret, hash))
    })
    .await
    .map_err(|e| anyhow::anyhow!("hashing task failed: {e}"))?
    .ok_or_else(|| anyhow::anyhow!("the system random generator failed"))?;
    let instrument = Instrument {
        serial: input.serial,
        model: input.model.trim().to_string(),
        name: input.name.trim().to_string(),
        account_id: input.account_id,
        created_at: OffsetDateTime::now_utc(),
    };
    ctx.instruments.create_instrument(&instrument, &hash).await?;
    tracing::info!(serial = %instrument.serial, account_id = %instrument.account_id, "instrument registered");
    Ok(RegisteredInstrument { instrument, device_secret: secret })
}

pub async fn get(ctx: &Context, caller: &Caller, serial: &str) -> Result<Instrument> {
    policy::require_provisioned(caller)?;
    let instrument = ctx
        .instruments
        .instrument(serial)
        .await?
        .ok_or_else(|| Error::NotFound(format!("instrument `{serial}` not found")))?;
    policy::read_instrument(caller, serial, &instrument.account_id)?;
    Ok(instrument)
}

pub async fn list(ctx: &Context, caller: &Caller, page: PageRequest) -> Result<Page<Instrument>> {
    match policy::list_scope(caller)? {
        Scope::All => ctx.instruments.list_instruments(None, &page).await,
        Scope::Account(own) => ctx.instruments.list_instruments(Some(&own), &page).await,
        Scope::Nothing => Ok(Page::empty()),
    }
}
