//! The `Documents` port on the table.

use async_trait::async_trait;
use portico_core::domain::Document;
use portico_core::ports::{Page, PageRequest, Transition};
use portico_core::{Documents, Result};
use time::OffsetDateTime;

use super::keys::{self, GSI1, ONE};
use super::{DynamoStore, item};

#[async_trait]
impl Documents for DynamoStore {
    async fn create_document(&self, document: &Document) -> Result<()> {
        let sort = keys::order(document.created_at, &document.id);
        let item = item(
            keys::document(&document.id),
            ONE,
            document,
            &[(GSI1, keys::account_documents(&document.account_id), sort)],
        )?;
        let conflict = format!("document `{}` already exists", document.id);
        self.create(item, conflict).await
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        self.get_record(keys::document(id), ONE).await
    }

    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>> {
        let partition = keys::account_documents(account_id);
        self.page(GSI1, partition, true, page).await
    }

    async fn transition_document(&self, id: &str, change: Transition<'_>) -> Result<bool> {
        let mut moved = false;
        self.update(keys::document(id), ONE, |doc: &mut Document| {
            moved = change.from.contains(&doc.status);
            if !moved {
                return false;
            }
            doc.status = change.to;
            if let Some(reason) = change.failure_reason {
                doc.failure_reason = Some(reason.to_string());
            }
            if let Some(metadata) = change.metadata {
                doc.metadata = Some(metadata.clone());
            }
            doc.updated_at = OffsetDateTime::now_utc();
            true
        })
        .await?;
        Ok(moved)
    }
}
