//! `portico-bench`: load generators for a running Portico server, whose results go to
//! `docs/benchmarks.md`.
//!
//! It mints tokens with the dev issuer of the server's data dir, so run it with the same
//! `PORTICO_DATA_DIR` and `PORTICO_HTTP_ADDR` as the server.

mod docs;
mod flood;
mod graph;
mod http;
mod lambda;
mod logs;
mod mqtt;
mod outbox;
mod pdf;
mod queue;
mod seed;
mod ship;
mod tls;
mod warehouse;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use portico_config::Config;

#[derive(Parser)]
#[command(about = "Load generators for a running Portico server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Authenticated HTTP API load (reads and account creation) beside a bare /healthz.
    Http(http::Args),
    /// MQTT fan-out, fan-in, idle connections and alert latency, against Portico or another broker.
    Mqtt(mqtt::Args),
    /// Bad MQTT CONNECTs in a flood, with /healthz latency during it; refusal timing by serial.
    ConnectFlood(flood::Args),
    /// Upload-to-ready latency by file size, sustained documents/s, memory during a large upload.
    Docs(docs::Args),
    /// The SQLite queue alone: send + receive + delete throughput (no server needed).
    Queue(queue::Args),
    /// Certificate rendering (1 and 10 pages) beside Ghostscript making a PDF from PostScript.
    Pdf(pdf::Args),
    /// The outbox sender against a local SendGrid stand-in: e-mails per second.
    Outbox(outbox::Args),
    /// Lambda cold start of a binary against a local Runtime API stand-in (no server needed).
    Lambda(lambda::Args),
    /// The traceability graph at scale: projector changes/s, impact p50/p99 (no server needed).
    Graph(graph::Args),
    /// The local log store: ingest lines/s, search p50/p99 over a million lines (no server needed).
    Logs(logs::Args),
    /// `portico ship-logs`: lines/s from a log file into a `_bulk` stand-in and into a log store.
    ShipLogs(ship::Args),
    /// The reporting warehouse: load changes/s, report p50/p99 over a year of 5,000 accounts,
    /// end-to-end lag at 1,000 writes/s (no server needed).
    Warehouse(warehouse::Args),
    /// TLS handshakes per second (full and resumed) against HTTPS / MQTTS / WSS listeners.
    TlsHandshakes(tls::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_process_env(None)?;
    let issuer = Arc::new(portico_local::load_dev_issuer(&config)?);
    // One runtime for every scenario (the PDF one is synchronous).
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Http(args) => runtime.block_on(http::run(args, config, issuer)),
        Command::Mqtt(args) => runtime.block_on(mqtt::run(args, config, issuer)),
        Command::Docs(args) => runtime.block_on(docs::run(args, config, issuer)),
        Command::ConnectFlood(args) => runtime.block_on(flood::run(args, config)),
        Command::Queue(args) => runtime.block_on(queue::run(args)),
        Command::Pdf(args) => pdf::main(args),
        Command::Outbox(args) => runtime.block_on(outbox::run(args)),
        Command::Lambda(args) => runtime.block_on(lambda::run(args)),
        Command::Graph(args) => runtime.block_on(graph::run(args)),
        Command::Logs(args) => runtime.block_on(logs::run(args)),
        Command::ShipLogs(args) => runtime.block_on(ship::run(args)),
        Command::Warehouse(args) => runtime.block_on(warehouse::run(args)),
        Command::TlsHandshakes(args) => runtime.block_on(tls::run(args)),
    }
}
