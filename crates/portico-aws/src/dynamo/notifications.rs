//! The `Notifications` port on the table: one partition per user, one item per notification.

use async_trait::async_trait;
use portico_core::domain::Notification;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Notifications, Result};
use time::OffsetDateTime;

use super::keys::{self, GSI1};
use super::{DynamoStore, item};

#[async_trait]
impl Notifications for DynamoStore {
    async fn insert_notifications(&self, notifications: &[Notification]) -> Result<Vec<String>> {
        let mut new = Vec::new();
        for note in notifications {
            let partition = keys::notifications(&note.user_id);
            let sort = keys::order(note.created_at, &note.id);
            let item = item(partition.clone(), &note.id, note, &[(GSI1, partition, sort)])?;
            match self.create(item, String::new()).await {
                Ok(()) => new.push(note.id.clone()),
                Err(Error::Conflict(_)) => {} // a redelivered event: keep the first
                Err(e) => return Err(e),
            }
        }
        Ok(new)
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        self.page(GSI1, keys::notifications(user_id), true, page).await
    }

    async fn mark_notification_read(
        &self,
        user_id: &str,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<Option<Notification>> {
        self.update(keys::notifications(user_id), id, |note: &mut Notification| {
            if note.read_at.is_some() {
                return false;
            }
            note.read_at = Some(at);
            true
        })
        .await
    }
}
