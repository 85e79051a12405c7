//! Documents: upload URL -> signed PUT -> S3-shaped event -> worker -> ready (or failed), and
//! every way a client can get it wrong.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, get_json, id, kinds, post_json, put, request, settled, spawn_app, spawn_app_with,
};

const RUN_CSV: &str = "timestamp,sample,absorbance\n2026-11-27T10:00:00Z,A1,0.12\n2026-11-27T10:05:00Z,A2,0.34\n2026-11-27T10:10:00Z,A3,0.56\n";

struct Uploader {
    token: String,
}

impl Uploader {
    /// Asks to upload a CSV file of `size` bytes: the ticket's upload URL and document id.
    async fn ticket(&self, app: &TestApp, filename: &str, size: usize) -> (String, String) {
        let (status, ticket) = request(app, &self.token, filename, "text/csv", size).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        let field = |name: &str| ticket[name].as_str().expect(name).to_string();
        (field("upload_url"), field("document_id"))
    }

    /// Uploads `body` as `filename` and waits until the worker is done with it.
    async fn upload(
        &self,
        app: &TestApp,
        filename: &str,
        content_type: &str,
        body: &[u8],
    ) -> Value {
        upload(app, &self.token, filename, content_type, body).await
    }
}

async fn scientist(app: &TestApp) -> Uploader {
    let acme = app.create_account("Acme").await;
    Uploader { token: app.add_user(&acme, "carol@acme.example", &["scientist"]).await }
}

async fn upload(
    app: &TestApp,
    token: &str,
    filename: &str,
    content_type: &str,
    body: &[u8],
) -> Value {
    let (status, ticket) = request(app, token, filename, content_type, body.len()).await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let url = ticket["upload_url"].as_str().expect("upload url");
    let (status, stored) = put(app, url, content_type, body.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    settled(app, token, ticket["document_id"].as_str().expect("id")).await
}

#[tokio::test]
async fn a_run_file_becomes_ready_with_what_is_in_it() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    let doc = carol.upload(&app, "run 42.csv", "text/csv", RUN_CSV.as_bytes()).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let meta = &doc["metadata"];
    assert_eq!(meta["size"], RUN_CSV.len());
    assert_eq!(meta["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(meta["csv"]["rows"], 3);
    assert_eq!(meta["csv"]["columns"], json!(["timestamp", "sample", "absorbance"]));
    assert_eq!(meta["csv"]["first_timestamp"], "2026-11-27T10:00:00Z");
    assert_eq!(meta["csv"]["last_timestamp"], "2026-11-27T10:10:00Z");

    // The bytes come back through the signed download link, unchanged.
    let download = doc["download_url"].as_str().expect("download url");
    let response = app.client.get(download).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/csv");
    assert_eq!(response.text().await.expect("body"), RUN_CSV);
    let tampered = download.replace("sig=", "sig=00");
    assert_eq!(
        app.client.get(&tampered).send().await.expect("sent").status(),
        StatusCode::FORBIDDEN
    );

    // The uploader is told; the list shows it.
    let (_, notes) = app.get("/v1/notifications", &carol.token).await;
    assert_eq!(kinds(&notes), vec!["document_ready"]);
    let (_, list) = app.get("/v1/documents", &carol.token).await;
    assert_eq!(list["items"][0]["id"], doc["id"]);

    // Other accounts cannot see it.
    let globex = app.create_account("Globex").await;
    let dan = app.add_user(&globex, "dan@globex.example", &["lab_manager"]).await;
    let (status, _) =
        app.get(&format!("/v1/documents/{}", doc["id"].as_str().expect("id")), &dan).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn broken_files_end_failed_with_a_reason() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    let ragged = carol.upload(&app, "ragged.csv", "text/csv", b"a,b,c\n1,2,3\n4,5\n").await;
    assert_eq!(ragged["status"], "failed");
    assert!(ragged["failure_reason"].as_str().is_some_and(|r| r.contains("row 3")), "{ragged}");
    let junk = carol.upload(&app, "junk.csv", "text/csv", b"\x00\x01\x02\xff\xfe binary").await;
    assert_eq!(junk["status"], "failed", "{junk}");
    let pdf = carol.upload(&app, "report.pdf", "application/pdf", b"%PDF-1.7\n...").await;
    assert_eq!(pdf["status"], "ready");
    assert_eq!(pdf["metadata"]["sniffed_type"], "application/pdf");
    let (_, notes) = app.get("/v1/notifications", &carol.token).await;
    let seen = kinds(&notes);
    assert_eq!(seen.iter().filter(|k| **k == "document_failed").count(), 2);
}

#[tokio::test]
async fn bad_requests_and_bad_uploads_are_refused_and_lose_nothing() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    for (filename, content_type, size) in [
        ("../../etc/passwd", "text/csv", 10),
        ("/abs/run.csv", "text/csv", 10),
        ("nul\u{0}.csv", "text/csv", 10),
        ("run.csv", "not a type", 10),
        ("run.csv", "text/csv", 0),
        ("run.csv", "text/csv", 2_000_000_000_000),
    ] {
        let (status, problem) = request(&app, &carol.token, filename, content_type, size).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{filename:?} {content_type} {size}: {problem}"
        );
    }
    // Platform staff without an account have nowhere to upload to.
    let (status, _) = request(&app, &app.admin_token(), "run.csv", "text/csv", 10).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let body = RUN_CSV.as_bytes().to_vec();
    let (_, ticket) = request(&app, &carol.token, "run.csv", "text/csv", body.len()).await;
    let url = ticket["upload_url"].as_str().expect("url").to_string();
    let (_, other) = request(&app, &carol.token, "other.csv", "text/csv", body.len()).await;
    let other_id = other["document_id"].as_str().expect("id");
    let this_id = ticket["document_id"].as_str().expect("id");

    let mut too_big = body.clone();
    too_big.extend_from_slice(b"2026-11-27T10:15:00Z,A4,0.78\n");
    let cases: Vec<(String, &str, Vec<u8>, StatusCode)> = vec![
        (url.replace("sig=", "sig=ab"), "text/csv", body.clone(), StatusCode::FORBIDDEN),
        (
            url.replace(&format!("size={}", body.len()), &format!("size={}", body.len() + 100)),
            "text/csv",
            body.clone(),
            StatusCode::FORBIDDEN,
        ),
        (url.replace(this_id, other_id), "text/csv", body.clone(), StatusCode::FORBIDDEN),
        (
            url.split('?').next().expect("path").to_string(),
            "text/csv",
            body.clone(),
            StatusCode::FORBIDDEN,
        ),
        (url.clone(), "text/plain", body.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (url.clone(), "text/csv", too_big, StatusCode::PAYLOAD_TOO_LARGE),
        (url.clone(), "text/csv", body[..10].to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (target, content_type, payload, expected) in cases {
        let (status, problem) = put(&app, &target, content_type, payload).await;
        assert_eq!(status, expected, "{target}: {problem}");
    }
    // Nothing half-written is visible: the document still waits, and the right upload works.
    let (_, doc) = app.get(&format!("/v1/documents/{this_id}"), &carol.token).await;
    assert_eq!(doc["status"], "pending");
    assert!(doc["download_url"].is_null());
    let (status, _) = put(&app, &url, "text/csv", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled(&app, &carol.token, this_id).await["status"], "ready");
    // A second upload to the same link is a conflict, not an overwrite.
    let (status, _) = put(&app, &url, "text/csv", body).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// Sends the head of a PUT and the first `sent` bytes of `body` over a raw socket, leaving the
/// rest for later: a slow client in the middle of its upload.
async fn slow_put(
    url: &str,
    content_type: &str,
    body: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connects");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nIf-None-Match: *\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body[..sent]).await.expect("first bytes");
    stream.flush().await.expect("flush");
    stream
}

/// Finishes a `slow_put` and reads the status code of its answer.
async fn finish_slow_put(mut stream: tokio::net::TcpStream, rest: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(rest).await.expect("rest of the body");
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.expect("answer");
    let line = String::from_utf8_lossy(&answer[..n]);
    line.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line")
}

#[tokio::test]
async fn an_upload_link_stores_one_file_once() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    let first = RUN_CSV.as_bytes().to_vec();
    let (url, doc_id) = carol.ticket(&app, "run.csv", first.len()).await;
    // The same length, other bytes: what an attacker would swap in.
    let swapped: Vec<u8> = RUN_CSV.replace("0.12", "9.99").into_bytes();
    assert_eq!(swapped.len(), first.len());

    let slow = slow_put(&url, "text/csv", &swapped, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the slow PUT holds the link, another is a conflict that changes nothing.
    let (status, problem) = put(&app, &url, "text/csv", first.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(finish_slow_put(slow, &swapped[10..]).await, 200);
    let doc = settled(&app, &carol.token, &doc_id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    // After the check, the link stores nothing more, in one go or slowly.
    let (status, _) = put(&app, &url, "text/csv", first.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let late = slow_put(&url, "text/csv", &first, 10).await;
    assert_eq!(finish_slow_put(late, &first[10..]).await, 409);
    // The stored bytes are the ones the worker checked.
    let download = doc["download_url"].as_str().expect("download url");
    let stored =
        app.client.get(download).send().await.expect("download").bytes().await.expect("bytes");
    assert_eq!(stored.as_ref(), swapped.as_slice());
    // And the recorded checksum is theirs: the same bytes uploaded anew give the same one.
    let twin = carol.upload(&app, "twin.csv", "text/csv", &swapped).await;
    assert_eq!(doc["metadata"]["sha256"], twin["metadata"]["sha256"]);
}

#[tokio::test]
async fn a_failed_or_abandoned_upload_frees_its_link() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    let body = RUN_CSV.as_bytes().to_vec();
    let (url, doc_id) = carol.ticket(&app, "run.csv", body.len()).await;
    // A client that goes away mid-body leaves the document pending, not stuck.
    let abandoned = slow_put(&url, "text/csv", &body, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(abandoned);
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, doc) = app.get(&format!("/v1/documents/{doc_id}"), &carol.token).await;
        status = doc["status"].clone();
        if status == "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "pending");
    let (status, _) = put(&app, &url, "text/csv", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled(&app, &carol.token, &doc_id).await["status"], "ready");
}

#[tokio::test]
async fn upload_links_expire() {
    let app = spawn_app_with(&[("PORTICO_DOCUMENTS_UPLOAD_URL_TTL_SECS", "1")]).await;
    let carol = scientist(&app).await;
    let (_, ticket) = request(&app, &carol.token, "run.csv", "text/csv", RUN_CSV.len()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, problem) = put(
        &app,
        ticket["upload_url"].as_str().expect("url"),
        "text/csv",
        RUN_CSV.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("expired")), "{problem}");
}

#[tokio::test]
async fn many_clients_upload_at_once() {
    let app = spawn_app().await;
    let carol = scientist(&app).await;
    let mut tasks = Vec::new();
    let app = std::sync::Arc::new(app);
    for n in 0..24 {
        let (app, token) = (app.clone(), carol.token.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!("timestamp,n\n2026-11-27T10:00:{n:02}Z,{n}\n");
            upload(&app, &token, &format!("run-{n}.csv"), "text/csv", body.as_bytes()).await
        }));
    }
    for task in tasks {
        let doc = task.await.expect("task");
        assert_eq!(doc["status"], "ready", "{doc}");
        assert_eq!(doc["metadata"]["csv"]["rows"], 1);
    }
    let (_, list) = app.get("/v1/documents?limit=200", &carol.token).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(24));
}

#[tokio::test]
async fn a_message_that_always_fails_is_dead_lettered_and_the_document_fails() {
    let app = spawn_app_with(&[
        ("PORTICO_WORKER_ENABLED", "false"),
        ("PORTICO_WORKER_VISIBILITY_TIMEOUT_SECS", "1"),
        ("PORTICO_WORKER_MAX_RECEIVES", "3"),
    ])
    .await;
    let carol = scientist(&app).await;
    let (_, ticket) = request(&app, &carol.token, "run.csv", "text/csv", RUN_CSV.len()).await;
    let document_id = ticket["document_id"].as_str().expect("id").to_string();
    let (status, _) = put(
        &app,
        ticket["upload_url"].as_str().expect("url"),
        "text/csv",
        RUN_CSV.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Make the stored object unreadable in a way no retry can fix: a symlink to itself.
    let objects = app.data_dir.join("objects").join("documents");
    let file = std::fs::read_dir(&objects)
        .expect("account dir")
        .next()
        .expect("entry")
        .expect("entry")
        .path()
        .join(&document_id);
    std::fs::remove_file(&file).expect("remove");
    std::os::unix::fs::symlink(&file, &file).expect("symlink loop");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(portico_local::worker::run(
        app.composition.clone(),
        portico_local::worker::WorkerSettings {
            concurrency: 1,
            visibility: Duration::from_secs(1),
            email_retry_base: Duration::from_millis(100),
            email_max_attempts: 3,
        },
        stop_rx,
    ));
    let doc = settled(&app, &carol.token, &document_id).await;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["failure_reason"].as_str().is_some_and(|r| r.contains("too many attempts")),
        "{doc}"
    );
    let stats =
        portico_core::Queue::stats(app.composition.context.queue.as_ref(), "document-uploads")
            .await
            .expect("stats");
    assert_eq!((stats.visible, stats.in_flight, stats.dead), (0, 0, 1));
    // And the metrics show it: three receives, three retries, processing time recorded.
    let q = "{queue=\"document-uploads\"}";
    assert!(
        app.metric(&format!("portico_queue_receives_total{q}")).await.is_some_and(|v| v >= 3.0)
    );
    assert!(app.metric(&format!("portico_queue_retries_total{q}")).await.is_some_and(|v| v >= 3.0));
    assert!(
        app.metric(&format!("portico_queue_processing_duration_seconds_count{q}"))
            .await
            .is_some_and(|v| v >= 3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_file_is_finished_once_by_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env =
        [("PORTICO_WORKER_ENABLED", "false"), ("PORTICO_WORKER_VISIBILITY_TIMEOUT_SECS", "2")];
    let (_server, base, _) = crate::helpers::start_binary_with(dir.path(), &env).await;
    let config = crate::helpers::test_config(dir.path(), &env);
    let issuer = portico_local::load_dev_issuer(&config).expect("issuer");
    let mint = |sub: &str, groups: &[&str]| {
        issuer
            .mint(&portico_auth::TokenRequest {
                sub: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ttl: Duration::from_secs(600),
            })
            .expect("token")
    };
    let client = reqwest::Client::new();
    let admin = mint("admin@portico.example", &["portico-admins"]);
    let account = json!({"name": "Acme", "kind": "customer"});
    let (_, account) = post_json(&client, &format!("{base}/v1/accounts"), &admin, account).await;
    let users = format!("{base}/v1/accounts/{}/users", id(&account));
    let carol = json!({"sub": "carol@acme.example", "email": "carol@acme.example", "display_name": "Carol", "roles": ["scientist"]});
    let (status, _) = post_json(&client, &users, &admin, carol).await;
    assert_eq!(status, StatusCode::CREATED);
    let carol = mint("carol@acme.example", &[]);

    // A run file big enough that checking it takes a while.
    let rows = 1_500_000;
    let mut body = String::from("timestamp,sample,value\n");
    for n in 0..rows {
        body.push_str(&format!("2026-11-27T10:{:02}:{:02}Z,S{n},0.{n}\n", (n / 60) % 60, n % 60));
    }
    let upload = json!({"filename": "big.csv", "content_type": "text/csv", "size": body.len()});
    let uploads = format!("{base}/v1/documents/uploads");
    let (_, ticket) = post_json(&client, &uploads, &carol, upload).await;
    let document_id = ticket["document_id"].as_str().expect("id").to_string();
    let put = client
        .put(ticket["upload_url"].as_str().expect("url"))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(put.status(), StatusCode::OK);

    let document_url = format!("{base}/v1/documents/{document_id}");
    let status = || get_json(&client, &document_url, &carol);
    let worker = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        command
            .arg("worker")
            .env("PORTICO_DATA_DIR", dir.path())
            .env("PORTICO_LOG", "warn")
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        command.stdout(std::process::Stdio::null()).spawn().expect("portico worker starts")
    };
    let mut first = worker();
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.start_kill().expect("SIGKILL");
    let _ = first.wait().await;
    let doc = status().await;
    assert_eq!(doc["status"], "processing", "the worker died before finishing: {doc}");

    let _second = worker();
    let mut doc = Value::Null;
    for _ in 0..600 {
        doc = status().await;
        if doc["status"] == "ready" || doc["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["metadata"]["csv"]["rows"], rows);
    let notes = get_json(&client, &format!("{base}/v1/notifications"), &carol).await;
    let ready = kinds(&notes).iter().filter(|k| **k == "document_ready").count();
    assert_eq!(ready, 1, "told exactly once");
}
