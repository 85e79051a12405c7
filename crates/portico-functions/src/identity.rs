//! From a verified token to a `Caller`: platform staff are provisioned on their first call and their
//! platform roles follow their identity-provider groups; everyone else is whoever Portico's records
//! say they are.

use portico_core::domain::{Caller, Role, SignIn, User};
use portico_core::{Error, Result};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::Context;

/// What a verified token proved about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub groups: Vec<String>,
    pub email: Option<String>,
    /// Set when this is the token's first use here: its issue time (`iat`, else `exp`, in
    /// seconds), which with the subject names the sign-in it stands for.
    pub sign_in: Option<u64>,
}

/// Resolves the caller behind `identity`, provisioning or updating platform staff.
pub async fn identify(ctx: &Context, identity: &Identity) -> Result<Caller> {
    let platform: Vec<Role> =
        [(Role::Admin, &ctx.settings.admin_group), (Role::Support, &ctx.settings.support_group)]
            .into_iter()
            .filter(|(_, group)| identity.groups.iter().any(|g| g == *group))
            .map(|(role, _)| role)
            .collect();

    let user = match ctx.users.user_by_sub(&identity.sub).await? {
        Some(user) => Some(sync_platform_roles(ctx, user, &platform).await?),
        None if platform.is_empty() => None,
        None => Some(provision(ctx, identity, platform).await?),
    };
    if let (Some(issued), Some(user)) = (identity.sign_in, &user) {
        record_sign_in(ctx, user, issued).await;
    }
    Ok(Caller { sub: identity.sub.clone(), user })
}

/// The id namespace of sign-ins (a UUID v5 of the subject and the token's issue time).
const SIGN_IN_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5d2c_7a0e_91b4_4f0c_8a63_2e1f_04b7_c915);

/// Records the sign-in a token stands for, once however many hosts see the token first. A
/// failure is logged and the call goes on: the sign-in is a fact for reports, not a gate.
async fn record_sign_in(ctx: &Context, user: &User, issued: u64) {
    let key = format!("{}\n{issued}", portico_core::domain::sub_key(&user.sub));
    let at = i64::try_from(issued)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let sign_in = SignIn {
        id: uuid::Uuid::new_v5(&SIGN_IN_NAMESPACE, key.as_bytes()).to_string(),
        user_id: user.id.clone(),
        account_id: user.account_id.clone(),
        signed_in_at: at,
    };
    if let Err(e) = ctx.users.record_sign_in(&sign_in).await {
        tracing::warn!(error = %e, user_id = %user.id, "could not record a sign-in");
    }
}

async fn provision(ctx: &Context, identity: &Identity, roles: Vec<Role>) -> Result<User> {
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        sub: identity.sub.clone(),
        email: identity.email.clone().unwrap_or_else(|| identity.sub.clone()),
        display_name: identity.sub.clone(),
        account_id: None,
        roles,
        created_at: OffsetDateTime::now_utc(),
    };
    match ctx.users.insert_user(&user).await {
        Ok(()) => {
            tracing::info!(user_id = %user.id, sub = %user.sub, roles = ?user.roles, "provisioned platform user");
            Ok(user)
        }
        // Two first calls raced; the other one provisioned the record.
        Err(Error::Conflict(_)) => ctx
            .users
            .user_by_sub(&identity.sub)
            .await?
            .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("user vanished after conflict"))),
        Err(e) => Err(e),
    }
}

/// Platform roles are exactly what the groups say today: granted when a group is added, dropped
/// when it is removed. Account roles are untouched.
async fn sync_platform_roles(ctx: &Context, mut user: User, platform: &[Role]) -> Result<User> {
    let mut roles: Vec<Role> = user
        .roles
        .iter()
        .copied()
        .filter(|r| !r.is_platform())
        .chain(platform.iter().copied())
        .collect();
    roles.sort();
    roles.dedup();
    let mut current = user.roles.clone();
    current.sort();
    if roles != current {
        ctx.users.set_user_roles(&user.id, &roles).await?;
        tracing::info!(user_id = %user.id, from = ?current, to = ?roles, "platform roles changed with groups");
        user.roles = roles;
    }
    Ok(user)
}

/// `GET /v1/me`: who the caller is to Portico.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Me {
    /// Portico's user id; absent until the caller is added to an account or is platform staff.
    pub id: Option<String>,
    pub sub: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub account_id: Option<String>,
    pub roles: Vec<Role>,
}

pub fn me(caller: &Caller) -> Me {
    let user = caller.user.as_ref();
    Me {
        id: user.map(|u| u.id.clone()),
        sub: caller.sub.clone(),
        email: user.map(|u| u.email.clone()),
        display_name: user.map(|u| u.display_name.clone()),
        account_id: caller.account_id().map(str::to_owned),
        roles: caller.roles().to_vec(),
    }
}
