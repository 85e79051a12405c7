//! The `Outbox` port.

use std::time::Duration;

use portico_core::Outbox;
use portico_core::domain::{EmailStatus, OutboundEmail};

use super::{page, walk};

/// The outbox: a repeat enqueue is ignored; a claim is leased; a sender that dies leaves the
/// e-mail due again as the next attempt; outcomes are listed newest first by status.
pub async fn leases_and_outcomes(outbox: &dyn Outbox) {
    let email = |id: &str| OutboundEmail {
        id: id.into(),
        to: "a@b.example".into(),
        subject: "s".into(),
        text: "t".into(),
        html: "<p>t</p>".into(),
        category: "test".into(),
    };
    outbox.enqueue(&email("m1")).await.unwrap();
    outbox.enqueue(&email("m1")).await.unwrap();
    let lease = Duration::from_secs(1);
    let first = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, email("m1"));
    assert_eq!(first[0].1, 1);
    // Claimed: nobody else gets it while the lease runs...
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());
    // ...and when the sender never records an outcome, it is due again, as attempt 2.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let second = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!((second.len(), second[0].1), (1, 2));
    outbox.mark_sent("m1", Some("sg-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());

    outbox.enqueue(&email("m2")).await.unwrap();
    let claimed = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    outbox.retry_later("m2", Duration::from_secs(60), "429 Too Many Requests").await.unwrap();
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());
    outbox.enqueue(&email("m3")).await.unwrap();
    let claimed = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(claimed[0].0.id, "m3");
    outbox.mark_failed("m3", "400 bad address").await.unwrap();

    let sent = outbox.list_outbox(Some(EmailStatus::Sent), &page(10, None)).await.unwrap();
    assert_eq!(sent.items.len(), 1);
    assert_eq!(sent.items[0].provider_message_id.as_deref(), Some("sg-1"));
    assert_eq!(sent.items[0].attempts, 2);
    assert!(sent.items[0].sent_at.is_some());
    let failed = outbox.list_outbox(Some(EmailStatus::Failed), &page(10, None)).await.unwrap();
    assert_eq!(failed.items[0].last_error.as_deref(), Some("400 bad address"));
    let pending = outbox.list_outbox(Some(EmailStatus::Pending), &page(10, None)).await.unwrap();
    assert_eq!(pending.items[0].id, "m2");
    assert_eq!(pending.items[0].last_error.as_deref(), Some("429 Too Many Requests"));
    let all = walk(1, |p| async move { outbox.list_outbox(None, &p).await }).await;
    assert_eq!(all.len(), 3);
}
