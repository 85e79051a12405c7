//! The log store from a running `portico serve --demo`: what an instrument's event caused is
//! found by serial and by request id, with `portico logs search` and `GET /v1/logs`.

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{Value, json};

use crate::helpers::start_binary_args;
use crate::mqtt_client::{Connect, connect};

/// Runs `portico` with `args` on the data dir (the same configuration as the server).
async fn portico(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = crate::helpers::run_portico(data_dir, args).await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// `portico logs search QUERY --json`, polled until it finds something.
async fn found(data_dir: &std::path::Path, query: &str) -> Vec<Value> {
    for _ in 0..100 {
        let (ok, out, err) = portico(data_dir, &["logs", "search", query, "--json"]).await;
        assert!(ok, "{err}");
        let lines: Vec<Value> =
            out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        if !lines.is_empty() {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("nothing found for {query}");
}

#[tokio::test]
async fn an_instruments_event_and_its_invocation_are_found_by_serial_and_request_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_child, base, log) = start_binary_args(dir.path(), &["serve", "--demo"], &[]).await;

    // The demo's guide: commands a person can paste, kept owner-only beside the data.
    let guide_path = dir.path().join("demo.txt");
    let guide = std::fs::read_to_string(&guide_path).expect("demo.txt");
    assert!(guide.contains("--sub bob@acme.example"), "{guide}");
    let command = guide
        .lines()
        .find(|l| l.contains("mosquitto_pub") && l.contains("SN-ACME-001"))
        .expect("a command");
    assert!(
        command.contains(r#"-m '{"severity":"critical","#) && !command.contains('\\'),
        "{command}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&guide_path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    // The demo's instrument line is in the store (it was logged before the listeners).
    let demo = found(dir.path(), r#"serial:SN-ACME-001 AND "demo instrument""#).await;
    let message = demo[0]["message"].as_str().expect("message");
    let secret = message.split(" -P ").nth(1).and_then(|r| r.split(' ').next()).expect("secret");
    let mqtt = loop {
        let lines = log.lock().expect("log").clone();
        if let Some(addr) = lines.iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["listener"] == "mqtt").then(|| v["addr"].as_str().map(str::to_string)).flatten()
        }) {
            break addr.parse().expect("an address");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let instrument = connect(Connect::tcp(mqtt, "SN-ACME-001", "SN-ACME-001", secret))
        .await
        .expect("the instrument connects");
    let event =
        json!({"severity": "critical", "message": "Pump pressure too high", "event_id": "log-1"});
    instrument
        .publish(
            "instruments/SN-ACME-001/events",
            QoS::AtLeastOnce,
            false,
            event.to_string().as_bytes(),
        )
        .await;

    // By serial: the invocation the event caused, with its request id.
    let invocations = found(dir.path(), r#"serial:SN-ACME-001 AND "rule invocation""#).await;
    let invocation = &invocations[0];
    assert_eq!(invocation["function"], "instrument_alert");
    let request_id = invocation["request_id"].as_str().expect("a request id").to_string();
    // By request id: exactly that invocation.
    let by_id = found(dir.path(), &format!("request_id:{request_id}")).await;
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0]["serial"], "SN-ACME-001");
    // And what the function logged.
    let alert = found(dir.path(), r#"serial:SN-ACME-001 AND "instrument alert""#).await;
    assert_eq!(alert[0]["severity"], "critical");
    // The human form, and a query that does not parse.
    let (ok, human, _) =
        portico(dir.path(), &["logs", "search", &format!("request_id:{request_id}")]).await;
    assert!(
        ok && human.contains("rule invocation") && human.contains("function=instrument_alert"),
        "{human}"
    );
    let (ok, _, err) = portico(dir.path(), &["logs", "search", "level:(ERROR"]).await;
    assert!(!ok && err.contains("at character"), "{err}");
    let (ok, tail, _) = portico(dir.path(), &["logs", "tail", "function:instrument_alert"]).await;
    assert!(ok && tail.contains(&request_id), "{tail}");

    // Through the API: support may search, with hits marked; members may not; bad queries are 400.
    let (_, support, _) = portico(
        dir.path(),
        &["token", "--sub", "support@portico.example", "--groups", "portico-support"],
    )
    .await;
    let (_, carol, _) = portico(dir.path(), &["token", "--sub", "carol@acme.example"]).await;
    let client = reqwest::Client::new();
    let get = |token: String, query: &'static str| {
        let client = client.clone();
        let url = reqwest::Url::parse_with_params(
            &format!("{base}/v1/logs"),
            &[("q", query), ("from", "1h")],
        )
        .expect("url");
        async move {
            let response = client.get(url).bearer_auth(token.trim()).send().await.expect("sent");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, page) = get(support.clone(), "pressure AND serial:SN-ACME-001").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{page}");
    assert!(
        items.iter().any(|h| h["highlight"].as_str().is_some_and(|m| m
            .contains("<mark>pressure</mark>")
            || m.contains("<mark>Pressure</mark>"))),
        "{page}"
    );
    let (status, problem) = get(support.clone(), "level:(ERROR").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "q");
    assert!(
        problem["errors"][0]["message"].as_str().is_some_and(|m| m.contains("at character")),
        "{problem}"
    );
    let (status, _) = get(carol, "level:ERROR").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
