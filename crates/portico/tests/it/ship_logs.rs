//! `portico ship-logs` as an operator runs it, into the OpenSearch stand-in and into a Portico log
//! store: every line arrives once in effect through rotation (rename + new file), truncation
//! (copytruncate), a `kill -9` between the sink's acknowledgement and the checkpoint, and a
//! sink outage of a minute. The search over what was shipped (`OpenSearchLogs`, what
//! `GET /v1/logs` answers on AWS) finds lines by field, phrase, range and page.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portico_core::logs::{LogSearch, LogStore};
use portico_core::ports::PageRequest;
use portico_testkit::opensearch::OpenSearchStandIn;

use crate::helpers::run_portico;
use serde_json::{Value, json};

/// A line as `portico worker` writes it (JSON, fields at the top level).
fn json_line(n: usize, tag: &str) -> String {
    let level = if n % 10 == 3 { "ERROR" } else { "INFO" };
    json!({
        "timestamp": format!("2026-12-01T10:{:02}:{:02}.{:03}Z", (n / 60) % 60, n % 60, n % 1000),
        "level": level,
        "target": "portico_app::worker",
        "message": format!("{tag} line {n}"),
        "function": if n.is_multiple_of(2) { "process_upload" } else { "send_email" },
        "serial": format!("SN-{}", n % 7),
        "duration_ms": n,
    })
    .to_string()
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file");
    for line in lines {
        writeln!(file, "{line}").expect("writing");
    }
    file.sync_all().expect("sync");
}

fn lines(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| json_line(n, tag)).collect()
}

/// `portico ship-logs` in the background, its own logs to a file.
fn shipper(data_dir: &Path, args: &[&str]) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("shipper.out"))
        .expect("shipper log");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("ship-logs")
        .args(args)
        .args(["--poll", "50ms"])
        .env("PORTICO_DATA_DIR", data_dir)
        .env("PORTICO_LOG", "info")
        .env("PORTICO_LOG_FORMAT", "json")
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("portico ship-logs starts")
}

/// The messages the stand-in holds, by how often each is there (each should be once).
fn messages(cluster: &OpenSearchStandIn) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for doc in cluster.docs().values() {
        *seen.entry(doc["message"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
    }
    seen
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expect_exactly(cluster: &OpenSearchStandIn, expected: &[String]) {
    let seen = messages(cluster);
    let wanted: Vec<String> = expected
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for message in &wanted {
        assert_eq!(seen.get(message), Some(&1), "{message} should be there once");
    }
    assert_eq!(seen.len(), wanted.len(), "nothing else is there");
}

#[tokio::test]
async fn lines_arrive_once_through_rotation_truncation_and_a_kill_between_ack_and_checkpoint() {
    let cluster = OpenSearchStandIn::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("worker.log");
    let glob = format!("{}/worker.log*", logs.path().display());
    let args = ["--opensearch", cluster.url.as_str(), glob.as_str()];
    let mut expected = Vec::new();

    let first = lines("first", 0..100);
    append(&log, first.clone());
    expected.extend(first);
    let mut child = shipper(data.path(), &args);
    wait_for("the first lines", Duration::from_secs(30), || messages(&cluster).len() == 100).await;
    assert!(
        cluster.templates().contains_key("portico-logs"),
        "the index template is installed first: {:?}",
        cluster.templates().keys()
    );

    // Rotation: the file is renamed (its writer still appends a few lines) and a new one begun.
    std::fs::rename(&log, logs.path().join("worker.log.1")).expect("rename");
    let late = lines("late", 0..10);
    append(&logs.path().join("worker.log.1"), late.clone());
    let second = lines("second", 0..50);
    append(&log, second.clone());
    expected.extend(late.into_iter().chain(second));
    wait_for("the rotated lines", Duration::from_secs(30), || messages(&cluster).len() == 160)
        .await;

    // Copytruncate: a copy keeps the old lines (already shipped), the file starts again.
    std::fs::copy(&log, logs.path().join("worker.log.2")).expect("copy");
    std::fs::OpenOptions::new().write(true).truncate(true).open(&log).expect("truncate");
    let third = lines("third", 0..20);
    append(&log, third.clone());
    expected.extend(third);
    wait_for("the lines after the truncation", Duration::from_secs(30), || {
        messages(&cluster).len() == 180
    })
    .await;
    expect_exactly(&cluster, &expected);

    // The cluster takes a batch but its answer never comes; the shipper is killed -9 before it
    // could checkpoint. After the restart the batch goes again and is not stored twice.
    cluster.swallow_answers(true);
    let fourth = lines("fourth", 0..30);
    append(&log, fourth.clone());
    expected.extend(fourth);
    wait_for("the swallowed batch", Duration::from_secs(30), || messages(&cluster).len() == 210)
        .await;
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
    cluster.swallow_answers(false);
    let fifth = lines("fifth", 0..5);
    append(&log, fifth.clone());
    expected.extend(fifth);
    let requests_before = cluster.bulk_requests();
    let mut child = shipper(data.path(), &args);
    wait_for("the lines after the restart", Duration::from_secs(30), || {
        messages(&cluster).len() == 215
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_exactly(&cluster, &expected);
    assert!(cluster.bulk_requests() > requests_before, "the unacknowledged batch went again");

    // The checkpoint says where each file was read to, by fingerprint.
    let checkpoints: Value = serde_json::from_slice(
        &std::fs::read(data.path().join("ship-logs/checkpoints.json")).expect("checkpoints"),
    )
    .expect("json");
    assert!(checkpoints["files"].as_object().is_some_and(|f| f.len() >= 3), "{checkpoints}");

    // A second shipper on the same state is refused, not run beside the first.
    let second =
        run_portico(data.path(), &["ship-logs", "--once", "--opensearch", &cluster.url, &glob])
            .await;
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another portico ship-logs"));
    child.start_kill().expect("stop");
}

#[tokio::test]
async fn a_sink_outage_of_a_minute_loses_and_repeats_nothing() {
    let cluster = OpenSearchStandIn::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("api.log");
    let glob = format!("{}/*.log", logs.path().display());
    let mut expected = lines("before", 0..20);
    append(&log, expected.clone());
    let mut child = shipper(data.path(), &["--opensearch", cluster.url.as_str(), glob.as_str()]);
    wait_for("the first lines", Duration::from_secs(30), || messages(&cluster).len() == 20).await;

    // Half a minute of 503s, then half a minute of refused connections; lines keep coming.
    cluster.unavailable_for(Duration::from_secs(30));
    for step in 0..6 {
        let during = lines(&format!("during{step}"), 0..25);
        append(&log, during.clone());
        expected.extend(during);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    cluster.go_away();
    for step in 6..12 {
        let during = lines(&format!("during{step}"), 0..25);
        append(&log, during.clone());
        expected.extend(during);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(messages(&cluster).len(), 20, "nothing got in during the outage");
    cluster.resume().await;
    wait_for("the lines of the outage", Duration::from_secs(60), || {
        messages(&cluster).len() == expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_exactly(&cluster, &expected);
    child.start_kill().expect("stop");
}

#[tokio::test]
async fn refused_lines_are_dead_lettered_with_the_reason_and_the_rest_go_on() {
    let cluster = OpenSearchStandIn::start().await;
    // The first line of a file is at offset 0: its id ends in "-0".
    cluster.refuse_ids_ending_with("-0");
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    append(&logs.path().join("a.log"), lines("a", 0..5));
    let glob = format!("{}/*.log", logs.path().display());
    let out =
        run_portico(data.path(), &["ship-logs", "--once", "--opensearch", &cluster.url, &glob])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(messages(&cluster).len(), 4);
    let dead = std::fs::read_to_string(data.path().join("ship-logs/dead-letters.ndjson"))
        .expect("dead letters");
    let dead: Vec<Value> = dead.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]["reason"].as_str().is_some_and(|r| r.contains("400")), "{dead:?}");
    assert!(dead[0]["line"].as_str().is_some_and(|l| l.contains("a line 0")), "{dead:?}");
}

#[tokio::test]
async fn shipped_lines_are_searched_in_opensearch_as_on_aws() {
    let cluster = OpenSearchStandIn::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    append(&logs.path().join("w.log"), lines("worker", 0..30));
    append(&logs.path().join("w.log"), ["plain text: pump pressure too high".to_string()]);
    let glob = format!("{}/*.log", logs.path().display());
    let out =
        run_portico(data.path(), &["ship-logs", "--once", "--opensearch", &cluster.url, &glob])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = cluster.docs();
    let (index, _) = docs.keys().next().expect("a document");
    assert_eq!(index, "portico-logs-2026.12.01", "daily index by the line's own time");

    let store = portico_logs::opensearch::OpenSearchLogs::new(
        portico_logs::opensearch::Cluster::new(
            &cluster.url,
            portico_logs::opensearch::Auth::None,
            Duration::from_secs(5),
        )
        .expect("cluster"),
        "portico-logs",
    );
    let search = |q: &str| LogSearch {
        query: portico_core::logs::parse(q).expect("query"),
        from_ms: None,
        to_ms: None,
    };
    let page = PageRequest { limit: 100, cursor: None };
    let found = |hits: Vec<portico_core::logs::LogHit>| -> Vec<String> {
        hits.into_iter().map(|h| h.line.message).collect()
    };
    let errors = found(
        store
            .search(&search("level:error AND function:send_email"), &page)
            .await
            .expect("search")
            .items,
    );
    assert_eq!(errors, ["worker line 23", "worker line 13", "worker line 3"], "newest first");
    let slow = found(
        store
            .search(&search("duration_ms:>=27 AND serial:SN-0"), &page)
            .await
            .expect("search")
            .items,
    );
    assert_eq!(slow, ["worker line 28"]);
    let hits = store.search(&search("\"pump pressure\""), &page).await.expect("search").items;
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].highlight.as_deref(),
        Some("plain text: <mark>pump pressure</mark> too high")
    );
    assert!(hits[0].line.fields["log_file"].as_str().is_some_and(|f| f.ends_with("w.log")));

    // Pages continue where the last one ended, and a tail reads forward.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .search(&search("function:process_upload"), &PageRequest { limit: 4, cursor })
            .await
            .expect("page");
        seen.extend(found(page.items));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 15);
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 15, "no line on two pages");
    let first = store.after(&search("serial:SN-1"), None, 2).await.expect("tail");
    let next = store.after(&search("serial:SN-1"), Some(&first[1].id), 10).await.expect("tail");
    assert_eq!(found(first), ["worker line 1", "worker line 8"]);
    assert_eq!(found(next), ["worker line 15", "worker line 22", "worker line 29"]);
}

#[tokio::test]
async fn ship_logs_fills_a_portico_log_store_once() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("worker.log");
    append(&log, lines("stored", 0..40));
    append(&log, [format!("{{\"level\":\"WARN\",\"message\":\"{}\"}}", "x".repeat(300_000))]);
    append(&log, ["not json at all".to_string()]);
    let glob = format!("{}/*.log", logs.path().display());
    let out = run_portico(data.path(), &["ship-logs", "--once", &glob]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Once more from a lost checkpoint: the store keeps each line once all the same.
    std::fs::remove_file(data.path().join("ship-logs/checkpoints.json")).expect("checkpoints");
    let out = run_portico(data.path(), &["ship-logs", "--once", &glob]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let search = |query: &str| {
        let query = query.to_string();
        let dir = data.path().to_path_buf();
        async move {
            let out =
                run_portico(&dir, &["logs", "search", &query, "--json", "--limit", "200"]).await;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json"))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("log_file:*").await.len(), 42, "every line once");
    let errors = search("level:ERROR AND serial:SN-3").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["message"], "stored line 3");
    assert_eq!(errors[0]["timestamp_ms"], 1_796_119_203_003_i64, "the line's own time");
    let long = search("truncated:true").await;
    assert_eq!(long.len(), 1);
    assert_eq!(long[0]["level"], "INFO", "a cut line is no JSON any more: kept as text");
    let plain = search("\"not json\"").await;
    assert_eq!(plain.len(), 1);
}
