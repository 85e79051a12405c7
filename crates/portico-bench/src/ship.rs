//! `portico ship-logs`' throughput (no server needed): a log file of worker lines shipped from
//! the start into the OpenSearch stand-in (which answers every item, keeping nothing) and into
//! a Portico log store, each timed from the first read to the last checkpoint.

use std::io::Write as _;
use std::time::Instant;

use portico_logs::ship::{OpenSearchSink, Settings, Shipper, Sink, StoreSink};
use portico_testkit::opensearch::OpenSearchStandIn;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 500_000)]
    lines: usize,
}

/// A line as `portico worker` writes it (about 250 bytes).
fn line(n: usize) -> String {
    json!({
        "timestamp": format!("2026-12-01T10:{:02}:{:02}.{:06}Z", (n / 60_000) % 60, (n / 1000) % 60, n % 1_000_000),
        "level": if n.is_multiple_of(100) { "ERROR" } else { "INFO" },
        "message": "invocation",
        "target": "portico_app::worker",
        "function": "process_upload",
        "request_id": format!("req-{n:010}"),
        "document_id": format!("0193a8c4-7b2e-7c3d-9e4f-{n:012}"),
        "duration_ms": (n % 1000) as f64 / 10.0,
        "status": 200,
    })
    .to_string()
}

async fn ship(path: &std::path::Path, sink: &dyn Sink) -> anyhow::Result<(u64, f64)> {
    let state = tempfile::tempdir()?;
    let mut shipper = Shipper::open(Settings {
        globs: vec![path.display().to_string()],
        state_dir: state.path().to_path_buf(),
        poll: std::time::Duration::from_millis(50),
        once: true,
    })?;
    let started = Instant::now();
    let totals = shipper.run(sink, std::future::pending()).await?;
    Ok((totals.lines, started.elapsed().as_secs_f64()))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("worker.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for n in 0..args.lines {
        writeln!(file, "{}", line(n))?;
    }
    file.flush()?;
    drop(file);
    let bytes = std::fs::metadata(&path)?.len();
    println!("log file: {} lines, {:.1} MiB", args.lines, bytes as f64 / (1 << 20) as f64);

    let cluster = OpenSearchStandIn::counting().await;
    let bulk = portico_logs::opensearch::BulkSink::new(
        &cluster.url,
        portico_logs::opensearch::Auth::None,
        std::time::Duration::from_secs(30),
    )?;
    let sink = OpenSearchSink::new(bulk, "portico-logs");
    let (lines, seconds) = ship(&path, &sink).await?;
    anyhow::ensure!(
        cluster.created() == args.lines,
        "{} of {} created",
        cluster.created(),
        args.lines
    );
    println!(
        "into the _bulk stand-in: {lines} lines in {seconds:.2} s = {:.0} lines/s ({:.1} MiB/s), {} requests",
        lines as f64 / seconds,
        bytes as f64 / (1 << 20) as f64 / seconds,
        cluster.bulk_requests()
    );

    let store_dir = tempfile::tempdir()?;
    let retention = portico_logs::Retention::parse("3650d,100GiB").map_err(anyhow::Error::msg)?;
    let sink = StoreSink::open(store_dir.path(), retention)?;
    let (lines, seconds) = ship(&path, &sink).await?;
    println!(
        "into a Portico log store: {lines} lines in {seconds:.2} s = {:.0} lines/s",
        lines as f64 / seconds
    );
    Ok(())
}
