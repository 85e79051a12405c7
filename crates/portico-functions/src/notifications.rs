//! A user's notifications: delivered (stored, then published on the owner's topic), listed newest
//! first, marked read by their owner only. Every notifier delivers through `deliver`.

use portico_core::domain::{Caller, Notification};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};
use time::OffsetDateTime;

use crate::Context;

/// The one namespace of notification ids (see `notification_id`).
const NOTIFICATION_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5f1c_2a7e_8b43_4c0d_9e61_0d2b_7a31_c4e9);

/// The id of the notification that tells `user_id` about `what` (a notifier's own key for the
/// thing announced, e.g. `instrument_alert\nSN-1\n<event id>`): derived, so a notifier that runs
/// again for the same thing (a redelivered event, a retried worker) makes the same notification.
pub fn notification_id(what: &str, user_id: &str) -> String {
    uuid::Uuid::new_v5(&NOTIFICATION_NAMESPACE, format!("{what}\n{user_id}").as_bytes()).to_string()
}

/// The MQTT topic a user's notifications are published on.
fn topic(user_id: &str) -> String {
    format!("users/{user_id}/notifications")
}

/// Stores `notifications`, then publishes the ones that are new (QoS 1) on their owners' topics:
/// a repeat stores and sends nothing. A failed publish is logged, not an error: the stored
/// notification is what counts, and its owner finds it in `GET /v1/notifications`. Answers the
/// ids of the notifications that were new.
pub async fn deliver(ctx: &Context, notifications: &[Notification]) -> Result<Vec<String>> {
    let new = ctx.notifications.insert_notifications(notifications).await?;
    for notification in notifications.iter().filter(|n| new.contains(&n.id)) {
        let topic = topic(&notification.user_id);
        let payload = serde_json::to_vec(notification)
            .map_err(|e| anyhow::anyhow!("encoding notification: {e}"))?;
        if let Err(e) = ctx.publisher.publish(&topic, payload, 1).await {
            tracing::warn!(topic, error = %e, "notification stored but not published");
        }
    }
    Ok(new)
}

pub async fn list(ctx: &Context, caller: &Caller, page: PageRequest) -> Result<Page<Notification>> {
    let owner = policy::own_notifications(caller)?;
    ctx.notifications.list_notifications(owner, &page).await
}

pub async fn mark_read(ctx: &Context, caller: &Caller, id: &str) -> Result<Notification> {
    // Another user's notification is simply not among the caller's: 404.
    let owner = policy::own_notifications(caller)
        .map_err(|_| Error::NotFound(format!("notification `{id}` not found")))?;
    ctx.notifications
        .mark_notification_read(owner, id, OffsetDateTime::now_utc())
        .await?
        .ok_or_else(|| Error::NotFound(format!("notification `{id}` not found")))
}
