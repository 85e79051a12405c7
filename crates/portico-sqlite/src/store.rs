//! The `Store` port on SQLite.

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::Duration;

use portico_core::domain::sub_key;
use portico_core::domain::{
    Account, AccountKind, Document, DocumentStatus, EmailStatus, Instrument, Lot, Notification,
    OutboundEmail, OutboxEntry, Product, Role, Shipment, User,
};
use portico_core::ports::{NewAccount, Page, PageRequest, SequenceRange};
use portico_core::{Error, Outbox, Result, Store};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Database;
use crate::db::is_unique_violation;
use crate::{catalogue, sequence};

/// The sequence account numbers are taken from.
const ACCOUNT_NUMBERS: &str = "account_number";

pub struct SqliteStore {
    db: Database,
    account_numbers: SequenceRange,
}

impl SqliteStore {
    /// A store whose accounts are numbered from `account_numbers`, this region's range.
    pub fn new(db: Database, account_numbers: SequenceRange) -> Self {
        SqliteStore {
            db,
            account_numbers,
        }
    }
}

const ACCOUNT_COLUMNS: &str = "seq, id, account_number, name, kind, region, created_at";
const USER_COLUMNS: &str = "seq, id, sub, email, display_name, account_id, roles, created_at";

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, new: &NewAccount) -> Result<Account> {
        let new = new.clone();
        let range = self.account_numbers;
        self.db
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .context("starting account transaction")?;
                let number = sequence::allocate(&tx, ACCOUNT_NUMBERS, range)?;
                let account = Account {
                    id: new.id,
                    account_number: number.to_string(),
                    name: new.name,
                    kind: new.kind,
                    region: new.region,
                    created_at: new.created_at,
                };
                tx.execute(
                    "INSERT INTO accounts (id, account_number, name, kind, region, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        account.id,
                        account.account_number,
                        account.name,
                        account.kind.as_str(),
                        account.region,
                        timestamp(account.created_at)?
                    ],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::Conflict(format!("account `{}` already exists", account.id))
                    } else {
                        Error::Unexpected(anyhow::Error::new(e).context("inserting account"))
                    }
                })?;
                tx.commit().context("committing account")?;
                Ok(account)
            })
            .await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let id = id.to_string();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1");
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row(params![id], account_row).optional())
                    .context("reading account")?;
                row.map(|(_, a)| a).transpose()
            })
            .await
    }

    async fn list_accounts(&self, only: Option<&str>, page: &PageRequest) -> Result<Page<Account>> {
        let only = only.map(str::to_string);
        let after = decode_cursor(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts
                     WHERE seq > ?1 AND (?2 IS NULL OR id = ?2) ORDER BY seq LIMIT ?3"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![after, only, limit + 1], account_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing accounts")?;
                paginate(rows, limit)
            })
            .await
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let u = user.clone();
        self.db
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .context("starting user transaction")?;
                tx.execute(
                    "INSERT INTO users (id, sub, sub_key, email, display_name, account_id, roles, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        u.id,
                        u.sub,
                        sub_key(&u.sub),
                        u.email,
                        u.display_name,
                        u.account_id,
                        roles_text(&u.roles),
                        timestamp(u.created_at)?
                    ],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::Conflict(format!("a user with sub `{}` already exists", u.sub))
                    } else {
                        Error::Unexpected(anyhow::Error::new(e).context("inserting user"))
                    }
                })?;
                index_roles(&tx, &u.id, u.account_id.as_deref(), &u.roles)?;
                tx.commit().context("committing user")?;
                Ok(())
            })
            .await
    }

    async fn user_by_sub(&self, sub: &str) -> Result<Option<User>> {
        let key = sub_key(sub);
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE sub_key = ?1");
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row(params![key], user_row).optional())
                    .context("reading user")?;
                row.map(|(_, u)| u).transpose()
            })
            .await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_string();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row(params![id], user_row).optional())
                    .context("reading user")?;
                row.map(|(_, u)| u).transpose()
            })
            .await
    }

    async fn set_user_roles(&self, user_id: &str, roles: &[Role]) -> Result<()> {
        let id = user_id.to_string();
        let roles = roles.to_vec();
        self.db
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .context("starting roles transaction")?;
                let account_id: Option<Option<String>> = tx
                    .query_row(
                        "UPDATE users SET roles = ?2 WHERE id = ?1 RETURNING account_id",
                        params![id, roles_text(&roles)],
                        |row| row.get(0),
                    )
                    .optional()
                    .context("updating user roles")?;
                let Some(account_id) = account_id else {
                    return Err(Error::NotFound(format!("user `{id}` not found")));
                };
                tx.execute("DELETE FROM user_roles WHERE user_id = ?1", params![id])
                    .context("clearing role index")?;
                index_roles(&tx, &id, account_id.as_deref(), &roles)?;
                tx.commit().context("committing roles")?;
                Ok(())
            })
            .await
    }

    async fn list_users(&self, account_id: &str, page: &PageRequest) -> Result<Page<User>> {
        let account_id = account_id.to_string();
        let after = decode_cursor(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users
                     WHERE account_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![account_id, after, limit + 1], user_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing users")?;
                paginate(rows, limit)
            })
            .await
    }

    async fn users_with_role(&self, account_id: Option<&str>, role: Role) -> Result<Vec<User>> {
        let account_id = account_id.map(str::to_string);
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {} FROM user_roles r JOIN users u ON u.id = r.user_id
                     WHERE r.role = ?1 AND (?2 IS NULL OR r.account_id = ?2) ORDER BY u.seq",
                    prefixed(USER_COLUMNS, "u.")
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![role.as_str(), account_id], user_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing users by role")?;
                rows.into_iter().map(|(_, u)| u).collect()
            })
            .await
    }

    async fn create_instrument(&self, instrument: &Instrument, secret_hash: &str) -> Result<()> {
        let i = instrument.clone();
        let hash = secret_hash.to_string();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO instruments (serial, model, name, account_id, secret_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![i.serial, i.model, i.name, i.account_id, hash, timestamp(i.created_at)?],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::Conflict(format!("instrument `{}` is already registered", i.serial))
                    } else {
                        Error::Unexpected(anyhow::Error::new(e).context("inserting instrument"))
                    }
                })?;
                Ok(())
            })
            .await
    }

    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>> {
        let serial = serial.to_string();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {INSTRUMENT_COLUMNS} FROM instruments WHERE serial = ?1");
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row(params![serial], instrument_row).optional())
                    .context("reading instrument")?;
                row.map(|(_, i)| i).transpose()
            })
            .await
    }

    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>> {
        let serial = serial.to_string();
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT secret_hash FROM instruments WHERE serial = ?1")
                    .and_then(|mut s| s.query_row(params![serial], |row| row.get(0)).optional())
                    .context("reading instrument secret")?)
            })
            .await
    }

    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>> {
        let account_id = account_id.map(str::to_string);
        let after = decode_cursor(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {INSTRUMENT_COLUMNS} FROM instruments
                     WHERE seq > ?1 AND (?2 IS NULL OR account_id = ?2) ORDER BY seq LIMIT ?3"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![after, account_id, limit + 1], instrument_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing instruments")?;
                paginate(rows, limit)
            })
            .await
    }

    async fn insert_notifications(&self, notifications: &[Notification]) -> Result<Vec<String>> {
        let notifications = notifications.to_vec();
        self.db
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .context("starting notification transaction")?;
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
                tx.commit().context("committing notifications")?;
                Ok(new)
            })
            .await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        let user_id = user_id.to_string();
        let before = decode_cursor_newest_first(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                     WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![user_id, before, limit + 1], notification_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing notifications")?;
                paginate(rows, limit)
            })
            .await
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
                     WHERE id = ?1 AND user_id = ?2 RETURNING {NOTIFICATION_COLUMNS}"
                );
                let row = conn
                    .query_row(&sql, params![id, user_id, timestamp(at)?], notification_row)
                    .optional()
                    .context("marking notification read")?;
                row.map(|(_, n)| n).transpose()
            })
            .await
    }

    async fn create_document(&self, document: &Document) -> Result<()> {
        let d = document.clone();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO documents (id, account_id, uploaded_by, filename, content_type, size, status,
                                            failure_reason, metadata, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        d.id,
                        d.account_id,
                        d.uploaded_by,
                        d.filename,
                        d.content_type,
                        d.size as i64,
                        d.status.as_str(),
                        d.failure_reason,
                        d.metadata.as_ref().map(|m| m.to_string()),
                        timestamp(d.created_at)?,
                        timestamp(d.updated_at)?
                    ],
                )
                .map_err(|e| {
                    crate::catalogue::conflict_or(
                        e,
                        format!("document `{}` already exists", d.id),
                        "inserting document",
                    )
                })?;
                Ok(())
            })
            .await
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        let id = id.to_string();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?1");
                let row = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row(params![id], document_row).optional())
                    .context("reading document")?;
                row.map(|(_, d)| d).transpose()
            })
            .await
    }

    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>> {
        let account_id = account_id.to_string();
        let before = decode_cursor_newest_first(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM documents
                     WHERE account_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                );
                let rows = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params![account_id, before, limit + 1], document_row)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing documents")?;
                paginate(rows, limit)
            })
            .await
    }

    async fn transition_document(
        &self,
        id: &str,
        from: &[DocumentStatus],
        to: DocumentStatus,
        failure_reason: Option<&str>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<bool> {
        let id = id.to_string();
        let from: Vec<&'static str> = from.iter().map(|s| s.as_str()).collect();
        let reason = failure_reason.map(str::to_string);
        let metadata = metadata.map(|m| m.to_string());
        self.db
            .write(move |conn| {
                let current: Option<String> = conn
                    .query_row("SELECT status FROM documents WHERE id = ?1", params![id], |r| r.get(0))
                    .optional()
                    .context("reading document status")?;
                let Some(current) = current else {
                    return Ok(false);
                };
                if !from.contains(&current.as_str()) {
                    return Ok(false);
                }
                // The single writer connection makes read-then-update atomic here.
                let n = conn
                    .execute(
                        "UPDATE documents SET status = ?2, failure_reason = COALESCE(?3, failure_reason),
                                metadata = COALESCE(?4, metadata), updated_at = ?5
                         WHERE id = ?1 AND status = ?6",
                        params![id, to.as_str(), reason, metadata, timestamp(OffsetDateTime::now_utc())?, current],
                    )
                    .context("updating document status")?;
                Ok(n > 0)
            })
            .await
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let p = product.clone();
        self.db
            .write(move |conn| catalogue::create_product(conn, &p))
            .await
    }

    async fn product(&self, sku: &str) -> Result<Option<Product>> {
        let sku = sku.to_string();
        self.db
            .read(move |conn| catalogue::product(conn, &sku))
            .await
    }

    async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>> {
        let page = page.clone();
        self.db
            .read(move |conn| catalogue::list_products(conn, &page))
            .await
    }

    async fn create_lot(&self, lot: &Lot) -> Result<()> {
        let lot = lot.clone();
        self.db
            .write(move |conn| catalogue::create_lot(conn, &lot))
            .await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        let lot_number = lot_number.to_string();
        self.db
            .read(move |conn| catalogue::lot(conn, &lot_number))
            .await
    }

    async fn create_shipment(&self, shipment: &Shipment) -> Result<()> {
        let s = shipment.clone();
        self.db
            .write(move |conn| catalogue::create_shipment(conn, &s))
            .await
    }

    async fn list_shipments(
        &self,
        lot_number: Option<&str>,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Shipment>> {
        let (lot_number, account_id, page) = (
            lot_number.map(str::to_string),
            account_id.map(str::to_string),
            page.clone(),
        );
        self.db
            .read(move |conn| {
                catalogue::list_shipments(conn, lot_number.as_deref(), account_id.as_deref(), &page)
            })
            .await
    }
}

const DOCUMENT_COLUMNS: &str = "seq, id, account_id, uploaded_by, filename, content_type, size, status, failure_reason, metadata, created_at, updated_at";

fn document_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Document>> {
    let seq: i64 = row.get(0)?;
    let (id, account_id, uploaded_by, filename, content_type): (
        String,
        String,
        String,
        String,
        String,
    ) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    let size: i64 = row.get(6)?;
    let (status, failure_reason, metadata): (String, Option<String>, Option<String>) =
        (row.get(7)?, row.get(8)?, row.get(9)?);
    let (created, updated): (String, String) = (row.get(10)?, row.get(11)?);
    let document = (|| {
        Ok(Document {
            id,
            account_id,
            uploaded_by,
            filename,
            content_type,
            size: size.max(0) as u64,
            status: DocumentStatus::parse(&status).ok_or_else(|| {
                Error::Unexpected(anyhow::anyhow!("unknown document status {status:?}"))
            })?,
            failure_reason,
            metadata: metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad document metadata: {e}")))?,
            created_at: parse_timestamp(&created)?,
            updated_at: parse_timestamp(&updated)?,
        })
    })();
    Ok((seq, document))
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, email: &OutboundEmail) -> Result<()> {
        let e = email.clone();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO outbox (id, recipient, subject, body_text, body_html, category)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO NOTHING",
                    params![e.id, e.to, e.subject, e.text, e.html, e.category],
                )
                .context("queueing e-mail")?;
                Ok(())
            })
            .await
    }

    async fn claim_due(&self, limit: u32, lease: Duration) -> Result<Vec<(OutboundEmail, u32)>> {
        self.db
            .write(move |conn| {
                let now = now_ms();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .context("starting outbox claim")?;
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
                tx.commit().context("committing outbox claim")?;
                Ok(due
                    .into_iter()
                    .map(|(email, attempts)| (email, u32::try_from(attempts + 1).unwrap_or(u32::MAX)))
                    .collect())
            })
            .await
    }

    async fn mark_sent(&self, id: &str, provider_message_id: Option<&str>) -> Result<()> {
        let (id, provider) = (id.to_string(), provider_message_id.map(str::to_string));
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET status = 'sent', provider_message_id = ?2, last_error = NULL, sent_at = ?3
                     WHERE id = ?1",
                    params![id, provider, timestamp(OffsetDateTime::now_utc())?],
                )
                .context("recording sent e-mail")?;
                Ok(())
            })
            .await
    }

    async fn retry_later(&self, id: &str, after: Duration, error: &str) -> Result<()> {
        let (id, error) = (id.to_string(), error.to_string());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, now_ms() + after.as_millis() as i64, error],
                )
                .context("rescheduling e-mail")?;
                Ok(())
            })
            .await
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<()> {
        let (id, error) = (id.to_string(), error.to_string());
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE outbox SET status = 'failed', last_error = ?2 WHERE id = ?1",
                    params![id, error],
                )
                .context("recording failed e-mail")?;
                Ok(())
            })
            .await
    }

    async fn list_outbox(
        &self,
        status: Option<EmailStatus>,
        page: &PageRequest,
    ) -> Result<Page<OutboxEntry>> {
        let status = status.map(|s| s.as_str());
        let before = decode_cursor_newest_first(page.cursor.as_deref())?;
        let limit = page.limit;
        self.db
            .read(move |conn| {
                let rows = conn
                    .prepare_cached(
                        "SELECT seq, id, recipient, subject, category, status, attempts, last_error,
                                provider_message_id, created_at, sent_at
                         FROM outbox WHERE seq < ?1 AND (?2 IS NULL OR status = ?2)
                         ORDER BY seq DESC LIMIT ?3",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![before, status, limit + 1], |r| {
                            let seq: i64 = r.get(0)?;
                            let status: String = r.get(5)?;
                            let attempts: i64 = r.get(6)?;
                            let entry = EmailStatus::parse(&status)
                                .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("unknown e-mail status {status:?}")))
                                .and_then(|status| {
                                    Ok(OutboxEntry {
                                        id: r.get(1).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        to: r.get(2).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        subject: r.get(3).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        category: r.get(4).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        status,
                                        attempts: u32::try_from(attempts).unwrap_or(0),
                                        last_error: r.get(7).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        provider_message_id: r.get(8).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        created_at: r.get(9).map_err(|e| anyhow::anyhow!("{e}"))?,
                                        sent_at: r.get(10).map_err(|e| anyhow::anyhow!("{e}"))?,
                                    })
                                });
                            Ok((seq, entry))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .context("listing outbox")?;
                paginate(rows, limit)
            })
            .await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Keeps the role index in step with a user's roles (inside the caller's transaction).
fn index_roles(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    account_id: Option<&str>,
    roles: &[Role],
) -> Result<()> {
    for role in roles {
        tx.execute(
            "INSERT OR IGNORE INTO user_roles (role, user_id, account_id) VALUES (?1, ?2, ?3)",
            params![role.as_str(), user_id, account_id],
        )
        .context("indexing user role")?;
    }
    Ok(())
}

fn prefixed(columns: &str, prefix: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const INSTRUMENT_COLUMNS: &str = "seq, serial, model, name, account_id, created_at";
const NOTIFICATION_COLUMNS: &str = "seq, id, user_id, kind, title, body, data, created_at, read_at";

fn instrument_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Instrument>> {
    let seq: i64 = row.get(0)?;
    let (serial, model, name, account_id): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let created: String = row.get(5)?;
    let instrument = parse_timestamp(&created).map(|created_at| Instrument {
        serial,
        model,
        name,
        account_id,
        created_at,
    });
    Ok((seq, instrument))
}

fn notification_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Notification>> {
    let seq: i64 = row.get(0)?;
    let (id, user_id, kind, title, body): (String, String, String, String, String) = (
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
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

/// A row decodes in two steps: SQLite values (which cannot fail in ways a caller caused), then
/// domain values, whose failure means the file was edited by hand or is corrupt.
pub(crate) type Decoded<T> = (i64, Result<T>);

fn account_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Account>> {
    let seq: i64 = row.get(0)?;
    let (id, account_number, name): (String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?);
    let (kind, region, created): (String, String, String) = (row.get(4)?, row.get(5)?, row.get(6)?);
    let account = AccountKind::parse(&kind)
        .ok_or_else(|| {
            Error::Unexpected(anyhow::anyhow!("unknown account kind {kind:?} in database"))
        })
        .and_then(|kind| {
            Ok(Account {
                id,
                account_number,
                name,
                kind,
                region,
                created_at: parse_timestamp(&created)?,
            })
        });
    Ok((seq, account))
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<Decoded<User>> {
    let seq: i64 = row.get(0)?;
    let (id, sub, email, display_name): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let account_id: Option<String> = row.get(5)?;
    let (roles, created): (String, String) = (row.get(6)?, row.get(7)?);
    let user = parse_roles(&roles).and_then(|roles| {
        Ok(User {
            id,
            sub,
            email,
            display_name,
            account_id,
            roles,
            created_at: parse_timestamp(&created)?,
        })
    });
    Ok((seq, user))
}

pub(crate) fn paginate<T>(rows: Vec<Decoded<T>>, limit: u32) -> Result<Page<T>> {
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last_seq = None;
    for (seq, item) in rows.into_iter().take(limit as usize) {
        items.push(item?);
        last_seq = Some(seq);
    }
    let next_cursor = if more {
        last_seq.map(encode_cursor)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Cursors are the last row's position, wrapped so callers treat them as opaque.
fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

pub(crate) fn decode_cursor(cursor: Option<&str>) -> Result<i64> {
    let Some(cursor) = cursor else { return Ok(0) };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API returned"))
}

/// For lists newest first: the cursor is the last row seen, and the next page lies below it.
fn decode_cursor_newest_first(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        None => Ok(i64::MAX),
        cursor => decode_cursor(cursor),
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_roles(text: &str) -> Result<Vec<Role>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Role::parse(s)
                .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("unknown role {s:?} in database")))
        })
        .collect()
}

pub(crate) fn timestamp(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("formatting timestamp: {e}")))
}

pub(crate) fn parse_timestamp(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad timestamp {text:?} in database: {e}")))
}
