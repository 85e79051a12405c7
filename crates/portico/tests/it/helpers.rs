//! The shared test kit (`portico-testkit`), and what only the CLI's tests can do: run the
//! `portico` binary itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

pub use portico_testkit::*;

/// `portico ARGS` (a command that ends) on `data_dir`, to its end: quiet, on loopback ports, and
/// never with an OpenSearch from the environment.
pub async fn run_portico(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .env("PORTICO_DATA_DIR", data_dir)
        .env("PORTICO_HTTP_ADDR", "127.0.0.1:0")
        .env("PORTICO_LOG", "warn")
        .env_remove("PORTICO_LOGS_OPENSEARCH_URL")
        .output()
        .await
        .expect("portico runs")
}

/// Runs `portico serve` as a child process and returns it with its HTTP base URL.
pub async fn start_binary(
    data_dir: &std::path::Path,
) -> (tokio::process::Child, String, Arc<std::sync::Mutex<Vec<String>>>) {
    start_binary_with(data_dir, &[]).await
}

/// `portico serve` as a child process, with extra environment variables.
pub async fn start_binary_with(
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, String, Arc<std::sync::Mutex<Vec<String>>>) {
    start_binary_args(data_dir, &["serve"], extra).await
}

/// The `portico` binary with `args` (a serving command), until its HTTP listener is up.
pub async fn start_binary_args(
    data_dir: &std::path::Path,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (tokio::process::Child, String, Arc<std::sync::Mutex<Vec<String>>>) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"));
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut child = command
        .args(args)
        .env("PORTICO_DATA_DIR", data_dir)
        .env("PORTICO_HTTP_ADDR", "127.0.0.1:0")
        .env("PORTICO_METRICS_ADDR", "127.0.0.1:0")
        .env("PORTICO_MQTT_ADDR", "127.0.0.1:0")
        .env("PORTICO_MQTT_WS_ADDR", "127.0.0.1:0")
        .env("PORTICO_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portico serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Every line the child prints, from its first.
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let event = serde_json::from_str::<Value>(&line).ok();
            log.lock().expect("log").push(line);
            if let Some(event) = event
                && event["listener"] == "http"
            {
                return format!("http://{}", event["addr"].as_str().expect("addr"));
            }
        }
        panic!("portico serve exited before listening");
    })
    .await
    .expect("listening within 30 s");
    // Keep draining stdout so the child never blocks on a full pipe; the log stays readable.
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut sink) = sink.lock() {
                sink.push(line);
            }
        }
    });
    (child, base, log)
}
