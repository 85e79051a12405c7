//! A user's notifications: listed newest first, marked read by their owner only.

use portico_core::domain::{Caller, Notification};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};
use time::OffsetDateTime;

use crate::Context;

pub async fn list(ctx: &Context, caller: &Caller, page: PageRequest) -> Result<Page<Notification>> {
    let owner = policy::own_notifications(caller)?;
    ctx.store.list_notifications(owner, &page).await
}

pub async fn mark_read(ctx: &Context, caller: &Caller, id: &str) -> Result<Notification> {
    // Another user's notification is simply not among the caller's: 404.
    let owner = policy::own_notifications(caller)
        .map_err(|_| Error::NotFound(format!("notification `{id}` not found")))?;
    ctx.store
        .mark_notification_read(owner, id, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| Error::NotFound(format!("notification `{id}` not found")))
}
