//! The `_bulk` sink against the OpenSearch stand-in: documents arrive once, busy items are
//! retried, refused ones come back with the reason, outages are retried then reported.

use std::collections::BTreeMap;
use std::time::Duration;

use portico_logs::opensearch::{Auth, BulkDoc, BulkSink, daily_index};
use portico_testkit::opensearch::{OpenSearchStandIn, Script};
use serde_json::json;

fn doc(n: usize) -> BulkDoc {
    BulkDoc {
        index: daily_index("portico-logs", 1_780_000_000_000),
        id: format!("ev-{n}"),
        source: json!({"message": format!("line {n}")}),
    }
}

fn sink(url: &str) -> BulkSink {
    BulkSink::new(
        url,
        Auth::Basic { username: "shipper".into(), password: "s3cret".into() },
        Duration::from_millis(500),
    )
    .expect("ok")
    .with_retries(4, Duration::from_millis(10))
}

#[tokio::test]
async fn documents_arrive_once_and_busy_items_are_retried() {
    let cluster = OpenSearchStandIn::start().await;
    cluster.script([Script::Items(BTreeMap::from([
        ("ev-2".to_string(), 429),
        ("ev-3".to_string(), 503),
    ]))]);
    let url = cluster.url.clone();
    let shipped = sink(&url).ship((0..5).map(doc).collect()).await.expect("ok");
    assert_eq!(
        (shipped.created, shipped.duplicates, shipped.refused.len()),
        (5, 0, 0),
        "{shipped:?}"
    );
    // Redelivered: every document is already there.
    let again = sink(&url).ship((0..5).map(doc).collect()).await.expect("ok");
    assert_eq!((again.created, again.duplicates), (0, 5));
    let docs = cluster.docs();
    assert_eq!(docs.len(), 5);
    assert!(docs.keys().all(|(index, _)| index == "portico-logs-2026.05.28"), "{:?}", docs.keys());
    let auth = cluster.auth_headers();
    assert!(auth.iter().all(|a| a.as_deref() == Some("Basic c2hpcHBlcjpzM2NyZXQ=")), "{auth:?}");
}

#[tokio::test]
async fn refused_items_come_back_with_the_reason_and_outages_are_retried_then_reported() {
    let cluster = OpenSearchStandIn::start().await;
    let url = cluster.url.clone();
    cluster.script([
        Script::Request(502),
        Script::Slow(Duration::from_secs(2)),
        Script::Items(BTreeMap::from([("ev-1".to_string(), 400)])),
    ]);
    let shipped = sink(&url).ship((0..3).map(doc).collect()).await.expect("ok");
    assert_eq!(shipped.created, 2);
    assert_eq!(shipped.refused.len(), 1);
    assert_eq!(shipped.refused[0].0.id, "ev-1");
    assert!(shipped.refused[0].1.contains("400: failed to parse field"), "{:?}", shipped.refused);
    assert_eq!(cluster.bulk_requests(), 3, "a 502 and a timeout, then the answer");

    cluster.script((0..4).map(|_| Script::Request(503)));
    let err = sink(&url).ship(vec![doc(9)]).await.expect_err("an error");
    assert!(err.0.contains("503"), "{err}");
}

#[test]
fn indexes_are_daily_in_utc() {
    assert_eq!(daily_index("portico-logs", 0), "portico-logs-1970.01.01");
    assert_eq!(daily_index("portico-logs", 1_780_000_000_000), "portico-logs-2026.05.28");
}
