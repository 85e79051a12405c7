//! `portico backup` while the server takes writes, and `portico restore` into a new data dir:
//! every account acknowledged before the backup began is in the restored data dir with its
//! number, the restored server serves them (and the uploaded file), and a changed backup or a
//! non-empty target is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{put, request, run_portico, settled, spawn_app};

#[tokio::test]
async fn a_backup_under_writes_restores_every_acknowledged_account_and_refuses_tampering() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let body = b"sample,value\nA,1\n".to_vec();
    let (status, ticket) = request(&app, &carol, "run.csv", "text/csv", body.len()).await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let (status, _) =
        put(&app, ticket["upload_url"].as_str().expect("url"), "text/csv", body).await;
    assert_eq!(status, StatusCode::OK);
    let document_id = ticket["document_id"].as_str().expect("id").to_string();
    assert_eq!(settled(&app, &carol, &document_id).await["status"], "ready");

    // Accounts are created without pause while the backup runs (bounded: 3,000 at most).
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let writer = {
        let (client, url, token) = (app.client.clone(), app.url("/v1/accounts"), admin.clone());
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for n in 0..3_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"name": format!("Load {n}"), "kind": "customer"}))
                    .send()
                    .await;
                if let Ok(response) = sent
                    && response.status() == StatusCode::CREATED
                    && let Ok(account) = response.json::<serde_json::Value>().await
                {
                    let id = account["id"].as_str().unwrap_or_default().to_string();
                    let number = account["account_number"].as_str().unwrap_or_default().to_string();
                    acknowledged.lock().expect("lock").push((id, number, Instant::now()));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup");
    let began = Instant::now();
    let output = run_portico(&app.data_dir, &["backup", backup.to_str().expect("utf-8")]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let before: Vec<(String, String)> = acknowledged
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, _, at)| *at <= began)
        .map(|(id, number, _)| (id.clone(), number.clone()))
        .collect();
    assert!(before.len() >= 10, "the writer was writing when the backup began: {}", before.len());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.contains(&"portico.db") && paths.contains(&"auth/dev-issuer.pk8"), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("objects/")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.ends_with("-wal")), "{paths:?}");

    // Restored into a new data dir, a server there has every acknowledged account, numbered
    // as it was, and the uploaded file.
    let restored = dir.path().join("restored");
    let output = run_portico(&restored, &["restore", backup.to_str().expect("utf-8")]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = run_portico(&restored, &["restore", backup.to_str().expect("utf-8")]).await;
    assert!(!output.status.success(), "a second restore into the same data dir is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));
    drop(app);
    let again = portico_testkit::spawn_on(portico_testkit::test_config(&restored, &[])).await;
    let accounts = again.every_item("/v1/accounts?limit=200", &again.admin_token()).await;
    let numbers: std::collections::BTreeMap<String, String> = accounts
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().into(),
                a["account_number"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for (id, number) in &before {
        assert_eq!(numbers.get(id), Some(number), "account {id} is restored with its number");
    }
    let carol = again.token("carol@acme.example", &[]);
    let (status, document) = again.get(&format!("/v1/documents/{document_id}"), &carol).await;
    assert_eq!((status, &document["status"]), (StatusCode::OK, &json!("ready")), "{document}");
    let download = document["download_url"].as_str().expect("download url");
    let file = again.client.get(download).send().await.expect("download");
    assert_eq!(file.bytes().await.expect("bytes").as_ref(), b"sample,value\nA,1\n");

    // A backup changed after it was made is refused, naming the file.
    let mut bytes = std::fs::read(backup.join("portico.db")).expect("db");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(backup.join("portico.db"), bytes).expect("tamper");
    let output =
        run_portico(&dir.path().join("third"), &["restore", backup.to_str().expect("utf-8")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("portico.db") && stderr.contains("changed"), "{stderr}");
    assert!(!dir.path().join("third").exists(), "nothing is left of a refused restore");
}
