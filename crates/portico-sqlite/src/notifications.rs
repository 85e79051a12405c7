//! The `Notifications` port on SQLite.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::Notification;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Notifications, Result};
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::SqliteStore;
use crate::rows::{Decoded, parse_timestamp, timestamp};
use crate::store::Order;

const COLUMNS: &str = "seq, id, user_id, kind, title, body, data, created_at, read_at";

#[async_trait]
impl Notifications for SqliteStore {
    async fn insert_notifications(&self, notifications: &[Notification]) -> Result<Vec<String>> {
        let notifications = notifications.to_vec();
        self.db
            .transaction("notifications", move |tx| {
                let mut new = Vec::new();
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO notifications (id, user_id, kind, title, body, data, created_at, read_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
                             ON CONFLICT(id) DO NOTHING",
                        )
                        .context("preparing notification insert")?;
                    for n in &notifications {
                        let inserted = insert
                            .execute(params![
                                n.id,
                                n.user_id,
                                n.kind,
                                n.title,
                                n.body,
                                n.data.to_string(),
                                timestamp(n.created_at)?
                            ])
                            .context("inserting notification")?;
                        if inserted == 1 {
                            new.push(n.id.clone());
                        }
                    }
                }
                Ok(new)
            })
            .await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        let select = format!("SELECT {COLUMNS} FROM notifications WHERE user_id = ?2");
        self.listing(
            &select,
            &[&user_id],
            notification_row,
            page,
            Order::NewestFirst,
            "listing notifications",
        )
    }

    async fn mark_notification_read(
        &self,
        user_id: &str,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<Option<Notification>> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.db
            .write(move |conn| {
                let sql = format!(
                    "UPDATE notifications SET read_at = COALESCE(read_at, ?3)
                     WHERE id = ?1 AND user_id = ?2 RETURNING {COLUMNS}"
                );
                let row = conn
                    .query_row(&sql, params![id, user_id, timestamp(at)?], notification_row)
                    .optional()
                    .context("marking notification read")?;
                row.map(|(_, n)| n).transpose()
            })
            .await
    }
}

fn notification_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Notification>> {
    let seq: i64 = row.get(0)?;
    let (id, user_id, kind, title, body): (String, String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
    let (data, created, read): (String, String, Option<String>) =
        (row.get(6)?, row.get(7)?, row.get(8)?);
    let notification = (|| {
        Ok(Notification {
            id,
            user_id,
            kind,
            title,
            body,
            data: serde_json::from_str(&data)
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad notification data: {e}")))?,
            created_at: parse_timestamp(&created)?,
            read_at: read.as_deref().map(parse_timestamp).transpose()?,
        })
    })();
    Ok((seq, notification))
}
