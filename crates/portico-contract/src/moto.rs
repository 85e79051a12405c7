//! moto (`moto_server`, PyPI `moto[server]`): the AWS stand-in the AWS adapters' tests talk to.
//!
//! The endpoint is `PORTICO_TEST_AWS_ENDPOINT` when set (`.ci/run` may start one for the run);
//! otherwise the first call starts a `moto_server` for this test process on a free loopback port.
//! Statics are never dropped, so a guard cannot stop it: a small shell watcher stops it once the
//! test process is gone. Tests keep apart by naming their own tables, queues, buckets.
//!
//! Tests reach moto through a small proxy that runs DynamoDB requests one at a time. DynamoDB
//! applies every single-item write atomically; moto serves requests on threads without a lock,
//! so two concurrent conditional updates of one item can both succeed there, and tests of
//! concurrent allocation would measure moto's race instead of Portico's logic. Other services pass
//! through unserialised (an SQS long poll must not hold up the send that ends it).
//!
//! The proxy can also make Kinesis refuse entries of `PutRecords` the way a throttled shard does
//! (`fail_kinesis_entries`): those entries are taken out of the request before moto sees it and
//! answered as `ProvisionedThroughputExceededException` in their places, so a producer that
//! resends only its failed entries is tested against the real partial-failure answer.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static MOTO: OnceLock<String> = OnceLock::new();
static PROXY: OnceLock<String> = OnceLock::new();
/// Entries still to refuse, per Kinesis stream name, and how many were refused so far.
static KINESIS_FAILURES: std::sync::Mutex<Vec<(String, usize, usize)>> =
    std::sync::Mutex::new(Vec::new());

/// How many `PutRecords` entries for `stream` the proxy has refused.
pub fn kinesis_entries_refused(stream: &str) -> usize {
    KINESIS_FAILURES
        .lock()
        .ok()
        .and_then(|f| f.iter().find(|(name, _, _)| name == stream).map(|(_, _, done)| *done))
        .unwrap_or(0)
}

/// Makes the next `entries` `PutRecords` entries for `stream` fail (in request order, across
/// calls).
pub fn fail_kinesis_entries(stream: &str, entries: usize) {
    if let Ok(mut failures) = KINESIS_FAILURES.lock() {
        failures.retain(|(name, _, _)| name != stream);
        failures.push((stream.to_string(), entries, 0));
    }
}

/// Takes out of a `PutRecords` body the entries to refuse now; answers the new body and the
/// indexes taken.
fn refuse_entries(body: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let stream = request.get("StreamName").and_then(|v| v.as_str())?.to_string();
    let mut failures = KINESIS_FAILURES.lock().ok()?;
    let left =
        failures.iter_mut().find(|(name, _, _)| *name == stream).filter(|(_, n, _)| *n > 0)?;
    let records = request.get_mut("Records")?.as_array_mut()?;
    let take = left.1.min(records.len());
    left.1 -= take;
    left.2 += take;
    let refused: Vec<usize> = (0..take).collect();
    records.drain(..take);
    Some((serde_json::to_vec(&request).ok()?, refused))
}

/// Puts refused entries back into moto's `PutRecords` answer, in their places.
fn with_refusals(answer: &[u8], refused: &[usize]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return answer.to_vec();
    };
    let mut accepted: Vec<serde_json::Value> =
        value.get("Records").and_then(|r| r.as_array()).cloned().unwrap_or_default();
    for &i in refused {
        let failure = serde_json::json!({
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream (test)",
        });
        accepted.insert(i.min(accepted.len()), failure);
    }
    let failed = accepted.iter().filter(|r| r.get("ErrorCode").is_some()).count();
    value["Records"] = serde_json::Value::Array(accepted);
    value["FailedRecordCount"] = serde_json::json!(failed);
    serde_json::to_vec(&value).unwrap_or_else(|_| answer.to_vec())
}

/// The endpoint tests use, e.g. `http://127.0.0.1:40123`: the proxy in front of moto.
pub fn endpoint() -> String {
    PROXY
        .get_or_init(|| {
            let moto = match std::env::var("PORTICO_TEST_AWS_ENDPOINT") {
                Ok(endpoint) => endpoint,
                Err(_) => MOTO.get_or_init(start).clone(),
            };
            proxy(moto)
        })
        .clone()
}

/// Starts the proxy on its own thread and runtime (it outlives every test's runtime).
fn proxy(upstream: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let state = Arc::new(Proxy {
                upstream,
                client: reqwest::Client::new(),
                dynamodb: tokio::sync::Mutex::new(()),
            });
            let app = axum::Router::new().fallback(forward).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    /// Held while a DynamoDB request is at moto.
    dynamodb: tokio::sync::Mutex<()>,
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let mut body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_dynamodb = target.starts_with("DynamoDB_");
    let mut refused = Vec::new();
    if target == "Kinesis_20131202.PutRecords"
        && let Some((trimmed, taken)) = refuse_entries(&body)
    {
        (body, refused) = (trimmed, taken);
        let empty = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|r| r.get("Records").and_then(|r| r.as_array()).map(Vec::is_empty))
            .unwrap_or(false);
        if empty {
            // Every entry refused: Kinesis answers that without a stored record (and moto
            // would refuse an empty request).
            let answer = with_refusals(br#"{"Records": []}"#, &refused);
            return axum::response::Response::builder()
                .status(200)
                .header("content-type", "application/x-amz-json-1.1")
                .body(axum::body::Body::from(answer))
                .unwrap();
        }
    }
    let mut upstream =
        proxy.client.request(parts.method.clone(), format!("{}{path}", proxy.upstream)).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let _serialised = if is_dynamodb { Some(proxy.dynamodb.lock().await) } else { None };
    let answer = upstream.send().await.unwrap();
    let mut response = axum::response::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if !refused.is_empty() {
        bytes = with_refusals(&bytes, &refused);
    }
    response.body(axum::body::Body::from(bytes)).unwrap()
}

/// Starts moto for this process and returns its endpoint. The shell beside it polls this
/// process and stops moto within half a second of it ending, however it ends.
fn start() -> String {
    let port =
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
    let watcher = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & moto=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $moto 2>/dev/null; do sleep 0.5; done; \
         kill $moto 2>/dev/null; wait $moto",
        parent = std::process::id()
    );
    let mut shell = Command::new("sh")
        .args(["-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Reaped if it ends while this process lives (moto failed to start).
    std::thread::spawn(move || shell.wait());
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}: is it on PATH? (pip install 'moto[server]')"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}
