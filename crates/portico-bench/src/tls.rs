//! TLS handshakes per second against a TLS listener (HTTPS, MQTTS or WSS): each connection is
//! a new TCP connection and a handshake, then a close; full handshakes (no session resumption)
//! and resumed ones, with p50 / p99 of connect + handshake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::AsyncWriteExt as _;

#[derive(clap::Args)]
pub struct Args {
    /// The TLS listeners, each as `name=addr` (e.g. `https=127.0.0.1:8443`).
    #[arg(long, required = true)]
    listener: Vec<String>,
    /// The PEM CA certificate the server's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop each run after this many handshakes, whatever the duration.
    #[arg(long, default_value_t = 500_000)]
    max_handshakes: usize,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let duration = humantime::parse_duration(&args.duration).context("--duration")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&args.ca)
        .with_context(|| format!("reading {}", args.ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    println!("machine: {} cores; {}", crate::http::cores(), crate::http::cpu_model());
    println!("handshakes in flight: {}, duration per run: {}", args.connections, args.duration);
    println!();
    println!("| listener | handshakes | errors | handshakes/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for listener in &args.listener {
        let (name, addr) = listener.split_once('=').context("--listener name=addr")?;
        let addr: SocketAddr = addr.parse().with_context(|| format!("--listener {listener}"))?;
        for resume in [false, true] {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            if !resume {
                config.resumption = rustls::client::Resumption::disabled();
            }
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let (latencies, errors, elapsed) =
                handshakes(connector, addr, args.connections, duration, args.max_handshakes).await;
            let kind = if resume { "resumed" } else { "full" };
            print_row(&format!("{name} ({kind})"), latencies, errors, elapsed);
        }
    }
    Ok(())
}

async fn handshakes(
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    max: usize,
) -> (Vec<u32>, usize, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let per_worker = max / connections.max(1);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            for _ in 0..per_worker {
                if Instant::now() >= deadline {
                    break;
                }
                let began = Instant::now();
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
                let done = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let mut tls = connector.connect(name, tcp).await?;
                    let took = began.elapsed();
                    // close_notify, so the server sees an orderly close.
                    tls.shutdown().await?;
                    Ok::<_, std::io::Error>(took)
                };
                match tokio::time::timeout(Duration::from_secs(10), done).await {
                    Ok(Ok(took)) => {
                        latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX))
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((latencies, e)) = task.await {
            all.extend(latencies);
            errors += e;
        }
    }
    (all, errors, started.elapsed().min(duration).max(Duration::from_millis(1)))
}

fn print_row(name: &str, mut latencies: Vec<u32>, errors: usize, elapsed: Duration) {
    latencies.sort_unstable();
    let pct = |p: f64| crate::http::percentile_ms(&latencies, p);
    println!(
        "| {name} | {} | {errors} | {:.0} | {:.2} | {:.2} |",
        latencies.len() + errors,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
}
