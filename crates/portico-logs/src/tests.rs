//! The store through its public surface: lines in, Kibana queries out.

use std::collections::BTreeMap;
use std::time::Duration;

use portico_core::logs::{LogLine, LogSearch, LogStore};
use portico_core::ports::PageRequest;
use serde_json::{Value, json};

use crate::store::{Retention, open, open_with_queue};

fn line(n: i64, level: &str, message: &str, fields: Value) -> LogLine {
    let fields: BTreeMap<String, Value> = serde_json::from_value(fields).unwrap();
    LogLine {
        timestamp_ms: 1_780_000_000_000 + n * 1000,
        level: level.into(),
        target: "portico_http::invoke".into(),
        message: message.into(),
        fields,
    }
}

fn search(q: &str) -> LogSearch {
    LogSearch { query: portico_core::logs::parse(q).unwrap(), from_ms: None, to_ms: None }
}

async fn ids(store: &crate::SqliteLogs, q: &str) -> Vec<i64> {
    let page = PageRequest { limit: 200, cursor: None };
    store
        .search(&search(q), &page)
        .await
        .unwrap()
        .items
        .iter()
        .map(|h| h.id.parse().unwrap())
        .collect()
}

fn retention() -> Retention {
    Retention::parse("3650d,1GiB").unwrap()
}

#[tokio::test]
async fn kibana_queries_find_exactly_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open(dir.path(), retention()).unwrap();
    writer.record(line(1, "INFO", "invocation", json!({"function": "create_account", "request_id": "r-1", "duration_ms": 12, "status": 201})));
    writer.record(line(2, "ERROR", "invocation failed", json!({"function": "create_account", "request_id": "r-2", "duration_ms": 250, "status": 500})));
    writer.record(line(
        3,
        "WARN",
        "Pump pressure too high",
        json!({"serial": "SN-ACME-001", "severity": "critical"}),
    ));
    writer.record(line(
        4,
        "INFO",
        "instrument alert",
        json!({"serial": "SN-ACME-001", "function": "instrument_alert", "recipients": 2, "retained": false}),
    ));
    writer.record(line(
        5,
        "INFO",
        "invocation",
        json!({"function": "get_account", "request_id": "r-3", "duration_ms": 3, "status": 200}),
    ));
    writer.flush();

    assert_eq!(ids(&store, "").await, [5, 4, 3, 2, 1], "newest first");
    assert_eq!(ids(&store, "level:ERROR AND function:create_account").await, [2]);
    assert_eq!(ids(&store, "level:error").await, [2], "levels match in any case");
    assert_eq!(ids(&store, "function:create_account AND NOT level:ERROR").await, [1]);
    assert_eq!(ids(&store, "request_id:r-3 OR request_id:r-1").await, [5, 1]);
    assert_eq!(ids(&store, "serial:SN-ACME-001").await, [4, 3]);
    assert_eq!(ids(&store, "critical").await, [3], "free text finds text fields' values");
    assert_eq!(ids(&store, r#""pressure too high""#).await, [3]);
    assert_eq!(
        ids(&store, r#""too pressure""#).await,
        Vec::<i64>::new(),
        "a phrase keeps its order"
    );
    assert_eq!(ids(&store, "pump").await, [3], "words match in any case");
    assert_eq!(ids(&store, "function:create*").await, [2, 1]);
    assert_eq!(ids(&store, "function:*_account").await, [5, 2, 1]);
    assert_eq!(ids(&store, "function:get_?ccount").await, [5]);
    assert_eq!(ids(&store, "invoc*").await, [5, 2, 1], "a word's prefix");
    assert_eq!(ids(&store, "*failed").await, [2]);
    assert_eq!(ids(&store, "duration_ms:>100").await, [2]);
    assert_eq!(ids(&store, "duration_ms:[3 TO 12]").await, [5, 1]);
    assert_eq!(ids(&store, "status:>=500").await, [2]);
    assert_eq!(ids(&store, "severity:*").await, [3]);
    assert_eq!(ids(&store, "request_id:*").await, [5, 2, 1]);
    assert_eq!(ids(&store, "recipients:2").await, [4]);
    assert_eq!(ids(&store, "retained:false").await, [4], "booleans read as written");
    assert_eq!(ids(&store, "nothing-like-this").await, Vec::<i64>::new());
    // Values are parameters, never SQL: quotes and SQL in a query only find nothing.
    assert_eq!(ids(&store, r#"function:"x' OR 1=1 --""#).await, Vec::<i64>::new());
    assert_eq!(ids(&store, r#""\") OR 1=1 --""#).await, Vec::<i64>::new());

    // The time range, and paging by cursor.
    let mut ranged = search("");
    ranged.from_ms = Some(1_780_000_002_000);
    ranged.to_ms = Some(1_780_000_004_000);
    let page = PageRequest { limit: 10, cursor: None };
    let hits: Vec<i64> = store
        .search(&ranged, &page)
        .await
        .unwrap()
        .items
        .iter()
        .map(|h| h.id.parse().unwrap())
        .collect();
    assert_eq!(hits, [3, 2]);
    let first = store.search(&search(""), &PageRequest { limit: 2, cursor: None }).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let second = store
        .search(&search(""), &PageRequest { limit: 2, cursor: first.next_cursor.clone() })
        .await
        .unwrap();
    assert_eq!(second.items.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["3", "2"]);
    let tail = store.after(&search("level:INFO"), Some("1"), 10).await.unwrap();
    assert_eq!(
        tail.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["4", "5"],
        "a tail is oldest first"
    );

    // Hits say what matched.
    let hit = &store.search(&search("pressure"), &page).await.unwrap().items[0];
    assert_eq!(hit.highlight.as_deref(), Some("Pump <mark>pressure</mark> too high"));
    assert_eq!(hit.line.fields["serial"], "SN-ACME-001");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, writer) = open_with_queue(dir.path(), retention(), 4).unwrap();
    let started = std::time::Instant::now();
    for n in 0..10_000 {
        writer.record(line(n, "INFO", "burst", json!({})));
    }
    assert!(writer.dropped() > 0, "some of a burst beyond the queue is dropped");
    assert!(started.elapsed() < Duration::from_secs(5), "and recording never waited on the disk");
}

#[tokio::test]
async fn retention_drops_old_lines_and_keeps_the_file_under_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open(dir.path(), retention()).unwrap();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let mut old = line(0, "INFO", "old", json!({}));
    old.timestamp_ms = now - 10 * 86_400_000;
    writer.record(old);
    for n in 0..3_000 {
        let mut fresh =
            line(n, "INFO", &format!("fresh line {n} {}", "x".repeat(200)), json!({"n": n}));
        fresh.timestamp_ms = now;
        writer.record(fresh);
    }
    writer.flush();
    let conn = rusqlite::Connection::open(crate::path(dir.path())).unwrap();
    crate::store::trim(&conn, Retention::parse("7d,1GiB").unwrap()).unwrap();
    assert_eq!(ids(&store, "old").await, Vec::<i64>::new(), "older than the age");
    assert_eq!(ids(&store, "fresh").await.len(), 200, "the rest stays (one page of 200)");
    crate::store::trim(&conn, Retention::parse("7d,300KiB").unwrap()).unwrap();
    let bytes: i64 = conn
        .query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(bytes <= 300 * 1024, "{bytes} bytes");
    let kept = ids(&store, "fresh").await;
    assert!(!kept.is_empty() && kept[0] == 3_001, "the newest lines are the ones kept");
}

#[test]
fn retention_reads_ages_and_sizes() {
    assert_eq!(
        Retention::parse("7d,1GiB").unwrap(),
        Retention { max_age: Duration::from_secs(7 * 86_400), max_bytes: 1 << 30 }
    );
    assert_eq!(Retention::parse("12h").unwrap().max_bytes, 1 << 30);
    assert_eq!(Retention::parse(",500MB").unwrap().max_bytes, 500_000_000);
    assert!(Retention::parse("7 parsecs").is_err());
}
