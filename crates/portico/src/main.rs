//! `portico`: the command line of the Portico backend.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use portico_auth::TokenRequest;
use portico_config::Config;

mod export;
mod logs;
mod ship;

/// Portico: the customer portal backend.
#[derive(Parser)]
#[command(name = "portico", version, about)]
struct Cli {
    /// A TOML configuration file (also `PORTICO_CONFIG`); environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole backend with embedded defaults.
    Serve {
        /// Load a small demo data set (accounts, users with every role) into an empty data dir.
        #[arg(long)]
        demo: bool,
    },
    /// Print an access token signed by the data dir's local dev issuer.
    Token {
        /// The subject (user) the token is for.
        #[arg(long)]
        sub: String,
        /// Comma-separated groups, e.g. `portico-admins`.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime, e.g. `15m`, `1h` (at most 24h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Run only the queue workers (to scale them apart from the API).
    Worker,
    /// Print the effective configuration (TOML), secrets redacted.
    Config,
    /// The local log store.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Follow log files (globs) and send their lines to OpenSearch (logs.opensearch_url) or to a
    /// Portico log store, once each, through rotation, truncation and restarts.
    ShipLogs {
        /// Files to follow, e.g. '/var/log/portico/worker.log*' (quoted: the shipper expands it,
        /// again every poll, so files made later are found; include the rotated names).
        #[arg(required = true, value_name = "GLOB")]
        globs: Vec<String>,
        /// Send to this OpenSearch (or Elasticsearch) URL instead of logs.opensearch_url.
        #[arg(long, value_name = "URL", conflicts_with = "store")]
        opensearch: Option<String>,
        /// Send to the log store of this data dir (the default when no OpenSearch is set: the
        /// configured data dir's).
        #[arg(long, value_name = "DATA_DIR")]
        store: Option<PathBuf>,
        /// Where the checkpoints, the lock and refused lines are kept (default
        /// <data_dir>/ship-logs).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// How often the files are looked at when nothing is new.
        #[arg(long, default_value = "250ms")]
        poll: String,
        /// Ship what the files hold now, then stop.
        #[arg(long)]
        once: bool,
    },
    /// The traceability graph.
    Graph {
        #[command(subcommand)]
        command: GraphCommand,
    },
    /// The reporting warehouse (`<data_dir>/warehouse.db` and its CSV snapshots).
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Copy the data dir into DEST (a new folder) while the server runs: every database
    /// online, the objects and keys, and a manifest of sizes and SHA-256s.
    Backup { dest: std::path::PathBuf },
    /// Restore the backup at SRC into the (empty) data dir, after checking it against its
    /// manifest.
    Restore { src: std::path::PathBuf },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// The warehouse's checkpoint, how many changes it lags, and its rows per table.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reload the warehouse from the records and write every CSV snapshot. The server may keep
    /// running; its reports are partial until the rebuild ends.
    Rebuild,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the audit trail's hash chain; report the first broken link (exit status 1).
    Verify,
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Lines that match a query in Kibana's syntax, in time order.
    Search {
        /// e.g. 'level:ERROR AND function:create_account', 'serial:SN-ACME-001', '"pump pressure"'.
        query: String,
        /// From this long ago (15m, 1h, 7d) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Until this long ago or this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// The newest this many lines (at most 200).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print each line as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The last lines (that match QUERY), and with -f every new one.
    Tail {
        /// Keep printing lines as they are stored.
        #[arg(short, long)]
        follow: bool,
        /// Print each line as JSON.
        #[arg(long)]
        json: bool,
        query: Option<String>,
    },
}

#[derive(Subcommand)]
enum GraphCommand {
    /// Rebuild the graph from the domain records. The server may keep running; its traces are
    /// partial until the rebuild ends.
    Rebuild,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portico: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_process_env(cli.config.as_deref())?;
    match cli.command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Token { sub, groups, ttl } => token(&config, sub, groups, &ttl),
        Command::Serve { demo } => serve(config, demo),
        Command::Worker => worker(config),
        Command::Graph { command: GraphCommand::Rebuild } => graph_rebuild(&config),
        Command::Audit { command: AuditCommand::Verify } => audit_verify(&config),
        Command::Backup { dest } => {
            let started = std::time::Instant::now();
            let manifest = portico_local::backup::backup(&config.data_dir, &dest)?;
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            println!(
                "backed up {} files ({bytes} bytes, {} databases, schema {}) to {} in {:.1} s",
                manifest.files.len(),
                manifest.files.iter().filter(|f| f.database).count(),
                manifest.schema_version,
                dest.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Restore { src } => {
            let manifest = portico_local::backup::restore(&src, &config.data_dir)?;
            println!(
                "restored {} files from the backup of {} into {}",
                manifest.files.len(),
                manifest.started_at,
                config.data_dir.display()
            );
            Ok(())
        }
        Command::Export { command: ExportCommand::Status { json } } => {
            export::status(&config, json)
        }
        Command::Export { command: ExportCommand::Rebuild } => export::rebuild(&config),
        Command::ShipLogs { globs, opensearch, store, state, poll, once } => {
            ship::run(config, ship::Options { globs, opensearch, store, state, poll, once })
        }
        Command::Logs { command: LogsCommand::Search { query, since, until, limit, json } } => {
            logs::search(&config, &query, since.as_deref(), until.as_deref(), limit, json)
        }
        Command::Logs { command: LogsCommand::Tail { follow, json, query } } => {
            logs::tail(&config, query.as_deref().unwrap_or(""), follow, json)
        }
    }
}

/// Rebuilds the graph from the records, on the backend the configuration names.
fn graph_rebuild(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let composition = portico_local::compose_backend(config).await?;
        let started = std::time::Instant::now();
        let rebuilt = match &composition.changes {
            Some(feed) => portico_local::graph::rebuild(&composition.context, feed).await,
            None => portico_local::graph::rebuild_from_stream_start(&composition.context).await,
        }
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        println!(
            "graph rebuilt in {:.1} s: {} accounts, {} users, {} instruments, {} products, {} lots, {} shipments, {} lot uses, {} documents",
            started.elapsed().as_secs_f64(),
            rebuilt.accounts,
            rebuilt.users,
            rebuilt.instruments,
            rebuilt.products,
            rebuilt.lots,
            rebuilt.shipments,
            rebuilt.lot_uses,
            rebuilt.documents
        );
        Ok(())
    })
}

/// Walks the audit chain of the configured backend.
fn audit_verify(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let composition = portico_local::compose_backend(config).await?;
        let audit = &composition.context.audit;
        let verified = match audit.verify().await.map_err(|e| anyhow::anyhow!("{e:#}"))? {
            Ok(verified) => verified,
            Err(broken) => {
                anyhow::bail!("audit trail broken at record {}: {}", broken.seq, broken.why)
            }
        };
        // The signed daily exports pin each day's head: a rewritten chain shows against them.
        let exports = match &composition.audit_export {
            Some(export) => match export.verify()? {
                Ok(exports) => exports,
                Err(mismatch) => anyhow::bail!(
                    "audit trail does not match its export {}: {}",
                    mismatch.file,
                    mismatch.why
                ),
            },
            None => 0,
        };
        println!(
            "audit trail intact: {} records, head {}; {exports} signed daily exports match",
            verified.records, verified.head
        );
        Ok(())
    })
}

fn token(config: &Config, sub: String, groups: Vec<String>, ttl: &str) -> anyhow::Result<()> {
    if let Some(issuer) = &config.auth.issuer {
        anyhow::bail!(
            "tokens come from the configured issuer {issuer}; `portico token` only mints for the local dev issuer (unset PORTICO_AUTH_ISSUER)"
        );
    }
    let ttl = humantime::parse_duration(ttl)
        .with_context(|| format!("--ttl {ttl:?} is not a duration such as 15m or 1h"))?;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(24 * 3600) {
        anyhow::bail!("--ttl must be between 1s and 24h");
    }
    let sub = sub.trim().to_string();
    if sub.is_empty() {
        anyhow::bail!("--sub must not be empty");
    }
    let issuer = portico_local::load_dev_issuer(config)?;
    let token = issuer.mint(&TokenRequest {
        sub,
        groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
        ttl,
    })?;
    println!("{token}");
    Ok(())
}

fn worker(config: Config) -> anyhow::Result<()> {
    let logs = init_logging(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        let composition = portico_local::compose_backend(&config).await?;
        portico_local::serve_metrics(&config).await?;
        let settings = portico_local::worker_settings(&config);
        tracing::info!(concurrency = settings.concurrency, data_dir = %config.data_dir.display(), "portico worker starting");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        portico_local::worker::run(composition, settings, stop_rx).await;
        Ok(())
    });
    // The last lines (the shutdown's) reach the store too.
    if let Some(logs) = logs {
        logs.flush();
    }
    outcome
}

/// Crates whose `info` lines are their own bookkeeping (rmqtt prints its configuration at start):
/// kept at `warn` unless the filter names them (a target matches by prefix: `ntex` covers
/// `ntex_server`).
const CHATTY: [&str; 2] = ["rmqtt", "ntex"];

/// The configured filter, with the chatty crates lowered unless it names them itself.
fn filter_directives(filter: &str) -> String {
    let mut directives = filter.to_string();
    for target in CHATTY {
        if !filter.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    directives
}

/// JSON lines (or, at a terminal, readable lines) on stdout and, unless `logs.store` is off, every line also into the data dir's log
/// store. Answers the store's writer, to flush at exit.
pub(crate) fn init_logging(config: &Config) -> anyhow::Result<Option<portico_logs::LogWriter>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter_directives(&config.log.filter))
        .with_context(|| format!("PORTICO_LOG {:?} is not a valid filter", config.log.filter))?;
    let text = match config.log.format.as_str() {
        "json" => false,
        "text" => true,
        _ => std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    // A person at a terminal reads lines; anything else (a file, a collector) gets JSON lines.
    let (json, readable) = if text {
        (None, Some(tracing_subscriber::fmt::layer().compact().with_writer(std::io::stdout)))
    } else {
        let json = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stdout);
        (Some(json), None)
    };
    let writer = if config.logs.store {
        let retention = portico_logs::Retention::parse(&config.logs.retention)
            .map_err(|e| anyhow::anyhow!("logs.retention (PORTICO_LOGS_RETENTION): {e}"))?;
        let (_, writer) = portico_logs::open(&config.data_dir.join("logs"), retention)
            .map_err(|e| anyhow::anyhow!("opening the log store: {e:#}"))?;
        Some(writer)
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(readable)
        .with(writer.clone().map(portico_logs::StoreLayer::new))
        .init();
    Ok(writer)
}

fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let logs = init_logging(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        let server = portico_local::Server::bind(&config).await?;
        tracing::info!(data_dir = %config.data_dir.display(), region = %config.region, version = env!("CARGO_PKG_VERSION"), "portico starting");
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        if terminal {
            let mut summary = format!(
                "Portico {} serving from {}\n",
                env!("CARGO_PKG_VERSION"),
                config.data_dir.display()
            );
            for (listener, _, url) in server.listeners() {
                let name = match listener {
                    "http" | "https" => "HTTP API",
                    "mqtt" | "mqtts" => "MQTT",
                    "mqtt-ws" | "mqtt-wss" => "MQTT WebSocket",
                    _ => "Metrics",
                };
                let docs = match listener {
                    "http" | "https" => format!("  (API docs: {url}/openapi.json)"),
                    _ => String::new(),
                };
                summary.push_str(&format!("  {name:<15} {url}{docs}\n"));
            }
            println!("{summary}");
        }
        if demo {
            let guide_path = portico_local::demo::guide_path(&config.data_dir);
            let portico = std::env::args().next().unwrap_or_else(|| "portico".into());
            match portico_local::demo::seed(server.composition()).await? {
                Some(demo) => {
                    for login in &demo.logins {
                        tracing::info!(sub = %login.sub, "demo login ({}): {}", login.description, login.token_command());
                    }
                    // The plaintext listener when there is one: the shortest command to paste.
                    let (mqtt, tls) = match (server.mqtt_addr(), server.mqtts_addr()) {
                        (Some(plain), _) => (plain, false),
                        (None, Some(tls)) => (tls, true),
                        (None, None) => anyhow::bail!("no MQTT listener"),
                    };
                    for i in &demo.instruments {
                        tracing::info!(
                            serial = %i.serial,
                            "demo instrument of {}: mosquitto_pub -h {} -p {}{} -i {serial} -u {serial} -P {} -t instruments/{serial}/events -m '{{\"severity\":\"critical\",\"message\":\"Pump pressure too high\"}}'",
                            i.account, mqtt.ip(), mqtt.port(), if tls { " --tls-use-os-certs" } else { "" }, i.device_secret, serial = i.serial
                        );
                    }
                    let guide = demo.guide(&portico, mqtt, tls);
                    portico_local::demo::save_guide(&config.data_dir, &guide)?;
                    if terminal {
                        println!("{guide}");
                    }
                    tracing::info!(path = %guide_path.display(), "the demo's logins and commands are in this file (owner-only)");
                }
                None => {
                    tracing::info!(path = %guide_path.display(), "--demo: the data dir already holds data; nothing loaded; its logins and commands are in this file");
                    if terminal && let Ok(guide) = std::fs::read_to_string(&guide_path) {
                        println!("{guide}");
                    }
                }
            }
        }
        server.run(shutdown_signal()).await
    });
    if let Some(logs) = logs {
        logs.flush();
    }
    outcome
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
