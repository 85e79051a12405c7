//! The `Documents` port.

use portico_core::domain::{Document, DocumentStatus, Role};
use portico_core::ports::Transition;
use portico_core::{Accounts, Documents, Error, Users};
use serde_json::json;

use super::{at, two_accounts, user, walk};

/// Documents: listed newest first per account; status moves only from an expected status.
pub async fn listing_and_transitions(
    accounts: &dyn Accounts,
    users: &dyn Users,
    documents: &dyn Documents,
) {
    two_accounts(accounts).await;
    users.insert_user(&user(1, Some("acc-1"), &[Role::Scientist])).await.unwrap();
    let doc = |n: i64, account: &str| Document {
        id: format!("d-{n}"),
        account_id: account.into(),
        uploaded_by: "u-1".into(),
        filename: format!("run-{n}.csv"),
        content_type: "text/csv".into(),
        size: 10 + n as u64,
        status: DocumentStatus::Pending,
        failure_reason: None,
        metadata: None,
        instrument_serial: (n == 2).then(|| "SN-2".to_string()),
        created_at: at(600 + n),
        updated_at: at(600 + n),
    };
    for n in 0..4 {
        documents.create_document(&doc(n, "acc-1")).await.unwrap();
    }
    documents.create_document(&doc(9, "acc-2")).await.unwrap();
    assert!(matches!(documents.create_document(&doc(1, "acc-1")).await, Err(Error::Conflict(_))));
    let ids: Vec<String> = walk(3, |p| async move { documents.list_documents("acc-1", &p).await })
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, vec!["d-3", "d-2", "d-1", "d-0"]);
    let run = documents.document("d-2").await.unwrap().unwrap();
    assert_eq!(run.instrument_serial.as_deref(), Some("SN-2"));

    let pending = [DocumentStatus::Pending];
    assert!(
        documents
            .transition_document("d-1", Transition::new(&pending, DocumentStatus::Processing))
            .await
            .unwrap()
    );
    // A second worker cannot take it too.
    assert!(
        !documents
            .transition_document("d-1", Transition::new(&pending, DocumentStatus::Processing))
            .await
            .unwrap()
    );
    let meta = json!({"rows": 2, "columns": ["a", "b"]});
    assert!(
        documents
            .transition_document(
                "d-1",
                Transition {
                    metadata: Some(&meta),
                    ..Transition::new(&[DocumentStatus::Processing], DocumentStatus::Ready)
                }
            )
            .await
            .unwrap()
    );
    let ready = documents.document("d-1").await.unwrap().unwrap();
    assert_eq!(ready.status, DocumentStatus::Ready);
    assert_eq!(ready.metadata, Some(meta));
    assert!(ready.updated_at > ready.created_at);
    assert!(
        documents
            .transition_document(
                "d-2",
                Transition {
                    failure_reason: Some("not a CSV file"),
                    ..Transition::new(
                        &[DocumentStatus::Pending, DocumentStatus::Processing],
                        DocumentStatus::Failed
                    )
                }
            )
            .await
            .unwrap()
    );
    let failed = documents.document("d-2").await.unwrap().unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("not a CSV file"));
    assert!(
        !documents
            .transition_document("d-404", Transition::new(&pending, DocumentStatus::Processing))
            .await
            .unwrap()
    );
}
