//! The broker's gate: who may connect (users by access token, instruments by serial and device
//! secret) and what each may publish and subscribe to (the policy). The broker asks; this decides.

use std::collections::HashSet;
use std::sync::Arc;

use portico_auth::Verifier;
use portico_core::mqtt::{Action, ClientIdClaim, Policy, Principal, claim_client_id};
use tokio::sync::Semaphore;

use crate::Context;
use crate::identity::{Identity, identify};

/// Why a connection is refused; each maps to a CONNACK code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No password, a token that does not verify, an unknown serial or a wrong secret.
    BadCredentials(String),
    /// Valid credentials, but Portico has no user for them (not yet added to an account).
    NotAuthorized(String),
    /// The check itself failed (keys or database unavailable); the client may retry.
    Unavailable(String),
}

/// Whether a CONNECT password is an access token (three dot-separated parts, like any JWT) rather
/// than a device secret; only then is the username free text.
pub fn is_access_token(password: &str) -> bool {
    password.split('.').count() == 3
}

/// A connected client: who it is, and until when its credentials hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub principal: Principal,
    /// Unix seconds at which the session must end (the access token's `exp`); none for devices.
    pub expires_at: Option<u64>,
}

pub struct Gate {
    ctx: Arc<Context>,
    verifier: Arc<Verifier>,
    policy: Policy,
    /// Device-secret checks (PBKDF2, milliseconds of CPU each) running at once: fewer than the
    /// cores, so a flood of CONNECTs cannot take every core from the HTTP API and the broker.
    secret_checks: Semaphore,
}

impl Gate {
    pub fn new(ctx: Arc<Context>, verifier: Arc<Verifier>, policy: Policy) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Gate {
            ctx,
            verifier,
            policy,
            secret_checks: Semaphore::new(cores.saturating_sub(1).max(1)),
        }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Decides a CONNECT. A password that looks like a JWT is an access token (the username is
    /// free text); anything else is a device secret for the instrument named by the username.
    pub async fn connect(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Admitted, Refusal> {
        let password = password
            .and_then(|p| std::str::from_utf8(p).ok())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Refusal::BadCredentials("a password is required".into()))?;
        if is_access_token(password) {
            self.connect_user(password).await
        } else {
            let serial = username.filter(|u| !u.is_empty()).ok_or_else(|| {
                Refusal::BadCredentials("instruments connect with their serial as username".into())
            })?;
            self.connect_instrument(serial, password).await
        }
    }

    async fn connect_user(&self, token: &str) -> Result<Admitted, Refusal> {
        let (claims, fresh) = self.verifier.verify_seen(token).await.map_err(|e| {
            if e.is_unavailable() {
                Refusal::Unavailable(e.to_string())
            } else if e.is_insufficient_scope() {
                Refusal::NotAuthorized(e.to_string())
            } else {
                Refusal::BadCredentials(e.to_string())
            }
        })?;
        let identity = Identity {
            sub: claims.sub.clone(),
            groups: claims.groups.clone(),
            email: claims.email.clone(),
            sign_in: fresh.then(|| claims.issued()),
        };
        let caller = identify(&self.ctx, &identity)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let user = caller.user.filter(|u| !u.roles.is_empty()).ok_or_else(|| {
            Refusal::NotAuthorized(format!("`{}` is not a member of any account", claims.sub))
        })?;
        Ok(Admitted {
            principal: Principal::User {
                user_id: user.id,
                sub: user.sub,
                account_id: user.account_id,
                roles: user.roles,
            },
            expires_at: Some(claims.exp),
        })
    }

    async fn connect_instrument(&self, serial: &str, secret: &str) -> Result<Admitted, Refusal> {
        let unavailable = |e: portico_core::Error| Refusal::Unavailable(e.to_string());
        let bad = || Refusal::BadCredentials("unknown serial or wrong device secret".into());
        let stored =
            self.ctx.instruments.instrument_secret_hash(serial).await.map_err(unavailable)?;
        let known = stored.is_some();
        // An unknown serial is checked against a hash too, so both refusals take the same time.
        let stored =
            stored.unwrap_or_else(|| portico_auth::device_secret::unknown_serial_hash().to_owned());
        let secret = secret.to_string();
        let _slot =
            self.secret_checks.acquire().await.map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let matches = tokio::task::spawn_blocking(move || {
            portico_auth::device_secret::verify(&secret, &stored)
        })
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if !(matches && known) {
            return Err(bad());
        }
        let instrument =
            self.ctx.instruments.instrument(serial).await.map_err(unavailable)?.ok_or_else(bad)?;
        Ok(Admitted {
            principal: Principal::Instrument {
                serial: instrument.serial,
                account_id: instrument.account_id,
            },
            expires_at: None,
        })
    }

    /// Whose `client_id` is, seen from `principal` (see `claim_client_id`).
    pub async fn claim_client_id(
        &self,
        principal: &Principal,
        client_id: &str,
    ) -> Result<ClientIdClaim, Refusal> {
        let own_serial =
            matches!(principal, Principal::Instrument { serial, .. } if serial == client_id);
        let is_serial = !own_serial
            && self
                .ctx
                .instruments
                .instrument(client_id)
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?
                .is_some();
        Ok(claim_client_id(principal, client_id, is_serial || own_serial))
    }

    /// Whether `principal` may publish to (or subscribe to) `topic`.
    pub async fn allows(&self, principal: &Principal, action: Action, topic: &str) -> bool {
        // `${account_serial}` grants need to know which serials belong to the caller's account.
        let mut own_serials = HashSet::new();
        if let Some(account_id) = principal.account_id() {
            for candidate in self.policy.account_serial_candidates(topic) {
                if candidate.contains(['+', '#']) || candidate.is_empty() {
                    continue;
                }
                match self.ctx.instruments.instrument(candidate).await {
                    Ok(Some(instrument)) if instrument.account_id == account_id => {
                        own_serials.insert(candidate.to_string());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "instrument lookup failed; denying");
                        return false;
                    }
                }
            }
        }
        self.policy.allows(principal, action, topic, &|serial| own_serials.contains(serial))
    }
}
