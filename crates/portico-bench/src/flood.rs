//! A flood of bad MQTT CONNECTs (a known serial with wrong device secrets, from many connections at
//! once) while a prober times `GET /healthz`: how much one misbehaving client costs everyone else.
//! Also times single refusals for a known serial beside an unknown one, which must not differ (a
//! difference tells an attacker which serials exist).
//!
//! CONNECT packets are written by hand (MQTT 3.1.1): the flood needs nothing but the handshake.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use portico_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use portico_core::domain::AccountKind;
use portico_local::world::{AccountPlan, World};

use crate::http::{cores, cpu_model};
use crate::seed::{run_name, seed};

#[derive(clap::Args)]
pub struct Args {
    /// Broker address; defaults to PORTICO_MQTT_ADDR.
    #[arg(long)]
    mqtt_addr: Option<String>,
    /// Concurrent flooding connections.
    #[arg(long, default_value_t = 50)]
    attackers: usize,
    /// How long the flood lasts.
    #[arg(long, default_value = "6s")]
    duration: humantime::Duration,
    /// Loopback source addresses the flood comes from (127.0.0.2, 127.0.0.3, ...), to stand for
    /// a distributed attack; 1 = every attacker on 127.0.0.1.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Flood with a new unknown serial per attempt (each a full secret check) instead of one
    /// known serial.
    #[arg(long)]
    unknown_serials: bool,
    /// Upper bound on CONNECT attempts in the flood, whatever the duration.
    #[arg(long, default_value_t = 20_000)]
    max_attempts: usize,
    /// Refusals timed one at a time for a known and for an unknown serial, each known serial
    /// once (failures of one serial are throttled after five; of one address after twenty).
    #[arg(long, default_value_t = 9)]
    timing_samples: usize,
}

pub(crate) async fn run(args: Args, config: Config) -> anyhow::Result<()> {
    let mqtt = args.mqtt_addr.clone().unwrap_or(config.mqtt.addr.clone());
    let http_base = format!("http://{}", config.http.addr);
    let serials = seed_instruments(&config, args.timing_samples.max(1)).await?;
    let serial = serials[0].clone();
    println!("machine: {} cores; {}", cores(), cpu_model());
    println!();

    // Timing first, on a quiet server; each sample is its own connection.
    let mut known = Latencies::default();
    let mut unknown = Latencies::default();
    for (n, known_serial) in serials.iter().enumerate() {
        known.0.push(time_refusal(&mqtt, known_serial, &format!("timing-k-{n}")).await?);
        unknown
            .0
            .push(time_refusal(&mqtt, &format!("SN-NOPE-{n}"), &format!("timing-u-{n}")).await?);
    }
    println!("| refusal of a bad CONNECT | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    known.print("known serial, wrong secret");
    unknown.print("unknown serial");
    println!();

    let client = reqwest::Client::new();
    let quiet = probe(&client, &http_base, Duration::from_secs(2), None).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let refused_fast = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from(args.duration);
    let mut flooders = Vec::new();
    for worker in 0..args.attackers {
        let (mqtt, serial, stop, attempts) =
            (mqtt.clone(), serial.clone(), stop.clone(), attempts.clone());
        let refused_fast = refused_fast.clone();
        let max = args.max_attempts;
        let unknown_serials = args.unknown_serials;
        let source = match args.sources {
            0 | 1 => None,
            n => Some(std::net::Ipv4Addr::new(127, 0, 0, 2 + (worker % usize::from(n)) as u8)),
        };
        flooders.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                if attempts.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
                let started = Instant::now();
                let client_id = format!("flood-{worker}-{n}");
                n += 1;
                let username =
                    if unknown_serials { format!("SN-GUESS-{worker}-{n}") } else { serial.clone() };
                if connect_from(source, &mqtt, &client_id, &username, "wrong-secret").await.is_ok()
                    && started.elapsed() < Duration::from_millis(2)
                {
                    refused_fast.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let flooded = probe(&client, &http_base, Duration::from(args.duration), Some(deadline)).await;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    let sent = attempts.load(Ordering::Relaxed).min(args.max_attempts);
    println!("| GET /healthz | samples | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    quiet.print("quiet server");
    flooded.print(&format!(
        "during {sent} bad CONNECTs ({}) from {} connections, {} source addresses, in {}",
        if args.unknown_serials { "a new unknown serial each" } else { "one known serial" },
        args.attackers,
        args.sources.max(1),
        args.duration
    ));
    println!();
    println!("refused in under 2 ms: {} of {sent}", refused_fast.load(Ordering::Relaxed));
    Ok(())
}

/// Registers `count` instruments, as an admin would.
async fn seed_instruments(config: &Config, count: usize) -> anyhow::Result<Vec<String>> {
    let run = std::process::id();
    let mut account = AccountPlan::new(&run_name("Flood bench"), AccountKind::Internal);
    for n in 0..count {
        account = account.instrument(&format!("SN-FLOOD-{run}-{n}"));
    }
    let plan = World { accounts: vec![account], ..World::default() };
    let seeded = seed(config, &plan).await?;
    Ok(seeded.accounts[0].instruments.iter().map(|i| i.instrument.serial.clone()).collect())
}

async fn time_refusal(addr: &str, serial: &str, client_id: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let code = connect(addr, client_id, serial, "wrong-secret").await?;
    if code == 0 {
        bail!("a wrong secret was accepted");
    }
    Ok(started.elapsed())
}

async fn connect(
    addr: &str,
    client_id: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<u8> {
    connect_from(None, addr, client_id, username, password).await
}

/// One MQTT 3.1.1 CONNECT, from `source` if given; answers the CONNACK return code.
async fn connect_from(
    source: Option<std::net::Ipv4Addr>,
    addr: &str,
    client_id: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<u8> {
    let field = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    };
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 30]);
    field(&mut body, client_id.as_bytes());
    field(&mut body, username.as_bytes());
    field(&mut body, password.as_bytes());
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    let open = async {
        match source {
            None => Ok(TcpStream::connect(addr).await?),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind((ip, 0).into())?;
                let target: std::net::SocketAddr = addr.parse()?;
                Ok::<_, anyhow::Error>(socket.connect(target).await?)
            }
        }
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(10), open)
        .await
        .context("connect timed out")??;
    stream.write_all(&packet).await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut ack))
        .await
        .context("CONNACK timed out")??;
    Ok(ack[3])
}

#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    /// The `p` quantile in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        let mut l = self.0.clone();
        l.sort_unstable();
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1000.0
    }

    fn print(&self, name: &str) {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            self.0.len(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(1.0)
        );
    }
}

/// Times `GET /healthz` every 20 ms for `length` (or until `deadline`).
async fn probe(
    client: &reqwest::Client,
    base: &str,
    length: Duration,
    deadline: Option<Instant>,
) -> Latencies {
    let end = deadline.unwrap_or_else(|| Instant::now() + length);
    let mut out = Latencies::default();
    while Instant::now() < end {
        let started = Instant::now();
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
        {
            out.0.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}
