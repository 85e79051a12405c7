//! The local log store on its own (no server needed): the writer's sustained ingest rate, and
//! search latency by kind of query over a store of a million lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use portico_core::logs::{LogLine, LogSearch, LogStore};
use portico_core::ports::PageRequest;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    lines: usize,
    /// Queries of each kind.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Request ids as the server makes them (`v7`, ordered by time) or random (`v4`, what the
    /// server made before).
    #[arg(long, default_value = "v7")]
    request_ids: String,
}

const FUNCTIONS: [&str; 6] = [
    "create_account",
    "get_account",
    "list_instruments",
    "request_upload",
    "get_me",
    "list_notifications",
];

/// The `n`th line of a mixed workload: invocations (most), alerts, warnings and errors.
fn line(n: usize, start_ms: i64, random_ids: bool) -> LogLine {
    let function = FUNCTIONS[n % FUNCTIONS.len()];
    let request_id = match random_ids {
        true => uuid::Uuid::new_v4().to_string(),
        false => uuid::Uuid::now_v7().to_string(),
    };
    let (level, message, fields): (&str, String, Value) = match n % 100 {
        0 => (
            "ERROR",
            "invocation failed".into(),
            json!({"function": function, "request_id": request_id, "status": 500, "duration_ms": (n % 1000) as f64}),
        ),
        1..=4 => (
            "WARN",
            "Pump pressure too high".into(),
            json!({"serial": format!("SN-{:05}", n % 20_000), "severity": "critical"}),
        ),
        5..=9 => (
            "INFO",
            "instrument alert".into(),
            json!({"serial": format!("SN-{:05}", n % 20_000), "recipients": 3}),
        ),
        _ => (
            "INFO",
            "invocation".into(),
            json!({"function": function, "request_id": request_id, "status": 200, "duration_ms": (n % 1000) as f64 / 10.0}),
        ),
    };
    let fields: BTreeMap<String, Value> = serde_json::from_value(fields).unwrap_or_default();
    LogLine {
        timestamp_ms: start_ms + (n as i64) / 10,
        level: level.into(),
        target: "portico_http::invoke".into(),
        message,
        fields,
    }
}

/// The `i`th query of a kind.
type QueryOf = Box<dyn Fn(usize) -> String>;

fn err(e: portico_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let retention = portico_logs::Retention::parse("3650d,100GiB").map_err(anyhow::Error::msg)?;
    let (store, writer) = portico_logs::open(dir.path(), retention).map_err(err)?;
    let start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis()
        as i64
        - args.lines as i64 / 10;

    // Sustained ingest: bursts no larger than the queue, each flushed, so nothing is dropped and
    // the rate is the writer's.
    let started = Instant::now();
    let random_ids = match args.request_ids.as_str() {
        "v7" => false,
        "v4" => true,
        other => anyhow::bail!("--request-ids {other}: v7 or v4"),
    };
    // Every 1,000th line's request id, for the request-id queries.
    let mut sampled: Vec<String> = Vec::new();
    for burst in (0..args.lines).collect::<Vec<_>>().chunks(50_000) {
        for &n in burst {
            let line = line(n, start_ms, random_ids);
            if n % 1_000 == 11
                && let Some(id) = line.fields.get("request_id").and_then(Value::as_str)
            {
                sampled.push(id.to_string());
            }
            writer.record(line);
        }
        writer.flush();
    }
    let ingest = started.elapsed();
    let bytes = std::fs::metadata(portico_logs::path(dir.path()))?.len();
    println!(
        "ingest: {} lines in {:.2} s = {:.0} lines/s, {} dropped, {:.0} MB on disk ({} bytes/line)",
        args.lines,
        ingest.as_secs_f64(),
        args.lines as f64 / ingest.as_secs_f64(),
        writer.dropped(),
        bytes as f64 / 1e6,
        bytes / args.lines.max(1) as u64
    );

    let kinds: Vec<(&str, QueryOf)> = vec![
        (
            "request_id:<id>",
            Box::new(move |i| {
                let id = sampled.get((i * 7919) % sampled.len().max(1));
                format!("request_id:{}", id.map_or("none", String::as_str))
            }),
        ),
        ("serial:<serial>", Box::new(|i| format!("serial:SN-{:05}", (i * 104_729 + 1) % 20_000))),
        (
            "level:ERROR AND function:<f>",
            Box::new(|i| format!("level:ERROR AND function:{}", FUNCTIONS[i % FUNCTIONS.len()])),
        ),
        (
            "\"pump pressure\" AND serial:<s>",
            Box::new(|i| format!("\"pump pressure\" AND serial:SN-{:05}", (i * 31 + 1) % 20_000)),
        ),
        ("free text word", Box::new(|_| "pressure".to_string())),
        ("duration_ms:>99", Box::new(|_| "duration_ms:>99".to_string())),
        ("function:create* (prefix)", Box::new(|_| "function:create*".to_string())),
        ("status:500 over the last hour", Box::new(|_| "status:500".to_string())),
    ];
    let page = PageRequest { limit: 50, cursor: None };
    let mut all = Vec::new();
    for (name, make) in &kinds {
        let mut latencies = Vec::with_capacity(args.queries);
        let mut hits = 0;
        for i in 0..args.queries {
            let text = make(i);
            let mut search = LogSearch {
                query: portico_core::logs::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?,
                from_ms: None,
                to_ms: None,
            };
            if name.contains("last hour") {
                search.from_ms = Some(start_ms + args.lines as i64 / 10 - 3_600_000);
            }
            let started = Instant::now();
            hits += store.search(&search, &page).await.map_err(err)?.items.len();
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let pick =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "search {name:32} p50 {:7.2} ms  p99 {:7.2} ms  ({:.1} hits per query of at most 50)",
            ms(pick(0.5)),
            ms(pick(0.99)),
            hits as f64 / args.queries as f64
        );
        all.extend(latencies);
    }
    all.sort();
    let pick = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "search, all kinds: {} queries, p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        ms(pick(0.5)),
        ms(pick(0.99))
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
