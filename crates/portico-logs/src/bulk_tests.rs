//! The `_bulk` sink against a loopback stand-in that speaks the wire format: NDJSON in, per-item
//! results out, with scripted 429 / 409 / 400 / 5xx answers and a slow one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::opensearch::{Auth, BulkDoc, BulkSink, daily_index};

/// What the stand-in answers next: a whole-request status, or per-item statuses by document id.
#[derive(Clone, Debug)]
enum Script {
    Request(u16),
    Slow(Duration),
    Items(BTreeMap<String, u16>),
}

#[derive(Default)]
struct Cluster {
    docs: BTreeMap<(String, String), Value>,
    script: VecDeque<Script>,
    requests: usize,
    auth: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Cluster>>;

async fn bulk(
    State(cluster): State<Shared>,
    headers: axum::http::HeaderMap,
    body: String,
) -> impl IntoResponse {
    let next = {
        let mut c = cluster.lock().unwrap();
        c.requests += 1;
        c.auth.push(headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string));
        c.script.pop_front()
    };
    let mut forced = BTreeMap::new();
    match next {
        Some(Script::Request(status)) => {
            return (
                StatusCode::from_u16(status).unwrap(),
                "{\"error\": \"scripted\"}".to_string(),
            );
        }
        Some(Script::Slow(wait)) => tokio::time::sleep(wait).await,
        Some(Script::Items(items)) => forced = items,
        None => {}
    }
    let lines: Vec<&str> = body.lines().collect();
    let mut items = Vec::new();
    let mut c = cluster.lock().unwrap();
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let source: Value = serde_json::from_str(pair[1]).unwrap();
        let index = action["create"]["_index"].as_str().unwrap().to_string();
        let id = action["create"]["_id"].as_str().unwrap().to_string();
        let status = match forced.get(&id) {
            Some(400) => {
                items.push(json!({"create": {"_index": index, "_id": id, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [status]"}}}));
                continue;
            }
            Some(&status) => status,
            None if c.docs.contains_key(&(index.clone(), id.clone())) => 409,
            None => {
                c.docs.insert((index.clone(), id.clone()), source);
                201
            }
        };
        items.push(json!({"create": {"_index": index, "_id": id, "status": status}}));
    }
    let errors = items.iter().any(|i| i["create"]["status"].as_u64() != Some(201));
    (StatusCode::OK, json!({"took": 1, "errors": errors, "items": items}).to_string())
}

async fn stand_in() -> (String, Shared) {
    let cluster: Shared = Arc::default();
    let app =
        axum::Router::new().route("/_bulk", axum::routing::post(bulk)).with_state(cluster.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), cluster)
}

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
    .unwrap()
    .with_retries(4, Duration::from_millis(10))
}

#[tokio::test]
async fn documents_arrive_once_and_busy_items_are_retried() {
    let (url, cluster) = stand_in().await;
    cluster.lock().unwrap().script.push_back(Script::Items(BTreeMap::from([
        ("ev-2".to_string(), 429),
        ("ev-3".to_string(), 503),
    ])));
    let shipped = sink(&url).ship((0..5).map(doc).collect()).await.unwrap();
    assert_eq!(
        (shipped.created, shipped.duplicates, shipped.refused.len()),
        (5, 0, 0),
        "{shipped:?}"
    );
    // Redelivered: every document is already there.
    let again = sink(&url).ship((0..5).map(doc).collect()).await.unwrap();
    assert_eq!((again.created, again.duplicates), (0, 5));
    let c = cluster.lock().unwrap();
    assert_eq!(c.docs.len(), 5);
    assert!(
        c.docs.keys().all(|(index, _)| index == "portico-logs-2026.05.28"),
        "{:?}",
        c.docs.keys()
    );
    assert!(
        c.auth.iter().all(|a| a.as_deref() == Some("Basic c2hpcHBlcjpzM2NyZXQ=")),
        "{:?}",
        c.auth
    );
}

#[tokio::test]
async fn refused_items_come_back_with_the_reason_and_outages_are_retried_then_reported() {
    let (url, cluster) = stand_in().await;
    cluster.lock().unwrap().script.extend([
        Script::Request(502),
        Script::Slow(Duration::from_secs(2)),
        Script::Items(BTreeMap::from([("ev-1".to_string(), 400)])),
    ]);
    let shipped = sink(&url).ship((0..3).map(doc).collect()).await.unwrap();
    assert_eq!(shipped.created, 2);
    assert_eq!(shipped.refused.len(), 1);
    assert_eq!(shipped.refused[0].0.id, "ev-1");
    assert!(shipped.refused[0].1.contains("400: failed to parse field"), "{:?}", shipped.refused);
    assert_eq!(cluster.lock().unwrap().requests, 3, "a 502 and a timeout, then the answer");

    cluster.lock().unwrap().script.extend((0..4).map(|_| Script::Request(503)));
    let err = sink(&url).ship(vec![doc(9)]).await.unwrap_err();
    assert!(err.0.contains("503"), "{err}");
}

#[test]
fn indexes_are_daily_in_utc() {
    assert_eq!(daily_index("portico-logs", 0), "portico-logs-1970.01.01");
    assert_eq!(daily_index("portico-logs", 1_780_000_000_000), "portico-logs-2026.05.28");
}
