//! Documents end to end: upload-to-ready latency (from the start of the PUT to the uploader's
//! `document_ready` notification over MQTT) for 1 KiB, 1 MiB and 100 MiB run files, sustained
//! documents per second with 1 KiB files, and the server's memory while a 100 MiB file goes through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use portico_auth::DevIssuer;
use portico_config::Config;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use portico_core::domain::{AccountKind, Role};
use portico_local::world::{AccountPlan, World};

use crate::http::{cores, cpu_model, mint};
use crate::seed::{run_name, seed};

#[derive(clap::Args)]
pub struct Args {
    /// Sequential uploads of 1 KiB files.
    #[arg(long, default_value_t = 200)]
    small: usize,
    /// Sequential uploads of 1 MiB files.
    #[arg(long, default_value_t = 20)]
    medium: usize,
    /// Sequential uploads of 100 MiB files.
    #[arg(long, default_value_t = 3)]
    large: usize,
    /// Seconds of sustained 1 KiB uploads.
    #[arg(long, default_value_t = 10)]
    sustain_secs: u64,
    /// Concurrent uploaders in the sustained run.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The server's process id, to sample its memory during large uploads.
    #[arg(long)]
    server_pid: Option<u32>,
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>;

struct Bench {
    http: reqwest::Client,
    base: String,
    token: String,
    waiters: Waiters,
    _mqtt: AsyncClient,
}

pub(crate) async fn run(args: Args, config: Config, issuer: Arc<DevIssuer>) -> anyhow::Result<()> {
    let bench = Arc::new(setup(&config, &issuer).await?);
    println!("machine: {} cores; {}", cores(), cpu_model());
    println!();
    println!("| file | uploads | p50 ms | p99 ms | max ms | server RSS growth |");
    println!("|---|---|---|---|---|---|");
    for (label, size, count) in [
        ("1 KiB", 1024, args.small),
        ("1 MiB", 1024 * 1024, args.medium),
        ("100 MiB", 100 * 1024 * 1024, args.large),
    ] {
        if count == 0 {
            continue;
        }
        let body = csv_of(size);
        let before = args.server_pid.and_then(rss_kib);
        let peak = Arc::new(Mutex::new(before.unwrap_or(0)));
        let sampler = args.server_pid.map(|pid| {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let (Some(rss), Ok(mut p)) = (rss_kib(pid), peak.lock()) {
                        *p = (*p).max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            latencies.push(bench.upload_and_wait(body.clone()).await?);
        }
        if let Some(s) = sampler {
            s.abort();
        }
        let growth = match (before, peak.lock().ok().map(|p| *p)) {
            (Some(b), Some(p)) => format!("{:.1} MiB", p.saturating_sub(b) as f64 / 1024.0),
            _ => "n/a".into(),
        };
        let (p50, p99, max) = percentiles(&mut latencies);
        println!("| {label} run CSV | {count} | {p50:.1} | {p99:.1} | {max:.1} | {growth} |");
    }

    let body = csv_of(1024);
    let deadline = Instant::now() + Duration::from_secs(args.sustain_secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (bench, body) = (bench.clone(), body.clone());
        tasks.spawn(async move {
            let mut done = 0usize;
            while Instant::now() < deadline {
                if bench.upload_and_wait(body.clone()).await.is_ok() {
                    done += 1;
                }
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    println!();
    println!(
        "sustained: {total} documents of 1 KiB uploaded and ready in {secs:.1} s by {} concurrent uploaders: {:.0} documents/s",
        args.concurrency,
        total as f64 / secs
    );
    Ok(())
}

/// An account, an uploader, and the uploader's MQTT session listening for `document_ready`.
async fn setup(config: &Config, issuer: &DevIssuer) -> anyhow::Result<Bench> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let base = format!("http://{}", config.http.addr);
    let run = std::process::id();
    let sub = format!("docs-bench-{run}@bench.example");
    let plan = World {
        accounts: vec![AccountPlan::new(&run_name("Docs bench"), AccountKind::Internal).user(
            &sub,
            "Uploader",
            &[Role::Scientist],
        )],
        ..World::default()
    };
    let seeded = seed(config, &plan).await?;
    let user_id = seeded.accounts[0].users[0].id.clone();
    let token = mint(issuer, &sub, &[])?;

    let (host, port) = config.mqtt.addr.rsplit_once(':').context("mqtt address")?;
    let mut options = MqttOptions::new(format!("docs-bench-{run}"), host, port.parse()?);
    options.set_credentials("bench", token.clone()).set_keep_alive(Duration::from_secs(60));
    let (mqtt, mut eventloop) = AsyncClient::new(options, 1024);
    let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
    let (ready_tx, ready_rx) = oneshot::channel();
    let w = waiters.clone();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let Ok(n) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    if let Some(id) = n["data"]["document_id"].as_str()
                        && let Some(tx) = w.lock().ok().and_then(|mut m| m.remove(id))
                    {
                        let _ = tx.send(at);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("mqtt: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    mqtt.subscribe(format!("users/{user_id}/notifications"), QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await.context("no SUBACK")??;
    Ok(Bench { http, base, token, waiters, _mqtt: mqtt })
}

impl Bench {
    /// Uploads `body` as a run CSV; the time from the PUT's start to the ready notification.
    async fn upload_and_wait(&self, body: bytes::Bytes) -> anyhow::Result<f64> {
        let ticket: Value = self
            .http
            .post(format!("{}/v1/documents/uploads", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"filename": "run.csv", "content_type": "text/csv", "size": body.len()}))
            .send()
            .await?
            .json()
            .await?;
        let id = ticket["document_id"].as_str().context("document id")?.to_string();
        let url = ticket["upload_url"].as_str().context("upload url")?.to_string();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id.clone(), tx);
        }
        let started = Instant::now();
        let response =
            self.http.put(url).header("content-type", "text/csv").body(body).send().await?;
        if !response.status().is_success() {
            bail!("upload refused: {}", response.status());
        }
        let ready = tokio::time::timeout(Duration::from_secs(600), rx)
            .await
            .context("no notification")??;
        Ok(ready.duration_since(started).as_secs_f64() * 1000.0)
    }
}

/// A run CSV of about `size` bytes.
fn csv_of(size: usize) -> bytes::Bytes {
    let mut out = String::with_capacity(size + 64);
    out.push_str("timestamp,sample,value\n");
    let mut n = 0u64;
    while out.len() < size {
        out.push_str(&format!(
            "2026-11-27T{:02}:{:02}:{:02}Z,S{n},0.{n}\n",
            (n / 3600) % 24,
            (n / 60) % 60,
            n % 60
        ));
        n += 1;
    }
    bytes::Bytes::from(out)
}

fn percentiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let at =
        |p: f64| values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.5), at(0.99), at(1.0))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}
