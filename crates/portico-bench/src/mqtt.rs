//! The MQTT scenarios, runnable against Portico's broker or any broker that takes anonymous clients
//! (mosquitto), so both can be measured on the same machine with the same load:
//! fan-out (1 publisher -> N subscribers), fan-in (N publishers -> 1 subscriber), idle connections
//! (broker RSS per connection) and, on Portico, alert latency (instrument event -> notification).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portico_auth::DevIssuer;
use portico_config::Config;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{Value, json};

use portico_core::domain::{AccountKind, Role, User};
use portico_local::world::{AccountPlan, World};

use crate::http::{cores, cpu_model, mint};
use crate::seed::{run_name, seed};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Portico: users are seeded through the API and connect with access tokens.
    Portico,
    /// A broker that accepts anonymous clients (e.g. mosquitto with `allow_anonymous true`).
    Plain,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "portico")]
    target: Target,
    /// Broker address; defaults to PORTICO_MQTT_ADDR.
    #[arg(long)]
    mqtt_addr: Option<String>,
    /// The broker's process id, to read its resident memory in the idle scenario.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Comma-separated: fanout, fanin, idle, alert.
    #[arg(long, default_value = "fanout,fanin,alert,idle")]
    scenarios: String,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages the fan-out publisher sends (each to every subscriber).
    #[arg(long, default_value_t = 100)]
    fanout_messages: usize,
    #[arg(long, default_value_t = 1000)]
    publishers: usize,
    /// Messages each fan-in publisher sends.
    #[arg(long, default_value_t = 50)]
    fanin_messages: usize,
    /// Idle connections to hold (the process file limit here is 20,000, the broker's too).
    #[arg(long, default_value_t = 19_000)]
    idle: usize,
    /// Connected users during the alert scenario.
    #[arg(long, default_value_t = 500)]
    alert_users: usize,
    #[arg(long, default_value_t = 50)]
    alerts: usize,
}

/// How one client logs in.
#[derive(Clone)]
struct Login {
    username: String,
    password: String,
}

/// The topics and logins a scenario uses.
struct Setup {
    addr: (String, u16),
    /// `accounts/<id>/channels`: every member may publish and subscribe below it.
    channels: String,
    members: Vec<Login>,
    instrument: Option<(String, String)>,
    /// (login, notification topic) of users who receive alerts.
    alert_recipients: Vec<(Login, String)>,
    /// Other users, connected and subscribed to their own topics during the alert scenario.
    bystanders: Vec<(Login, String)>,
}

pub(crate) async fn run(args: Args, config: Config, issuer: Arc<DevIssuer>) -> anyhow::Result<()> {
    let addr = args.mqtt_addr.clone().unwrap_or(config.mqtt.addr.clone());
    let (host, port) = addr.rsplit_once(':').context("--mqtt-addr host:port")?;
    let addr = (host.to_string(), port.parse::<u16>()?);
    let wanted: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let users = args.subscribers.max(args.publishers).max(args.alert_users);
    let setup = match args.target {
        Target::Portico => seed_portico(&config, &issuer, addr, users).await?,
        Target::Plain => Setup {
            addr,
            channels: "accounts/bench/channels".into(),
            members: (0..users)
                .map(|_| Login { username: String::new(), password: String::new() })
                .collect(),
            instrument: None,
            alert_recipients: Vec::new(),
            bystanders: Vec::new(),
        },
    };
    println!("machine: {} cores; {}", cores(), cpu_model());
    println!();
    println!("| scenario | clients | messages delivered | seconds | delivered msg/s |");
    println!("|---|---|---|---|---|");
    if wanted.contains(&"fanout") {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            fanout(&setup, args.subscribers, args.fanout_messages, qos).await?;
        }
    }
    if wanted.contains(&"fanin") {
        fanin(&setup, args.publishers, args.fanin_messages).await?;
    }
    if wanted.contains(&"alert") && args.target == Target::Portico {
        alert_latency(&setup, args.alerts).await?;
    }
    if wanted.contains(&"idle") {
        idle(&setup, args.idle, args.broker_pid).await?;
    }
    Ok(())
}

/// Creates an account with `users` members (five lab managers, the rest scientists), two support
/// users and an instrument, and mints everyone's token.
async fn seed_portico(
    config: &Config,
    issuer: &DevIssuer,
    addr: (String, u16),
    users: usize,
) -> anyhow::Result<Setup> {
    let run = std::process::id();
    let mut account = AccountPlan::new(&run_name("MQTT bench"), AccountKind::Internal)
        .instrument(&format!("SN-BENCH-{run}"));
    for n in 0..users {
        let role = if n < 5 { Role::LabManager } else { Role::Scientist };
        let sub = format!("mqtt-bench-{run}-{n}@bench.example");
        account = account.user(&sub, &format!("Bench {n}"), &[role]);
    }
    let plan = World {
        support: (0..2).map(|n| format!("mqtt-bench-support-{n}@portico.example")).collect(),
        accounts: vec![account],
        lots: Vec::new(),
    };
    eprintln!("seeding {users} users");
    let seeded = seed(config, &plan).await?;
    let made = &seeded.accounts[0];
    let login = |user: &User, groups: &[&str]| -> anyhow::Result<(Login, String)> {
        let login =
            Login { username: user.sub.clone(), password: mint(issuer, &user.sub, groups)? };
        Ok((login, format!("users/{}/notifications", user.id)))
    };
    let mut members = Vec::with_capacity(users);
    let mut recipients = Vec::new();
    let mut bystanders = Vec::new();
    for user in &made.users {
        let (login, topic) = login(user, &[])?;
        members.push(login.clone());
        if user.has_role(Role::LabManager) {
            recipients.push((login, topic));
        } else {
            bystanders.push((login, topic));
        }
    }
    for user in &seeded.support {
        recipients.push(login(user, &["portico-support"])?);
    }
    let instrument = made.instruments.first().context("the bench instrument")?;
    Ok(Setup {
        addr,
        channels: format!("accounts/{}/channels", made.account.id),
        members,
        instrument: Some((instrument.instrument.serial.clone(), instrument.device_secret.clone())),
        alert_recipients: recipients,
        bystanders,
    })
}

/// A connected client; dropping it closes the connection at once (a polite DISCONNECT can sit
/// behind a full queue, and a lingering subscriber would skew the next scenario).
struct Conn {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::ops::Deref for Conn {
    type Target = AsyncClient;
    fn deref(&self) -> &AsyncClient {
        &self.client
    }
}

/// Connects one client and hands every message it receives to `on_publish`.
async fn connect(
    addr: &(String, u16),
    client_id: String,
    login: &Login,
    keep_alive: Duration,
    on_publish: impl Fn(Publish) + Send + 'static,
) -> anyhow::Result<Conn> {
    let mut options = MqttOptions::new(client_id, addr.0.clone(), addr.1);
    options.set_keep_alive(keep_alive).set_clean_session(true).set_inflight(200);
    if !login.password.is_empty() {
        options.set_credentials(login.username.clone(), login.password.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("connect: {e}")),
            }
        }
    })
    .await
    .context("connect timed out")?;
    connected?;
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => on_publish(p),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    Ok(Conn { client, task })
}

/// Connects `count` clients, at most 200 handshakes at a time.
async fn connect_many<F>(
    setup: &Setup,
    prefix: &str,
    count: usize,
    keep_alive: Duration,
    handler: F,
) -> anyhow::Result<Vec<Conn>>
where
    F: Fn(usize) -> Box<dyn Fn(Publish) + Send + 'static>,
{
    let mut clients = Vec::with_capacity(count);
    let mut start = 0;
    while start < count {
        let end = (start + 200).min(count);
        let mut batch = tokio::task::JoinSet::new();
        for i in start..end {
            let addr = setup.addr.clone();
            let login = setup.members[i % setup.members.len()].clone();
            let on_publish = handler(i);
            let id = format!("{prefix}-{}-{i}", std::process::id());
            batch.spawn(
                async move { (i, connect(&addr, id, &login, keep_alive, on_publish).await) },
            );
        }
        let mut connected = Vec::new();
        while let Some(joined) = batch.join_next().await {
            let (i, client) = joined?;
            connected.push((i, client?));
        }
        connected.sort_by_key(|(i, _)| *i);
        clients.extend(connected.into_iter().map(|(_, c)| c));
        start = end;
    }
    Ok(clients)
}

fn row(name: &str, clients: usize, delivered: usize, expected: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let note = if delivered < expected { format!(" (of {expected})") } else { String::new() };
    println!(
        "| {name} | {clients} | {delivered}{note} | {secs:.2} | {:.0} |",
        delivered as f64 / secs
    );
}

/// Waits until `counter` reaches `target`, at most `limit`.
async fn wait_for(counter: &AtomicUsize, target: usize, limit: Duration) {
    let started = Instant::now();
    while counter.load(Ordering::Relaxed) < target && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn fanout(
    setup: &Setup,
    subscribers: usize,
    messages: usize,
    qos: QoS,
) -> anyhow::Result<()> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let topic = format!("{}/fanout", setup.channels);
    let subs = connect_many(setup, "fanout-sub", subscribers, Duration::from_secs(120), |_| {
        let d = delivered.clone();
        Box::new(move |_| {
            d.fetch_add(1, Ordering::Relaxed);
        })
    })
    .await?;
    for s in &subs {
        s.subscribe(format!("{}/+", setup.channels), qos).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let publisher = connect(
        &setup.addr,
        format!("fanout-pub-{}", std::process::id()),
        &setup.members[0],
        Duration::from_secs(120),
        |_| {},
    )
    .await?;
    let expected = subscribers * messages;
    let started = Instant::now();
    let payload = vec![b'x'; 64];
    for _ in 0..messages {
        publisher.publish(topic.clone(), qos, false, payload.clone()).await?;
    }
    wait_for(&delivered, expected, Duration::from_secs(60)).await;
    row(
        &format!("fan-out QoS {} (1 -> {subscribers}, {messages} msgs)", qos as u8),
        subscribers + 1,
        delivered.load(Ordering::Relaxed),
        expected,
        started.elapsed(),
    );
    drop(subs);
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

async fn fanin(setup: &Setup, publishers: usize, each: usize) -> anyhow::Result<()> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    let subscriber = connect(
        &setup.addr,
        format!("fanin-sub-{}", std::process::id()),
        &setup.members[0],
        Duration::from_secs(120),
        move |_| {
            d.fetch_add(1, Ordering::Relaxed);
        },
    )
    .await?;
    subscriber.subscribe(format!("{}/+", setup.channels), QoS::AtMostOnce).await?;
    let pubs = connect_many(setup, "fanin-pub", publishers, Duration::from_secs(120), |_| {
        Box::new(|_| {})
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expected = publishers * each;
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (i, p) in pubs.iter().enumerate() {
        let (p, topic) = (p.client.clone(), format!("{}/p{i}", setup.channels));
        sends.spawn(async move {
            for _ in 0..each {
                let _ = p.publish(topic.clone(), QoS::AtMostOnce, false, vec![b'y'; 64]).await;
            }
        });
    }
    while sends.join_next().await.is_some() {}
    wait_for(&delivered, expected, Duration::from_secs(60)).await;
    row(
        &format!("fan-in QoS 0 ({publishers} -> 1, {each} msgs each)"),
        publishers + 1,
        delivered.load(Ordering::Relaxed),
        expected,
        started.elapsed(),
    );
    drop(pubs);
    drop(subscriber);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

async fn alert_latency(setup: &Setup, alerts: usize) -> anyhow::Result<()> {
    let Some((serial, secret)) = &setup.instrument else {
        return Ok(());
    };
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for (i, (login, topic)) in
        setup.alert_recipients.iter().chain(setup.bystanders.iter()).enumerate()
    {
        let (sent, latencies) = (sent.clone(), latencies.clone());
        let client = connect(
            &setup.addr,
            format!("alert-user-{}-{i}", std::process::id()),
            login,
            Duration::from_secs(120),
            move |p| {
                let received = Instant::now();
                let Ok(n) = serde_json::from_slice::<Value>(&p.payload) else {
                    return;
                };
                let Some(event_id) = n["data"]["event"]["event_id"].as_str() else {
                    return;
                };
                if let Some(at) = sent.lock().ok().and_then(|s| s.get(event_id).copied())
                    && let Ok(mut l) = latencies.lock()
                {
                    l.push(received.duration_since(at).as_secs_f64() * 1000.0);
                }
            },
        )
        .await?;
        client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
        clients.push(client);
    }
    let device = Login { username: serial.clone(), password: secret.clone() };
    let instrument =
        connect(&setup.addr, serial.clone(), &device, Duration::from_secs(120), |_| {}).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recipients = setup.alert_recipients.len();
    for n in 0..alerts {
        let event_id = format!("bench-{}-{n}", std::process::id());
        let payload =
            json!({"severity": "error", "message": "bench", "event_id": event_id}).to_string();
        if let Ok(mut s) = sent.lock() {
            s.insert(event_id, Instant::now());
        }
        instrument
            .publish(format!("instruments/{serial}/events"), QoS::AtLeastOnce, false, payload)
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p).ceil() as usize).clamp(1, l.len().max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!();
    println!(
        "alert latency (instrument publish -> notification received), {} users connected, {alerts} alerts x {recipients} recipients: {} received, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        clients.len(),
        l.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!();
    drop(clients);
    drop(instrument);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn idle(setup: &Setup, count: usize, pid: Option<u32>) -> anyhow::Result<()> {
    let before = pid.and_then(rss_kib);
    let started = Instant::now();
    let clients =
        connect_many(setup, "idle", count, Duration::from_secs(600), |_| Box::new(|_| {})).await?;
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pid.and_then(rss_kib);
    println!();
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "idle connections: {} held (connected in {:.1} s); broker RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per connection",
            clients.len(),
            connect_time.as_secs_f64(),
            b as f64 / 1024.0,
            a as f64 / 1024.0,
            (a.saturating_sub(b)) as f64 / clients.len().max(1) as f64
        ),
        _ => println!("idle connections: {} held (pass --broker-pid for memory)", clients.len()),
    }
    drop(clients);
    Ok(())
}
