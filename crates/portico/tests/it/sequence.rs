//! Account numbers under concurrency and crashes: unique, increasing in real-time order, never
//! reused after `kill -9`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_GROUP, get_json, spawn_app, start_binary, test_config};

struct Created {
    sent: Instant,
    answered: Instant,
    number: u64,
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> Option<(u64, String)> {
    let response = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(token)
        .json(&json!({"name": name, "kind": "customer"}))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::CREATED {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    let number = body["account_number"].as_str()?.parse().ok()?;
    Some((number, body["id"].as_str()?.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creation_gives_unique_increasing_numbers() {
    const CLIENTS: usize = 64;
    const EACH: usize = 32;
    let app = spawn_app().await;
    let token = Arc::new(app.admin_token());
    let base = Arc::new(app.url(""));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (token, base) = (token.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            // Each task is its own client with its own connection.
            let client = reqwest::Client::new();
            let mut created = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let sent = Instant::now();
                let (number, _) =
                    create(&client, &base, &token, &format!("Lab {c}-{i}")).await.expect("created");
                created.push(Created { sent, answered: Instant::now(), number });
            }
            created
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    assert_eq!(all.len(), CLIENTS * EACH);
    let unique: HashSet<u64> = all.iter().map(|c| c.number).collect();
    assert_eq!(unique.len(), all.len(), "duplicate account numbers");

    // Real-time order: a request sent after another one was answered gets a larger number.
    all.sort_by_key(|c| c.answered);
    let mut max_answered_before = Vec::with_capacity(all.len());
    let mut max = 0;
    for c in &all {
        max = max.max(c.number);
        max_answered_before.push((c.answered, max));
    }
    for c in &all {
        let earlier = max_answered_before.partition_point(|(answered, _)| *answered < c.sent);
        if earlier > 0 {
            let (_, highest) = max_answered_before[earlier - 1];
            assert!(
                c.number > highest,
                "number {} issued after {} was already answered",
                c.number,
                highest
            );
        }
    }

    // And the store agrees: every account once, numbers ascending in creation order.
    let accounts = app.every_item("/v1/accounts?limit=200", &token).await;
    let numbers: Vec<u64> = accounts
        .iter()
        .map(|a| a["account_number"].as_str().unwrap_or("").parse().expect("number"))
        .collect();
    assert_eq!(numbers.len(), CLIENTS * EACH);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "numbers ascend in creation order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_never_makes_a_number_repeat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, _) = start_binary(dir.path()).await;
    let config = test_config(dir.path(), &[]);
    let issuer = portico_local::load_dev_issuer(&config).expect("the data dir's issuer");
    let token = Arc::new(
        issuer
            .mint(&portico_auth::TokenRequest {
                sub: "admin@portico.example".into(),
                groups: vec![ADMIN_GROUP.into()],
                ttl: Duration::from_secs(600),
            })
            .expect("token"),
    );

    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(u64, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..32 {
        let (token, base, acknowledged, count, dead) =
            (token.clone(), base.clone(), acknowledged.clone(), count.clone(), dead.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            // Bounded: at most 200 attempts per client, and it stops once the server is gone.
            for i in 0..200 {
                if dead.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(created) =
                    create(&client, &base, &token, &format!("Crash {c}-{i}")).await
                {
                    acknowledged.lock().expect("lock").push(created);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    dead.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("task");
    }
    let before = acknowledged.lock().expect("lock").clone();
    assert!(before.len() >= 300, "load reached the server before the kill");

    let (_child, base, _) = start_binary(dir.path()).await;
    let client = reqwest::Client::new();
    let mut after = Vec::new();
    for i in 0..50 {
        after.push(
            create(&client, &base, &token, &format!("After {i}"))
                .await
                .expect("created after restart"),
        );
    }
    let max_before = before.iter().map(|(n, _)| *n).max().expect("some");
    assert!(
        after.iter().all(|(n, _)| *n > max_before),
        "a number issued before the crash came again"
    );
    let mut seen = HashSet::new();
    for (number, _) in before.iter().chain(after.iter()) {
        assert!(seen.insert(*number), "number {number} issued twice");
    }

    // Every acknowledged account survived the crash.
    let mut stored = HashSet::new();
    let mut path = "/v1/accounts?limit=200".to_string();
    loop {
        let page = get_json(&client, &format!("{base}{path}"), &token).await;
        for account in page["items"].as_array().expect("items") {
            stored.insert(account["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/accounts?limit=200&cursor={cursor}"),
            None => break,
        }
    }
    for (number, id) in &before {
        assert!(stored.contains(id), "acknowledged account {number} lost in the crash");
    }
}
