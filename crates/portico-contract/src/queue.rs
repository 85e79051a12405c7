//! `Queue`: SQS semantics. The adapter under test must dead-letter after 3 receives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portico_core::{Queue, Receive};

const SECOND: Duration = Duration::from_secs(1);
/// Whatever is visible now, hidden for a second.
const AT_ONCE: Receive = Receive { max: 10, visibility: SECOND, wait: Duration::ZERO };
/// Long enough past a one-second visibility timeout for every adapter to show the message again.
const PAST_VISIBILITY: Duration = Duration::from_millis(1_300);

/// Receives from `queue`, long-polling up to two seconds for a message to arrive.
async fn receive_one(q: &dyn Queue, queue: &str) -> Vec<portico_core::ports::QueueMessage> {
    q.receive(queue, Receive { max: 10, visibility: SECOND, wait: Duration::from_secs(2) })
        .await
        .unwrap()
}

/// A message is hidden while in flight, comes back with a higher receive count, is not deleted
/// by a stale receipt, and moves to `<queue>-dead` after 3 receives. `queue` must be empty.
pub async fn visibility_receipts_and_dead_letters(q: &dyn Queue, queue: &str) {
    let mut attrs = BTreeMap::new();
    attrs.insert("kind".to_string(), "test".to_string());
    let id = q.send(queue, "hello", &attrs).await.unwrap();
    assert!(!id.is_empty());

    let first = receive_one(q, queue).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, "hello");
    assert_eq!(first[0].attributes, attrs);
    assert_eq!(first[0].receive_count, 1);
    assert!(first[0].sent_at_ms > 0);
    // Hidden while in flight.
    let hidden = q.receive(queue, AT_ONCE).await.unwrap();
    assert!(hidden.is_empty(), "{hidden:?}");

    tokio::time::sleep(PAST_VISIBILITY).await;
    let second = receive_one(q, queue).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    // What a stale receipt does is the adapter's own: SQS may still delete the message with it
    // (moto does), the local queue refuses it. Workers delete only after their work is committed
    // and the work is idempotent, so either is safe; the local queue's own tests cover its case.

    tokio::time::sleep(PAST_VISIBILITY).await;
    let third = receive_one(q, queue).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].receive_count, 3);

    tokio::time::sleep(PAST_VISIBILITY).await;
    // Received 3 times already: the next receive moves it to the dead-letter queue.
    let after = q.receive(queue, AT_ONCE).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    let dead_queue = format!("{queue}-dead");
    let dead = receive_one(q, &dead_queue).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "hello");
    assert!(q.delete(&dead_queue, &dead[0].receipt).await.unwrap());
}

/// A receiver waiting on an empty queue gets a message sent meanwhile; a receipt's visibility can
/// be changed, to 0 to hand the message back at once; a deleted message is gone.
pub async fn long_polling_visibility_changes_and_deletes(q: Arc<dyn Queue>, queue: &str) {
    let receiver = {
        let q = q.clone();
        let queue = queue.to_string();
        tokio::spawn(async move {
            q.receive(
                &queue,
                Receive {
                    max: 1,
                    visibility: Duration::from_secs(30),
                    wait: Duration::from_secs(5),
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.send(queue, "wake", &BTreeMap::new()).await.unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "wake");

    // Handed back at once.
    assert!(q.change_visibility(queue, &got[0].receipt, Duration::ZERO).await.unwrap());
    let again = receive_one(q.as_ref(), queue).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    // Kept hidden for longer than its first timeout while a worker is still busy.
    assert!(q.change_visibility(queue, &again[0].receipt, Duration::from_secs(30)).await.unwrap());
    assert!(q.delete(queue, &again[0].receipt).await.unwrap());
    let empty = q.receive(queue, AT_ONCE).await.unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    let stats = q.stats(queue).await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
}
