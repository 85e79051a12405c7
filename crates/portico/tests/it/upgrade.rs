//! Upgrades: a data dir made by the previous release (`tests/fixtures/data-dir-b5f46e1`, see its
//! README) is migrated by this binary, which says so, and everything in it is still there and
//! still works; a data dir from a newer Portico is refused before anything in it changes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{ADMIN_GROUP, run_portico, start_binary, test_config};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data-dir-b5f46e1");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn token(data_dir: &Path, sub: &str, groups: &[&str]) -> String {
    let config = test_config(data_dir, &[]);
    portico_local::load_dev_issuer(&config)
        .expect("the data dir's issuer")
        .mint(&portico_auth::TokenRequest {
            sub: sub.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ttl: Duration::from_secs(600),
        })
        .expect("token")
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    let response = client.get(&url).bearer_auth(token).send().await.expect("sent");
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.expect("json")
}

fn schema_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_previous_release_is_migrated_and_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(Path::new(FIXTURE), dir.path());
    let before = schema_version(&dir.path().join("portico.db"));

    let (mut child, base, log) = start_binary(dir.path()).await;
    let after = schema_version(&dir.path().join("portico.db"));
    assert!(after > before, "migrated from {before} to {after}");
    let upgraded = format!("database schema upgraded from version {before} to {after}");
    let said = log.lock().expect("log").clone();
    assert!(said.iter().any(|l| l.contains(&upgraded)), "{said:#?}");

    let client = reqwest::Client::new();
    let admin = token(dir.path(), "admin@portico.example", &[ADMIN_GROUP]);
    let accounts = get(&client, format!("{base}/v1/accounts?limit=200"), &admin).await;
    let numbers: Vec<(&str, &str)> = accounts["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| (a["account_number"].as_str().unwrap_or(""), a["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        numbers,
        [
            ("100000", "Acme Research Labs"),
            ("100001", "Globex Diagnostics"),
            ("100002", "Initech Distribution"),
            ("100003", "Upgrade Labs"),
        ]
    );
    // The sequence goes on after the last number it gave: none is given twice.
    let created = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "After Upgrade", "kind": "customer"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["account_number"], "100004");

    // The upload made before the upgrade is ready, and its file downloads.
    let carol = token(dir.path(), "carol@acme.example", &[]);
    let documents = get(&client, format!("{base}/v1/documents"), &carol).await;
    let document = &documents["items"][0];
    assert_eq!(
        (document["filename"].as_str(), document["status"].as_str()),
        (Some("run 1.csv"), Some("ready"))
    );
    let view = get(
        &client,
        format!("{base}/v1/documents/{}", document["id"].as_str().expect("id")),
        &carol,
    )
    .await;
    let download = view["download_url"].as_str().expect("download url");
    let url =
        if download.starts_with('/') { format!("{base}{download}") } else { download.to_string() };
    let body = client.get(url).send().await.expect("sent").text().await.expect("text");
    assert!(body.starts_with("timestamp,sample,absorbance"), "{body}");

    // The alert raised before the upgrade is still the lab manager's.
    let bob = token(dir.path(), "bob@acme.example", &[]);
    let notifications = get(&client, format!("{base}/v1/notifications"), &bob).await;
    assert!(
        notifications["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|n| n["body"] == "Pump pressure too high"),
        "{notifications}"
    );

    child.kill().await.expect("stopped");
    let _ = child.wait().await;
    // The audit chain runs unbroken from the old records through the new ones.
    let verify = run_portico(dir.path(), &["audit", "verify"]).await;
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[tokio::test]
async fn a_data_dir_of_a_newer_portico_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(Path::new(FIXTURE), dir.path());
    let db = dir.path().join("portico.db");
    let newer = 1_000;
    rusqlite::Connection::open(&db)
        .expect("open")
        .pragma_update(None, "user_version", newer)
        .expect("set version");
    let listing = |dir: &Path| {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.clone(), std::fs::read(&path).expect("read")));
                }
            }
        }
        out.sort();
        out
    };
    let before = listing(dir.path());

    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("serve")
            .env("PORTICO_DATA_DIR", dir.path())
            .env("PORTICO_HTTP_ADDR", "127.0.0.1:0")
            .env("PORTICO_METRICS_ADDR", "127.0.0.1:0")
            .env("PORTICO_MQTT_ADDR", "127.0.0.1:0")
            .env("PORTICO_MQTT_WS_ADDR", "127.0.0.1:0")
            .env("PORTICO_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits by itself")
    .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("schema (version {newer}) is newer than this Portico")),
        "{stderr}"
    );
    assert_eq!(schema_version(&db), newer);
    // Nothing else in the data dir was written either (the log store and warehouse open later).
    let after: Vec<_> = listing(dir.path())
        .into_iter()
        .filter(|(p, _)| {
            !p.to_string_lossy().ends_with("-shm") && !p.to_string_lossy().ends_with("-wal")
        })
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| {
            !p.to_string_lossy().ends_with("-shm") && !p.to_string_lossy().ends_with("-wal")
        })
        .collect();
    assert_eq!(
        after.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        before.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, new), (_, old)) in after.iter().zip(&before) {
        if !path.ends_with("portico.db") && !path.ends_with("logs.db") {
            assert!(new == old, "{} changed", path.display());
        }
    }
}
