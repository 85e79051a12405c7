//! The HTTP scenarios: seeds the store to a realistic size, then drives the API with many
//! concurrent connections and reports throughput and latency percentiles per scenario.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use portico_auth::{DevIssuer, TokenRequest};
use portico_config::Config;
use portico_core::ports::PageRequest;
use portico_local::world::{self, World, generated_sub};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent connections per scenario.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    /// How long each scenario runs.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Accounts the store must hold before measuring.
    #[arg(long, default_value_t = 5_000)]
    accounts: usize,
    /// Users per seeded account (5,000 x 10 = the original system's 50,000 users).
    #[arg(long, default_value_t = 10)]
    users_per_account: usize,
    /// Stop every scenario after this many requests, whatever the duration.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: usize,
    /// The server's base URL, e.g. `https://localhost:8443`; default `http://<http.addr>`.
    #[arg(long)]
    base: Option<String>,
    /// A PEM CA certificate to trust, for an HTTPS server with a private CA's certificate.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
}

struct Client {
    http: reqwest::Client,
    base: String,
}

pub(crate) async fn run(args: Args, config: Config, issuer: Arc<DevIssuer>) -> anyhow::Result<()> {
    let duration = humantime::parse_duration(&args.duration).context("--duration")?;
    measure(args, duration, config, issuer).await
}

async fn measure(
    args: Args,
    duration: Duration,
    config: Config,
    issuer: Arc<DevIssuer>,
) -> anyhow::Result<()> {
    let mut http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let base = args.base.clone().unwrap_or_else(|| format!("http://{}", config.http.addr));
    let client = Arc::new(Client { http: http.build()?, base });
    let admin = mint(&issuer, "bench-admin@portico.example", &["portico-admins"])?;

    let members = seed(&config, &issuer, args.accounts, args.users_per_account).await?;
    println!("machine: {} cores; {}", cores(), cpu_model());
    println!(
        "connections: {}, duration per scenario: {}, server: {}",
        args.connections, args.duration, client.base
    );
    println!();
    println!("| scenario | requests | errors | req/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");

    let healthz =
        scenario(&client, &args, duration, |_, _| Request::Get("/healthz".into(), None)).await;
    healthz.print("GET /healthz (no auth)");

    let members = Arc::new(members);
    let get = scenario(&client, &args, duration, {
        let members = members.clone();
        move |worker, _| {
            let (token, account) = &members[worker % members.len()];
            Request::Get(format!("/v1/accounts/{account}"), Some(token.clone()))
        }
    })
    .await;
    get.print("GET /v1/accounts/{id} (member token)");

    let admin = Arc::new(admin);
    let create = scenario(&client, &args, duration, {
        let admin = admin.clone();
        move |worker, i| {
            Request::Post(
                "/v1/accounts".into(),
                admin.to_string(),
                json!({"name": format!("Bench {worker}-{i}"), "kind": "customer"}),
            )
        }
    })
    .await;
    create.print("POST /v1/accounts (admin token)");
    let unique: HashSet<&String> = create.numbers.iter().collect();
    println!();
    println!(
        "account numbers issued during POST: {}, unique: {}, duplicates: {}",
        create.numbers.len(),
        unique.len(),
        create.numbers.len() - unique.len()
    );
    if unique.len() != create.numbers.len() {
        bail!("duplicate account numbers");
    }
    Ok(())
}

pub(crate) fn mint(issuer: &DevIssuer, sub: &str, groups: &[&str]) -> anyhow::Result<String> {
    Ok(issuer.mint(&TokenRequest {
        sub: sub.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ttl: Duration::from_secs(6 * 3600),
    })?)
}

/// Brings the store up to `accounts` accounts with `users_per_account` users each (the bench's
/// own accounts are recognised by name, so a second run reuses them). Returns one member token
/// and account id per seeded account, for the read scenario.
async fn seed(
    config: &Config,
    issuer: &Arc<DevIssuer>,
    accounts: usize,
    users_per_account: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let composition = portico_local::compose_backend(config).await?;
    let ctx = composition.context.clone();
    // Seed accounts already made: (number in the name, id).
    let mut existing: Vec<(usize, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = PageRequest::new(Some(PageRequest::MAX_LIMIT), cursor.take())?;
        let found = ctx.accounts.list_accounts(None, &page).await?;
        for account in found.items {
            if let Some(n) =
                account.name.strip_prefix(SEED_NAME).and_then(|n| n.trim().parse().ok())
            {
                existing.push((n, account.id));
            }
        }
        match found.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let next = existing.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
    let missing = accounts.saturating_sub(existing.len());
    eprintln!(
        "seeding: {} seed accounts exist, creating {missing} with {users_per_account} users each",
        existing.len()
    );
    let started = Instant::now();
    // A few seeders side by side, each making its own slice of the accounts.
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let numbers: Vec<usize> = (next..next + missing).skip(w).step_by(workers).collect();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for n in numbers {
                let plan = World::generated(SEED_NAME, SEED_USERS, n..n + 1, users_per_account);
                let seeded = world::seed(&ctx, &plan).await?;
                made.push((n, seeded.accounts[0].account.id.clone()));
            }
            Ok::<_, anyhow::Error>(made)
        }));
    }
    for task in tasks {
        existing.extend(task.await??);
    }
    eprintln!("seeding took {:.1} s", started.elapsed().as_secs_f64());
    existing
        .iter()
        .take(accounts)
        .map(|(n, account)| {
            Ok((mint(issuer, &generated_sub(SEED_USERS, *n, 0), &[])?, account.clone()))
        })
        .collect()
}

/// The bench's own accounts are `Seed <n>`, their users `seed-<n>-<u>@bench.example`.
const SEED_NAME: &str = "Seed";
const SEED_USERS: &str = "seed";

enum Request {
    Get(String, Option<String>),
    Post(String, String, Value),
}

#[derive(Default)]
struct Outcome {
    latencies_us: Vec<u32>,
    errors: usize,
    elapsed: Duration,
    numbers: Vec<String>,
}

impl Outcome {
    fn print(&self, name: &str) {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let pct = |p: f64| percentile_ms(&l, p);
        let total = l.len() + self.errors;
        println!(
            "| {name} | {total} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.errors,
            l.len() as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// Runs `make(worker, i)` requests on `connections` concurrent workers for `duration` (bounded
/// by `max_requests` in total), after a short warm-up that is not measured.
async fn scenario<F>(client: &Arc<Client>, args: &Args, duration: Duration, make: F) -> Outcome
where
    F: Fn(usize, usize) -> Request + Send + Sync + Clone + 'static,
{
    let warmup = Instant::now() + Duration::from_secs(1);
    let started = warmup;
    let deadline = started + duration;
    let per_worker = args.max_requests / args.connections.max(1);
    let mut tasks = Vec::with_capacity(args.connections);
    for worker in 0..args.connections {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            for i in 0..per_worker {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let request = match make(worker, i) {
                    Request::Get(path, token) => {
                        let r = client.http.get(format!("{}{path}", client.base));
                        match token {
                            Some(t) => r.bearer_auth(t),
                            None => r,
                        }
                    }
                    Request::Post(path, token, body) => client
                        .http
                        .post(format!("{}{path}", client.base))
                        .bearer_auth(token)
                        .json(&body),
                };
                let sent = Instant::now();
                let result = request.send().await;
                let ok = match result {
                    Ok(response) if response.status().is_success() => {
                        let body = response.bytes().await.unwrap_or_default();
                        if let Ok(v) = serde_json::from_slice::<Value>(&body)
                            && let Some(n) = v["account_number"].as_str()
                            && sent >= started
                        {
                            out.numbers.push(n.to_string());
                        }
                        true
                    }
                    _ => false,
                };
                if sent < started {
                    continue; // warm-up
                }
                if ok {
                    out.latencies_us
                        .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    out.errors += 1;
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        if let Ok(out) = task.await {
            total.latencies_us.extend(out.latencies_us);
            total.errors += out.errors;
            total.numbers.extend(out.numbers);
        }
    }
    total.elapsed = Instant::now()
        .saturating_duration_since(started)
        .min(duration)
        .max(Duration::from_millis(1));
    total
}

/// The `p` quantile (0 to 1) of latencies in microseconds, sorted, in milliseconds.
pub(crate) fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
