//! The `Outbox` port on SQLite: claims with a lease, so a sender that dies mid-send leaves the
//! e-mail due again.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{EmailStatus, OutboundEmail, OutboxEntry};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Outbox, Result};
use rusqlite::{Row, params};
use time::OffsetDateTime;

use crate::SqliteStore;
use crate::rows::{Decoded, corrupt, now_ms, timestamp, values};
use crate::store::Order;

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, e: &OutboundEmail) -> Result<()> {
        let sql = "INSERT INTO outbox (id, recipient, subject, body_text, body_html, category)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO NOTHING";
        let (id, to, subject) = (e.id.clone(), e.to.clone(), e.subject.clone());
        let values = values![id, to, subject, e.text.clone(), e.html.clone(), e.category.clone()];
        self.db.execute(sql, values, "queueing e-mail").await?;
        Ok(())
    }

    async fn claim_due(&self, limit: u32, lease: Duration) -> Result<Vec<(OutboundEmail, u32)>> {
        self.db
            .transaction("outbox claim", move |tx| {
                let now = now_ms();
                let due: Vec<(OutboundEmail, i64)> = tx
                    .prepare_cached(
                        "SELECT id, recipient, subject, body_text, body_html, category, attempts FROM outbox
                         WHERE (status = 'pending' AND next_attempt_at <= ?1)
                            OR (status = 'sending' AND lease_until <= ?1)
                         ORDER BY seq LIMIT ?2",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![now, limit], |r| {
                            Ok((
                                OutboundEmail {
                                    id: r.get(0)?,
                                    to: r.get(1)?,
                                    subject: r.get(2)?,
                                    text: r.get(3)?,
                                    html: r.get(4)?,
                                    category: r.get(5)?,
                                },
                                r.get(6)?,
                            ))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .context("reading due e-mails")?;
                let lease_until = now + lease.as_millis() as i64;
                for (email, _) in &due {
                    tx.execute(
                        "UPDATE outbox SET status = 'sending', lease_until = ?2, attempts = attempts + 1 WHERE id = ?1",
                        params![email.id, lease_until],
                    )
                    .context("claiming e-mail")?;
                }
                Ok(due
                    .into_iter()
                    .map(|(email, attempts)| (email, u32::try_from(attempts + 1).unwrap_or(u32::MAX)))
                    .collect())
            })
            .await
    }

    async fn mark_sent(&self, id: &str, provider_message_id: Option<&str>) -> Result<()> {
        let sql = "UPDATE outbox SET status = 'sent', provider_message_id = ?2, last_error = NULL,
                   sent_at = ?3 WHERE id = ?1";
        let provider = provider_message_id.map(str::to_string);
        let values = values![id.to_string(), provider, timestamp(OffsetDateTime::now_utc())?];
        self.db.execute(sql, values, "recording sent e-mail").await?;
        Ok(())
    }

    async fn retry_later(&self, id: &str, after: Duration, error: &str) -> Result<()> {
        let sql = "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, last_error = ?3
                   WHERE id = ?1";
        let due = now_ms() + after.as_millis() as i64;
        let values = values![id.to_string(), due, error.to_string()];
        self.db.execute(sql, values, "rescheduling e-mail").await?;
        Ok(())
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<()> {
        let sql = "UPDATE outbox SET status = 'failed', last_error = ?2 WHERE id = ?1";
        let values = values![id.to_string(), error.to_string()];
        self.db.execute(sql, values, "recording failed e-mail").await?;
        Ok(())
    }

    async fn list_outbox(
        &self,
        status: Option<EmailStatus>,
        page: &PageRequest,
    ) -> Result<Page<OutboxEntry>> {
        let select = "SELECT seq, id, recipient, subject, category, status, attempts, last_error,
                             provider_message_id, created_at, sent_at
                      FROM outbox WHERE (?2 IS NULL OR status = ?2)";
        let status = status.map(|s| s.as_str());
        self.listing(select, &[&status], entry_row, page, Order::NewestFirst, "listing outbox")
    }
}

fn entry_row(r: &Row<'_>) -> rusqlite::Result<Decoded<OutboxEntry>> {
    let seq: i64 = r.get(0)?;
    let status: String = r.get(5)?;
    let attempts: i64 = r.get(6)?;
    let entry = match EmailStatus::parse(&status) {
        Some(status) => Ok(OutboxEntry {
            id: r.get(1)?,
            to: r.get(2)?,
            subject: r.get(3)?,
            category: r.get(4)?,
            status,
            attempts: u32::try_from(attempts).unwrap_or(0),
            last_error: r.get(7)?,
            provider_message_id: r.get(8)?,
            created_at: r.get(9)?,
            sent_at: r.get(10)?,
        }),
        None => Err(corrupt(format!("unknown e-mail status {status:?}"))),
    };
    Ok((seq, entry))
}
