//! The `Queue` port on SQLite, with SQS semantics: a received message is hidden for its visibility
//! timeout and comes back unless deleted with its receipt; every receive counts, and a message
//! already received `max_receives` times moves to `<queue>-dead` instead of being delivered.
//! Sending and receiving commit before they return, so a crash loses nothing (delivery is
//! at-least-once: a message whose worker dies is delivered again).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use portico_core::ports::{Attributes, QueueMessage, QueueStats, Receive};
use portico_core::{Queue, Result};
use rusqlite::params;
use tokio::sync::Notify;

use crate::Database;
use crate::rows::{now_ms, values};

/// Suffix of a queue's dead-letter queue.
pub const DEAD_LETTER_SUFFIX: &str = "-dead";

pub struct SqliteQueue {
    db: Database,
    max_receives: u32,
    /// Wakes long-polling receivers in this process when a message is sent; receivers also
    /// re-check on a short interval, for messages sent by other processes.
    sent: Notify,
}

impl SqliteQueue {
    pub fn new(db: Database, max_receives: u32) -> Self {
        SqliteQueue { db, max_receives: max_receives.max(1), sent: Notify::new() }
    }

    async fn try_receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>> {
        let queue = queue.to_string();
        let max_receives = self.max_receives;
        let dead_letters = !queue.ends_with(DEAD_LETTER_SUFFIX);
        self.db
            .transaction("receive", move |tx| {
                let now = now_ms();
                let candidates: Vec<(i64, String, String, String, i64, i64)> = tx
                    .prepare_cached(
                        "SELECT seq, id, body, attributes, sent_at, receive_count FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![queue, now, max], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .context("reading queue")?;
                let mut out = Vec::new();
                for (seq, id, body, attributes, sent_at, count) in candidates {
                    if dead_letters && count >= i64::from(max_receives) {
                        tx.execute(
                            "UPDATE queue_messages SET queue = ?2, visible_at = ?3, receive_count = 0, receipt = NULL
                             WHERE seq = ?1",
                            params![seq, format!("{queue}{DEAD_LETTER_SUFFIX}"), now],
                        )
                        .context("dead-lettering")?;
                        tracing::warn!(queue, message_id = id, receives = count, "message moved to the dead-letter queue");
                        continue;
                    }
                    let receipt = uuid::Uuid::new_v4().simple().to_string();
                    let visible_at = now + visibility.as_millis() as i64;
                    tx.execute(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3
                         WHERE seq = ?1",
                        params![seq, visible_at, receipt],
                    )
                    .context("marking received")?;
                    out.push(QueueMessage {
                        id,
                        receipt,
                        body,
                        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                        receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                        sent_at_ms: sent_at,
                    });
                }
                Ok(out)
            })
            .await
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: &str, body: &str, attributes: &Attributes) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        let (queue, body) = (queue.to_string(), body.to_string());
        let attributes = serde_json::to_string(attributes).context("encoding attributes")?;
        let sql = "INSERT INTO queue_messages (id, queue, body, attributes, sent_at, visible_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?5)";
        let values = values![id.clone(), queue, body, attributes, now_ms()];
        self.db.execute(sql, values, "sending message").await?;
        self.sent.notify_waiters();
        Ok(id)
    }

    async fn receive(&self, queue: &str, how: Receive) -> Result<Vec<QueueMessage>> {
        let deadline = tokio::time::Instant::now() + how.wait;
        loop {
            let notified = self.sent.notified();
            let messages = self.try_receive(queue, how.max.clamp(1, 10), how.visibility).await?;
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            let nap = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<bool> {
        let sql = "DELETE FROM queue_messages WHERE receipt = ?2 AND queue = ?1";
        let values = values![queue.to_string(), receipt.to_string()];
        Ok(self.db.execute(sql, values, "deleting message").await? > 0)
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, lease: Duration) -> Result<bool> {
        let sql = "UPDATE queue_messages SET visible_at = ?3 WHERE receipt = ?2 AND queue = ?1";
        let visible_at = now_ms() + lease.as_millis() as i64;
        let values = values![queue.to_string(), receipt.to_string(), visible_at];
        Ok(self.db.execute(sql, values, "changing visibility").await? > 0)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let queue = queue.to_string();
        self.db
            .read(move |conn| {
                let now = now_ms();
                let (visible, in_flight, oldest): (i64, i64, Option<i64>) = conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(visible_at <= ?2), 0), COALESCE(SUM(visible_at > ?2), 0), MIN(sent_at)
                         FROM queue_messages WHERE queue = ?1",
                    )
                    .and_then(|mut s| s.query_row(params![queue, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
                    .context("queue stats")?;
                let dead: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1")
                    .and_then(|mut s| s.query_row(params![format!("{queue}{DEAD_LETTER_SUFFIX}")], |r| r.get(0)))
                    .context("dead-letter stats")?;
                Ok(QueueStats {
                    visible: visible.max(0) as u64,
                    in_flight: in_flight.max(0) as u64,
                    oldest_age_ms: oldest.map_or(0, |t| (now - t).max(0) as u64),
                    dead: dead.max(0) as u64,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(dir: &tempfile::TempDir) -> SqliteQueue {
        SqliteQueue::new(Database::open(&dir.path().join("q.db")).expect("db"), 3)
    }

    #[tokio::test]
    async fn a_stale_receipt_deletes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let q = queue(&dir);
        q.send("jobs", "hello", &Attributes::new()).await.expect("sent");
        let short = Duration::from_millis(50);
        let first = q
            .receive("jobs", Receive { max: 1, visibility: short, wait: Duration::ZERO })
            .await
            .expect("first");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let second = q
            .receive("jobs", Receive { max: 1, visibility: short, wait: Duration::ZERO })
            .await
            .expect("second");
        assert_eq!(second[0].receive_count, 2);
        assert!(!q.delete("jobs", &first[0].receipt).await.expect("ok"));
        assert!(q.delete("jobs", &second[0].receipt).await.expect("deleted"));
    }

    #[tokio::test]
    async fn long_polling_wakes_on_send_and_messages_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let q = std::sync::Arc::new(queue(&dir));
        let receiver = {
            let q = q.clone();
            tokio::spawn(async move {
                q.receive(
                    "jobs",
                    Receive {
                        max: 1,
                        visibility: Duration::from_secs(30),
                        wait: Duration::from_secs(5),
                    },
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.send("jobs", "wake", &Attributes::new()).await.expect("sent");
        let got = receiver.await.expect("task").expect("received");
        assert_eq!(got[0].body, "wake");
        q.send("jobs", "kept", &Attributes::new()).await.expect("sent");
        drop(q);
        let reopened = queue(&dir);
        let got = reopened
            .receive(
                "jobs",
                Receive { max: 10, visibility: Duration::from_secs(30), wait: Duration::ZERO },
            )
            .await
            .expect("ok");
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["kept"]);
        assert!(
            reopened.change_visibility("jobs", &got[0].receipt, Duration::ZERO).await.expect("ok")
        );
        assert_eq!(
            reopened
                .receive(
                    "jobs",
                    Receive { max: 10, visibility: Duration::from_secs(30), wait: Duration::ZERO }
                )
                .await
                .expect("ok")
                .len(),
            1
        );
    }
}
