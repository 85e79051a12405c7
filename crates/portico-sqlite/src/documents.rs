//! The `Documents` port on SQLite.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Document, DocumentStatus};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Documents, Result};
use rusqlite::{OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::SqliteStore;
use crate::rows::{
    self, Decoded, conflict_or, corrupt, decode_cursor_newest_first, parse_timestamp, timestamp,
};

const COLUMNS: &str = "seq, id, account_id, uploaded_by, filename, content_type, size, status, failure_reason, metadata, created_at, updated_at";

#[async_trait]
impl Documents for SqliteStore {
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
                    conflict_or(
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
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = ?1");
        self.db
            .read(|conn| rows::one(conn, &sql, params![id], document_row, "reading document"))
            .await
    }

    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>> {
        let before = decode_cursor_newest_first(page.cursor.as_deref())?;
        let sql = format!(
            "SELECT {COLUMNS} FROM documents
             WHERE account_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
        );
        self.db
            .read(|conn| {
                let params = params![account_id, before, page.limit + 1];
                rows::page(
                    conn,
                    &sql,
                    params,
                    document_row,
                    page.limit,
                    "listing documents",
                )
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
}

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
            status: DocumentStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("unknown document status {status:?}")))?,
            failure_reason,
            metadata: metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| corrupt(format!("bad document metadata: {e}")))?,
            created_at: parse_timestamp(&created)?,
            updated_at: parse_timestamp(&updated)?,
        })
    })();
    Ok((seq, document))
}
