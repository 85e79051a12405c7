//! Documents: an upload is asked for, its bytes arrive through a signed URL, the upload worker is
//! told (`UploadEvents`; the hosts know the event's wire shape), and it checks the file, records what is in
//! it, marks it `ready` or `failed` and tells the uploader. Every step can run twice without harm.

mod inspect;

use portico_core::audit::{Acting, Actor};
use std::collections::BTreeMap;

use futures_util::StreamExt;
use portico_core::domain::{Caller, Document, DocumentStatus, Notification};
use portico_core::policy::Scope;
use portico_core::ports::{Page, PageRequest, Transition};
use portico_core::{Error, FieldError, Result, StoredObject, UploadCompleted, policy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::Context;
pub use inspect::Inspector;

/// The queue upload events go to; its dead-letter queue is `document-uploads-dead`.
pub const UPLOADS_QUEUE: &str = "document-uploads";
/// `POST /v1/documents/uploads`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestUpload {
    /// A file name (no path), shown to users; storage never uses it.
    pub filename: String,
    /// The `Content-Type` the upload will be sent with, e.g. `text/csv`.
    pub content_type: String,
    /// The exact size of the file in bytes.
    pub size: u64,
    /// The account's instrument that produced the file (a run file), if any: traceability
    /// links the run to the lots that instrument loaded.
    #[serde(default)]
    pub instrument_serial: Option<String>,
}

/// Where and how to send the file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadTicket {
    pub document_id: String,
    /// `PUT` the file here, once, with exactly `size` bytes and the `upload_headers`.
    pub upload_url: String,
    /// Headers the PUT must carry: the declared `Content-Type`, and `If-None-Match: *` (the link
    /// creates the file and never replaces it; on S3 both are signed into the URL).
    pub upload_headers: BTreeMap<String, String>,
    pub expires_at: String,
}

/// `GET /v1/documents/{id}`
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    #[serde(flatten)]
    pub document: Document,
    /// A signed, expiring link to the bytes, once the document is ready.
    pub download_url: Option<String>,
}

pub async fn request_upload(
    ctx: &Context,
    caller: &Caller,
    input: RequestUpload,
) -> Result<UploadTicket> {
    let account_id = policy::upload_document(caller)?;
    let user_id = caller
        .user_id()
        .ok_or_else(|| Error::Forbidden("documents are uploaded by users".into()))?;
    let mut errors = Vec::new();
    check_filename(&mut errors, &input.filename);
    check_content_type(&mut errors, &input.content_type);
    let max = ctx.settings.max_upload_bytes;
    if input.size == 0 {
        errors.push(FieldError::new("size", "an empty file has nothing to check"));
    } else if input.size > max {
        errors.push(FieldError::new("size", format!("must be at most {max} bytes")));
    }
    if let Some(serial) = &input.instrument_serial {
        let own = ctx.instruments.instrument(serial).await?.filter(|i| i.account_id == account_id);
        if own.is_none() {
            errors
                .push(FieldError::new("instrument_serial", "is not an instrument of your account"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let now = OffsetDateTime::now_utc();
    let document = Document {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: account_id.to_string(),
        uploaded_by: user_id.to_string(),
        filename: input.filename,
        content_type: input.content_type.trim().to_ascii_lowercase(),
        size: input.size,
        status: DocumentStatus::Pending,
        failure_reason: None,
        metadata: None,
        instrument_serial: input.instrument_serial,
        created_at: now,
        updated_at: now,
    };
    ctx.documents.create_document(&document).await?;
    let expires = now + time::Duration::seconds(ctx.settings.upload_url_ttl_secs as i64);
    let upload_url = ctx.file_urls.upload_url(&document, expires.unix_timestamp()).await?;
    let (condition, value) = portico_core::ports::UPLOAD_CONDITION;
    let upload_headers = BTreeMap::from([
        ("Content-Type".to_string(), document.content_type.clone()),
        (condition.to_string(), value.to_string()),
    ]);
    Ok(UploadTicket {
        document_id: document.id,
        upload_url,
        upload_headers,
        expires_at: expires.format(&Rfc3339).unwrap_or_default(),
    })
}

fn check_filename(errors: &mut Vec<FieldError>, name: &str) {
    let bad = name.is_empty()
        || name.len() > 255
        || name != name.trim()
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        errors.push(FieldError::new(
            "filename",
            "must be a plain file name (no path, no control characters, 1 to 255 bytes)",
        ));
    }
}

fn check_content_type(errors: &mut Vec<FieldError>, value: &str) {
    let token = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let ok = value.len() <= 100
        && !value.chars().any(|c| c.is_control())
        && essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s));
    if !ok {
        errors.push(FieldError::new("content_type", "must be a media type such as text/csv"));
    }
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<DocumentView> {
    policy::require_provisioned(caller)?;
    let not_found = || Error::NotFound(format!("document `{id}` not found"));
    let document = ctx.documents.document(id).await?.ok_or_else(not_found)?;
    policy::read_document(caller, id, &document.account_id)?;
    let download_url = if document.status == DocumentStatus::Ready {
        let expires = OffsetDateTime::now_utc()
            + time::Duration::seconds(ctx.settings.upload_url_ttl_secs as i64);
        Some(ctx.file_urls.download_url(&document, expires.unix_timestamp()).await?)
    } else {
        None
    };
    Ok(DocumentView { document, download_url })
}

pub async fn list(ctx: &Context, caller: &Caller, page: PageRequest) -> Result<Page<Document>> {
    match policy::list_documents(caller)? {
        Scope::Account(own) => ctx.documents.list_documents(&own, &page).await,
        Scope::All | Scope::Nothing => Ok(Page::empty()),
    }
}

/// The bytes of `document` are stored: tell the worker.
pub async fn upload_completed(
    ctx: &Context,
    document: &Document,
    stored: &StoredObject,
) -> Result<()> {
    // Event first, status second: a crash in between leaves a pending document with an event,
    // which the worker handles; the other order could leave a document no event will ever finish.
    ctx.upload_events
        .stored(&UploadCompleted {
            key: document.object_key(),
            size: stored.size,
            sha256: stored.sha256.clone(),
            uploaded_by: document.uploaded_by.clone(),
        })
        .await?;
    mark_processing(ctx, &document.id).await?;
    Ok(())
}

/// A PUT on a document's upload link begins: reserves the document for that PUT, atomically, so
/// a second PUT (concurrent or later, even after the file was checked) is a conflict and changes
/// nothing.
pub async fn reserve_upload(ctx: &Context, id: &str) -> Result<()> {
    let reserved = ctx
        .documents
        .transition_document(
            id,
            Transition::new(&[DocumentStatus::Pending], DocumentStatus::Uploading),
        )
        .await?;
    if !reserved {
        return Err(Error::Conflict(
            "this document's file was already uploaded, or is being uploaded".into(),
        ));
    }
    Ok(())
}

/// The PUT that reserved a document ended before its bytes were stored: the link (until it
/// expires) may be used again.
pub async fn release_upload(ctx: &Context, id: &str) -> Result<()> {
    ctx.documents
        .transition_document(
            id,
            Transition::new(&[DocumentStatus::Uploading], DocumentStatus::Pending),
        )
        .await?;
    Ok(())
}

/// Pending (or uploading) -> processing (a no-op for documents already past it).
async fn mark_processing(ctx: &Context, id: &str) -> Result<()> {
    ctx.documents
        .transition_document(
            id,
            Transition::new(
                &[DocumentStatus::Pending, DocumentStatus::Uploading],
                DocumentStatus::Processing,
            ),
        )
        .await?;
    Ok(())
}

/// The document an object key belongs to (`documents/<account>/<id>`).
async fn document_for_key(ctx: &Context, key: &str) -> Result<Option<Document>> {
    let Some(id) = key.strip_prefix("documents/").and_then(|rest| rest.split('/').nth(1)) else {
        return Ok(None);
    };
    Ok(ctx.documents.document(id).await?.filter(|d| d.object_key() == key))
}

/// What the worker did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    Ready(String),
    Failed(String, String),
    AlreadyDone(String),
    Unknown(String),
}

/// Handles the stored objects one upload event names; an `Err` means "try again later" (the
/// message stays on the queue).
pub async fn process_upload(ctx: &Context, keys: &[String]) -> Result<Vec<Processed>> {
    let acting = Acting::new(Actor::system("process_upload"), None);
    portico_core::audit::scope(acting, process_upload_keys(ctx, keys)).await
}

async fn process_upload_keys(ctx: &Context, keys: &[String]) -> Result<Vec<Processed>> {
    if keys.is_empty() {
        tracing::warn!("upload event without object keys dropped");
    }
    let mut out = Vec::new();
    for key in keys {
        let key = key.clone();
        let Some(document) = document_for_key(ctx, &key).await? else {
            tracing::warn!(key, "upload event for an unknown object dropped");
            out.push(Processed::Unknown(key));
            continue;
        };
        if document.status.is_final() {
            out.push(Processed::AlreadyDone(document.id));
            continue;
        }
        mark_processing(ctx, &document.id).await?;
        let outcome = match ctx.objects.get(&key).await {
            Ok(mut stream) => {
                let mut inspector = Inspector::new(is_csv(&document), document.size);
                let mut verdict = Ok(());
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| anyhow::anyhow!("reading {key}: {e}"))?;
                    if let Err(reason) = inspector.feed(&chunk) {
                        verdict = Err(reason);
                        break;
                    }
                }
                verdict.and_then(|()| inspector.finish())
            }
            Err(Error::NotFound(_)) => Err("the uploaded file is missing".to_string()),
            Err(e) => return Err(e),
        };
        match outcome {
            Ok(metadata) => {
                finish(ctx, &document, DocumentStatus::Ready, None, Some(&metadata)).await?;
                out.push(Processed::Ready(document.id));
            }
            Err(reason) => {
                finish(ctx, &document, DocumentStatus::Failed, Some(&reason), None).await?;
                out.push(Processed::Failed(document.id, reason));
            }
        }
    }
    Ok(out)
}

/// An upload event that failed too often: the documents of its keys will never be checked.
pub async fn dead_lettered(ctx: &Context, keys: &[String]) -> Result<()> {
    let acting = Acting::new(Actor::system("upload_dead_letters"), None);
    portico_core::audit::scope(acting, dead_lettered_keys(ctx, keys)).await
}

async fn dead_lettered_keys(ctx: &Context, keys: &[String]) -> Result<()> {
    for key in keys {
        if let Some(document) = document_for_key(ctx, key).await?
            && !document.status.is_final()
        {
            let reason = "the file could not be processed (too many attempts)";
            finish(ctx, &document, DocumentStatus::Failed, Some(reason), None).await?;
        }
    }
    Ok(())
}

fn is_csv(document: &Document) -> bool {
    document.content_type.starts_with("text/csv")
        || document.filename.to_ascii_lowercase().ends_with(".csv")
}

/// Stores the uploader's notification, then moves the document to its final state, then
/// publishes. A repeat finds the notification stored (same id) and the state already final.
async fn finish(
    ctx: &Context,
    document: &Document,
    status: DocumentStatus,
    reason: Option<&str>,
    metadata: Option<&Value>,
) -> Result<()> {
    let (kind, title) = match status {
        DocumentStatus::Ready => ("document_ready", format!("{} is ready", document.filename)),
        _ => ("document_failed", format!("{} could not be processed", document.filename)),
    };
    let notification = Notification {
        id: crate::notifications::notification_id(
            &format!("{kind}\n{}", document.id),
            &document.uploaded_by,
        ),
        user_id: document.uploaded_by.clone(),
        kind: kind.into(),
        title,
        body: reason.unwrap_or("").to_string(),
        data: json!({"document_id": document.id, "status": status, "metadata": metadata}),
        created_at: OffsetDateTime::now_utc(),
        read_at: None,
    };
    // Told before the status moves: a worker that dies in between tells nobody twice (the
    // notification's id is derived) and nobody never.
    crate::notifications::deliver(ctx, std::slice::from_ref(&notification)).await?;
    let moved = ctx
        .documents
        .transition_document(
            &document.id,
            Transition {
                failure_reason: reason,
                metadata,
                ..Transition::new(
                    &[
                        DocumentStatus::Pending,
                        DocumentStatus::Uploading,
                        DocumentStatus::Processing,
                    ],
                    status,
                )
            },
        )
        .await?;
    if status == DocumentStatus::Ready
        && let Some(uploader) = ctx.users.user_by_id(&document.uploaded_by).await?
    {
        // Same id on a repeat: the outbox keeps one.
        crate::email::queue(ctx, crate::email::document_ready(&uploader.email, document)?).await?;
    }
    if moved {
        tracing::info!(document_id = %document.id, status = status.as_str(), reason, "document checked");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_types() {
        let mut errors = Vec::new();
        for bad in
            ["", "../etc/passwd", "/abs.csv", "a\\b.csv", "nul\0.csv", "..", " lead.csv", "a\nb"]
        {
            check_filename(&mut errors, bad);
        }
        assert_eq!(errors.len(), 8);
        errors.clear();
        check_filename(&mut errors, "run 2026-11-27 (final).csv");
        check_content_type(&mut errors, "text/csv; charset=utf-8");
        assert!(errors.is_empty(), "{errors:?}");
        for bad in ["csv", "text/", "text/csv\r\nX-Evil: 1", "te xt/csv"] {
            check_content_type(&mut errors, bad);
        }
        assert_eq!(errors.len(), 4);
    }
}
