//! Lambda cold start, measured locally: a stand-in for the Lambda Runtime API on loopback; each
//! run starts the Lambda binary as the Lambda service would (environment variables naming the
//! Runtime API and the function) and times, from the process start:
//! - init: until the binary asks the Runtime API for its first event (what Lambda reports as
//!   Init Duration, minus the sandbox's own start);
//! - first answer: until the response to that first event arrives.
//!
//! Then the process is killed and the next run starts it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// The Lambda binary (e.g. target/release/portico-lambda).
    #[arg(long)]
    binary: std::path::PathBuf,
    /// The handler to start (PORTICO_LAMBDA_HANDLER): http, authorizer, sqs, kinesis or logs.
    #[arg(long, default_value = "http")]
    handler: String,
    /// Cold starts to measure.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Extra environment for the binary, KEY=VALUE (e.g. PORTICO_BACKEND=aws).
    #[arg(long = "env")]
    env: Vec<String>,
}

/// What the stand-in saw during one run.
#[derive(Default)]
struct Run {
    first_next: Option<Instant>,
    response: Option<Instant>,
    error: Option<String>,
}

#[derive(Clone)]
struct Stand {
    run: Arc<Mutex<Run>>,
    event: Arc<Value>,
}

/// The event a handler gets first: small, and answerable without any network call.
fn first_event(handler: &str) -> anyhow::Result<Value> {
    Ok(match handler {
        "http" => json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/healthz", "rawQueryString": "",
            "headers": {"host": "api.example.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                "domainPrefix": "api", "requestId": "bench", "routeKey": "$default",
                "stage": "$default", "time": "27/Nov/2026:10:00:00 +0000", "timeEpoch": 1764237600000_i64,
                "http": {"method": "GET", "path": "/healthz", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "bench"}
            },
            "isBase64Encoded": false
        }),
        // No token: refused without fetching any keys.
        "authorizer" => json!({
            "version": "2.0", "type": "REQUEST", "routeArn": "arn:aws:execute-api:eu-central-1:123456789012:api/$default/GET/healthz",
            "identitySource": [], "headers": {}, "requestContext": {"http": {"method": "GET", "path": "/healthz"}}
        }),
        "sqs" | "kinesis" => json!({"Records": []}),
        // A CloudWatch Logs control message (gzip + base64).
        "logs" => {
            json!({"awslogs": {"data": "H4sIAAAAAAACA6tWyk0tLk5MTw2pLEhVslJQcvb3Cwny94n3dQ0OdnR3VdJRUMovz0stAsvl5JemlCeWJGf45KcXg6Ry8tPdi/JLC0CyUH5wSVFqYi5MoLg0qTi5KLOgJDM/zy0zpyS1qBgoFR0LUetalppXAhGoBQCo05TSigAAAA=="}})
        }
        other => anyhow::bail!("no first event for handler {other:?}"),
    })
}

async fn next(State(stand): State<Stand>) -> impl IntoResponse {
    let first = {
        let mut run = stand.run.lock().expect("lock");
        if run.first_next.is_none() {
            run.first_next = Some(Instant::now());
            true
        } else {
            false
        }
    };
    if !first {
        // The binary waits here for a second event until it is killed.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_static("bench-1"));
    let deadline = (time::OffsetDateTime::now_utc().unix_timestamp() + 30) * 1000;
    if let Ok(value) = HeaderValue::from_str(&deadline.to_string()) {
        headers.insert("lambda-runtime-deadline-ms", value);
    }
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:eu-central-1:123456789012:function:portico"),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-bench"));
    (StatusCode::OK, headers, stand.event.to_string())
}

async fn response(State(stand): State<Stand>, Path(_id): Path<String>) -> StatusCode {
    stand.run.lock().expect("lock").response = Some(Instant::now());
    StatusCode::ACCEPTED
}

async fn error(State(stand): State<Stand>, body: String) -> StatusCode {
    stand.run.lock().expect("lock").error = Some(body);
    StatusCode::ACCEPTED
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let stand = Stand { run: Arc::default(), event: Arc::new(first_event(&args.handler)?) };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let extra: HashMap<String, String> = args
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let size = std::fs::metadata(&args.binary)?.len();
    let mut inits = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..args.runs {
        *stand.run.lock().expect("lock") = Run::default();
        let data_dir = tempfile::tempdir()?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&args.binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "portico")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/portico")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("PORTICO_LAMBDA_HANDLER", &args.handler)
            .env("PORTICO_DATA_DIR", data_dir.path())
            .env("PORTICO_LOG", "warn")
            .envs(&extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        // Bounded: a binary that never answers ends the benchmark with an error.
        let deadline = started + Duration::from_secs(10);
        loop {
            {
                let run = stand.run.lock().expect("lock");
                if let Some(error) = &run.error {
                    anyhow::bail!("the function reported an error: {error}");
                }
                if let (Some(first), Some(done)) = (run.first_next, run.response) {
                    inits.push(first - started);
                    answers.push(done - started);
                    break;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no answer within 10 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        child.start_kill()?;
        let _ = child.wait().await;
    }
    inits.sort();
    answers.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |v: &[Duration], q: f64| ms(v[((v.len() as f64 - 1.0) * q).round() as usize]);
    println!(
        "{} handler={} runs={} size={:.1} MiB | init p50 {:.2} ms p90 {:.2} ms max {:.2} ms | first answer p50 {:.2} ms p90 {:.2} ms max {:.2} ms",
        args.binary.display(),
        args.handler,
        args.runs,
        size as f64 / (1024.0 * 1024.0),
        pick(&inits, 0.5),
        pick(&inits, 0.9),
        pick(&inits, 1.0),
        pick(&answers, 0.5),
        pick(&answers, 0.9),
        pick(&answers, 1.0),
    );
    Ok(())
}
