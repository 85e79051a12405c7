//! Accounts and their users.

use portico_core::domain::{Account, AccountKind, Caller, Role, User};
use portico_core::policy::Scope;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, FieldError, NewAccount, Result, policy};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::Context;
use crate::validate;

/// `POST /v1/accounts`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The organisation's name, 1 to 200 characters.
    pub name: String,
    /// `customer`, `distributor` or `internal`.
    pub kind: String,
    /// The account's home region; defaults to the region serving the request.
    pub region: Option<String>,
}

/// `POST /v1/accounts/{id}/users`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUser {
    /// The identity provider's subject for this person (matched case-insensitively).
    pub sub: String,
    pub email: String,
    pub display_name: String,
    /// Account roles: `account_admin`, `lab_manager`, `scientist`.
    pub roles: Vec<String>,
}

pub async fn create_account(
    ctx: &Context,
    caller: &Caller,
    input: CreateAccount,
) -> Result<Account> {
    policy::require_admin(caller)?;
    let mut errors = Vec::new();
    validate::text(&mut errors, "name", &input.name, 200);
    let kind = AccountKind::parse(&input.kind);
    if kind.is_none() {
        errors
            .push(FieldError::new("kind", "must be one of `customer`, `distributor`, `internal`"));
    }
    let region = input.region.unwrap_or_else(|| ctx.settings.region.clone());
    if region.is_empty()
        || region.len() > 32
        || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errors.push(FieldError::new("region", "must be 1 to 32 letters, digits, '-' or '_'"));
    }
    let Some(kind) = kind.filter(|_| errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };

    let account = ctx
        .accounts
        .create_account(&NewAccount {
            id: uuid::Uuid::now_v7().to_string(),
            name: input.name.trim().to_string(),
            kind,
            region,
            created_at: OffsetDateTime::now_utc(),
        })
        .await?;
    tracing::info!(account_id = %account.id, account_number = %account.account_number, "account created");
    Ok(account)
}

pub async fn get_account(ctx: &Context, caller: &Caller, id: &str) -> Result<Account> {
    policy::read_account(caller, id)?;
    ctx.accounts.account(id).await?.ok_or_else(|| policy::not_found_account(id))
}

pub async fn list_accounts(
    ctx: &Context,
    caller: &Caller,
    page: PageRequest,
) -> Result<Page<Account>> {
    match policy::list_scope(caller)? {
        Scope::All => ctx.accounts.list_accounts(None, &page).await,
        Scope::Account(own) => ctx.accounts.list_accounts(Some(&own), &page).await,
        Scope::Nothing => Ok(Page::empty()),
    }
}

pub async fn add_user(
    ctx: &Context,
    caller: &Caller,
    account_id: &str,
    input: AddUser,
) -> Result<User> {
    let mut errors = Vec::new();
    validate::token_like(&mut errors, "sub", &input.sub, 255);
    validate::email(&mut errors, "email", &input.email);
    validate::text(&mut errors, "display_name", &input.display_name, 200);
    let mut roles = Vec::new();
    if input.roles.is_empty() {
        errors.push(FieldError::new("roles", "must name at least one role"));
    }
    for (i, name) in input.roles.iter().enumerate() {
        match Role::parse(name) {
            Some(role) if roles.contains(&role) => {
                errors.push(FieldError::new(format!("roles[{i}]"), "is listed twice"))
            }
            Some(role) => roles.push(role),
            None => errors.push(FieldError::new(
                format!("roles[{i}]"),
                "must be one of `account_admin`, `lab_manager`, `scientist`",
            )),
        }
    }
    // Access first, so a caller who may not add users learns nothing from validation messages.
    policy::add_account_user(caller, account_id, &roles)?;
    for (i, role) in roles.iter().enumerate() {
        if role.is_platform() {
            errors.push(FieldError::new(
                format!("roles[{i}]"),
                format!(
                    "`{}` is a platform role, granted through the identity provider's group",
                    role.as_str()
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let Some(account) = ctx.accounts.account(account_id).await? else {
        return Err(policy::not_found_account(account_id));
    };
    roles.sort();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        sub: input.sub,
        email: input.email.trim().to_string(),
        display_name: input.display_name.trim().to_string(),
        account_id: Some(account_id.to_string()),
        roles,
        created_at: OffsetDateTime::now_utc(),
    };
    ctx.users.insert_user(&user).await?;
    tracing::info!(user_id = %user.id, account_id, roles = ?user.roles, "user added to account");
    // The user exists either way; a welcome that cannot be queued is logged, not an error.
    let welcome = crate::email::welcome(&user, &account);
    let queued = match welcome {
        Ok(email) => crate::email::queue(ctx, email).await,
        Err(e) => Err(e),
    };
    if let Err(e) = queued {
        tracing::warn!(user_id = %user.id, error = %e, "welcome e-mail not queued");
    }
    Ok(user)
}

pub async fn list_users(
    ctx: &Context,
    caller: &Caller,
    account_id: &str,
    page: PageRequest,
) -> Result<Page<User>> {
    policy::list_account_users(caller, account_id)?;
    if ctx.accounts.account(account_id).await?.is_none() {
        return Err(policy::not_found_account(account_id));
    }
    ctx.users.list_users(account_id, &page).await
}
