//! A user's notifications: listed newest first, marked read by their owner only.

use portico_core::domain::{Caller, Notification};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};
use time::OffsetDateTime;

use crate::Context;

pub async fn list(ctx: &Context, caller: &Caller, page: PageRequest) -> Result<Page<Notification>> {
    policy::require_provisioned(caller)?;
    match caller.user_id() {
        Some(user_id) => ctx.store.list_notifications(user_id, &page).await,
        None => Err(Error::Forbidden("you have no notifications".into())),
    }
}

pub async fn mark_read(ctx: &Context, caller: &Caller, id: &str) -> Result<Notification> {
    policy::require_provisioned(caller)?;
    let user_id = caller
        .user_id()
        .ok_or_else(|| Error::NotFound(format!("notification `{id}` not found")))?;
    ctx.store
        .mark_notification_read(user_id, id, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| Error::NotFound(format!("notification `{id}` not found")))
}
