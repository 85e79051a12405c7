//! The `Documents` port on SQLite.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Document, DocumentStatus};
use portico_core::graph::Change;
use portico_core::ports::{Page, PageRequest, Transition};
use portico_core::{Documents, Result};
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::rows::{Decoded, corrupt, parse_timestamp, timestamp, values};
use crate::store::Order;
use crate::{SqliteStore, changes};

const COLUMNS: &str = "seq, id, account_id, uploaded_by, filename, content_type, size, status, failure_reason, metadata, created_at, updated_at, instrument_serial";

#[async_trait]
impl Documents for SqliteStore {
    async fn create_document(&self, d: &Document) -> Result<()> {
        let sql =
            "INSERT INTO documents (id, account_id, uploaded_by, filename, content_type, size,
                                          status, failure_reason, metadata, created_at, updated_at,
                                          instrument_serial)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
        let (id, account, uploader) = (d.id.clone(), d.account_id.clone(), d.uploaded_by.clone());
        let (filename, content_type) = (d.filename.clone(), d.content_type.clone());
        let (status, reason) = (d.status.as_str().to_string(), d.failure_reason.clone());
        let metadata = d.metadata.as_ref().map(|m| m.to_string());
        let (created, updated) = (timestamp(d.created_at)?, timestamp(d.updated_at)?);
        let values = values![
            id,
            account,
            uploader,
            filename,
            content_type,
            d.size as i64,
            status,
            reason,
            metadata,
            created,
            updated,
            d.instrument_serial.clone()
        ];
        let conflict = format!("document `{}` already exists", d.id);
        let change = Change::Document(d.clone());
        self.insert(sql, values, conflict, change, "inserting document").await
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = ?1");
        self.one(&sql, params![id], document_row, "reading document")
    }

    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>> {
        let select = format!("SELECT {COLUMNS} FROM documents WHERE account_id = ?2");
        self.listing(
            &select,
            &[&account_id],
            document_row,
            page,
            Order::NewestFirst,
            "listing documents",
        )
    }

    async fn transition_document(&self, id: &str, change: Transition<'_>) -> Result<bool> {
        let to = change.to;
        let from: Vec<&'static str> = change.from.iter().map(|s| s.as_str()).collect();
        let reason = change.failure_reason.map(str::to_string);
        let metadata = change.metadata.map(|m| m.to_string());
        let id = id.to_string();
        self.db
            .transaction("document transition", move |conn| {
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
                // The immediate transaction makes read-then-update atomic.
                let n = conn
                    .execute(
                        "UPDATE documents SET status = ?2, failure_reason = COALESCE(?3, failure_reason),
                                metadata = COALESCE(?4, metadata), updated_at = ?5
                         WHERE id = ?1 AND status = ?6",
                        params![id, to.as_str(), reason, metadata, timestamp(OffsetDateTime::now_utc())?, current],
                    )
                    .context("updating document status")?;
                if n > 0 {
                    let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = ?1");
                    let (_, document) = conn
                        .query_row(&sql, params![id], document_row)
                        .context("rereading document")?;
                    changes::record(conn, &Change::Document(document?))?;
                }
                Ok(n > 0)
            })
            .await
    }
}

fn document_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Document>> {
    let seq: i64 = row.get(0)?;
    let (id, account_id, uploaded_by, filename, content_type): (
        String,
        String,
        String,
        String,
        String,
    ) = (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
    let size: i64 = row.get(6)?;
    let (status, failure_reason, metadata): (String, Option<String>, Option<String>) =
        (row.get(7)?, row.get(8)?, row.get(9)?);
    let (created, updated): (String, String) = (row.get(10)?, row.get(11)?);
    let instrument_serial: Option<String> = row.get(12)?;
    let document = (|| {
        Ok(Document {
            id,
            account_id,
            uploaded_by,
            filename,
            content_type,
            size: size.max(0) as u64,
            status: DocumentStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("unknown document status {status:?}")))?,
            failure_reason,
            metadata: metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| corrupt(format!("bad document metadata: {e}")))?,
            instrument_serial,
            created_at: parse_timestamp(&created)?,
            updated_at: parse_timestamp(&updated)?,
        })
    })();
    Ok((seq, document))
}
