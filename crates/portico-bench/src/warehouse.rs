//! The reporting warehouse at scale, on the local backend (no server needed):
//!
//! - **load**: a year of synthetic change records for `accounts` accounts (users, instruments,
//!   lots, shipments, lot uses, uploads, alerts, sign-ins) loaded into a fresh `warehouse.db` the
//!   way the loader does (elements -> upserts, 5,000 changes per transaction): changes/s;
//! - **reports**: every report over the whole year, as staff and as one account's admin,
//!   `queries` times each: p50 / p99;
//! - **lag**: on a second data dir, accounts created through the record port at `rate` per
//!   second for `seconds`, with the worker's loader running: the time from each write's commit
//!   until the warehouse's checkpoint covers it, p50 / p99 / max.

use std::time::{Duration, Instant};

use portico_core::domain::{
    Account, AccountKind, Alert, Document, DocumentStatus, Instrument, Lot, LotUse, Product,
    Shipment, SignIn, User,
};
use portico_core::graph::{Change, ChangeRecord};
use portico_core::ports::NewAccount;
use portico_core::warehouse::{Report, ReportQuery, Warehouse};
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5_000)]
    accounts: usize,
    /// Per account and year.
    #[arg(long, default_value_t = 50)]
    alerts: usize,
    #[arg(long, default_value_t = 100)]
    sign_ins: usize,
    #[arg(long, default_value_t = 20)]
    shipments: usize,
    #[arg(long, default_value_t = 20)]
    lot_uses: usize,
    #[arg(long, default_value_t = 20)]
    uploads: usize,
    /// Each report this many times, per caller.
    #[arg(long, default_value_t = 20)]
    queries: usize,
    /// Writes per second during the lag measurement.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn err(e: portico_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// The synthetic year: change records in a plausible order, versions ascending.
fn year(args: &Args, start: OffsetDateTime) -> Vec<ChangeRecord> {
    let mut changes = Vec::new();
    let day = |n: usize| start + time::Duration::minutes((n % (365 * 24 * 60)) as i64);
    for p in 0..20 {
        changes.push(Change::Product(Product {
            sku: format!("SKU-{p}"),
            name: format!("Product {p}"),
            category: "Reagents".into(),
            created_at: start,
        }));
    }
    for l in 0..1_000 {
        changes.push(Change::Lot(Lot {
            lot_number: format!("L-{l}"),
            sku: format!("SKU-{}", l % 20),
            manufactured_on: "2026-01-01".into(),
            expires_on: "2027-12-31".into(),
            qc_tests: Vec::new(),
            created_at: start,
            recall: None,
        }));
    }
    let mut n = 0usize;
    for a in 0..args.accounts {
        let account_id = format!("acc-{a}");
        changes.push(Change::Account(Account {
            id: account_id.clone(),
            account_number: format!("{}", 100_000 + a),
            name: format!("Account {a}"),
            kind: AccountKind::Customer,
            region: "local".into(),
            created_at: start,
        }));
        let serial = format!("SN-{a}");
        changes.push(Change::Instrument(Instrument {
            serial: serial.clone(),
            model: "Cycler".into(),
            name: format!("Cycler {a}"),
            account_id: account_id.clone(),
            created_at: start,
        }));
        for u in 0..5 {
            changes.push(Change::User(User {
                id: format!("u-{a}-{u}"),
                sub: format!("u{u}@acc{a}.example"),
                email: format!("u{u}@acc{a}.example"),
                display_name: format!("User {u}"),
                account_id: Some(account_id.clone()),
                roles: Vec::new(),
                created_at: start,
            }));
        }
        for s in 0..args.shipments {
            n += 1;
            changes.push(Change::Shipment(Shipment {
                id: format!("sh-{a}-{s}"),
                lot_number: format!("L-{}", n % 1_000),
                from_account_id: None,
                account_id: account_id.clone(),
                shipped_on: portico_core::warehouse::date_text(day(n * 7).date()),
                quantity: 5,
                created_at: day(n * 7),
            }));
        }
        for u in 0..args.lot_uses {
            n += 1;
            changes.push(Change::LotUse(LotUse {
                id: format!("use-{a}-{u}"),
                lot_number: format!("L-{}", n % 1_000),
                serial: serial.clone(),
                account_id: account_id.clone(),
                loaded_at: day(n * 11),
            }));
        }
        for d in 0..args.uploads {
            n += 1;
            changes.push(Change::Document(Document {
                id: format!("doc-{a}-{d}"),
                account_id: account_id.clone(),
                uploaded_by: format!("u-{a}-0"),
                filename: format!("run-{d}.csv"),
                content_type: "text/csv".into(),
                size: 100,
                status: if d % 10 == 0 { DocumentStatus::Failed } else { DocumentStatus::Ready },
                failure_reason: None,
                metadata: None,
                instrument_serial: Some(serial.clone()),
                created_at: day(n * 13),
                updated_at: day(n * 13),
            }));
        }
        for e in 0..args.alerts {
            n += 1;
            changes.push(Change::Alert(Alert {
                id: format!("al-{a}-{e}"),
                serial: serial.clone(),
                account_id: account_id.clone(),
                severity: if e % 5 == 0 { "critical" } else { "error" }.into(),
                code: Some("E-1".into()),
                raised_at: day(n * 17),
            }));
        }
        for s in 0..args.sign_ins {
            n += 1;
            changes.push(Change::SignIn(SignIn {
                id: format!("in-{a}-{s}"),
                user_id: format!("u-{a}-{}", s % 5),
                account_id: Some(account_id.clone()),
                signed_in_at: day(n * 19),
            }));
        }
    }
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| ChangeRecord { version: i as u128 + 1, at: start, change })
        .collect()
}

fn config(dir: &std::path::Path) -> anyhow::Result<portico_config::Config> {
    let env: std::collections::BTreeMap<String, String> = [
        ("PORTICO_DATA_DIR", dir.to_str().unwrap_or(".")),
        ("PORTICO_HTTP_ADDR", "127.0.0.1:0"),
        ("PORTICO_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Ok(portico_config::Config::load(None, &env)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    // Load.
    let dir = tempfile::tempdir()?;
    let warehouse = portico_sqlite::SqliteWarehouse::open(&dir.path().join("warehouse.db"), None)
        .map_err(err)?;
    let start = OffsetDateTime::now_utc() - time::Duration::days(365);
    let records = year(&args, start);
    let started = Instant::now();
    let mut rows = 0;
    for (i, chunk) in records.chunks(5_000).enumerate() {
        let loaded = warehouse.load(chunk, Some(i as i64)).await.map_err(err)?;
        rows += loaded.written;
    }
    let took = started.elapsed();
    println!(
        "load: {} changes -> {rows} row groups in {:.1} s = {:.0} changes/s",
        records.len(),
        took.as_secs_f64(),
        records.len() as f64 / took.as_secs_f64()
    );
    let counts = warehouse.counts().map_err(err)?;
    println!("  rows: {counts:?}");

    // Reports over the year.
    let today = OffsetDateTime::now_utc().date();
    println!(
        "reports over one year of {} accounts ({} queries each):",
        args.accounts, args.queries
    );
    for report in Report::ALL {
        for account in [None, Some("acc-7".to_string())] {
            let from = Some(today - time::Duration::days(364));
            let query =
                ReportQuery::new(report, from, Some(today), today, account.clone()).map_err(err)?;
            let mut times = Vec::with_capacity(args.queries);
            let mut answered = 0;
            for _ in 0..args.queries {
                let t = Instant::now();
                answered = warehouse.report(&query).await.map_err(err)?.rows.len();
                times.push(t.elapsed());
            }
            times.sort();
            println!(
                "  {:<22} {:<14} {answered:>6} rows  p50 {:>9}  p99 {:>9}",
                report.name(),
                if account.is_some() { "account admin" } else { "staff" },
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99))
            );
        }
    }

    // End-to-end lag at a steady write rate, with the worker's loader running.
    let lag_dir = tempfile::tempdir()?;
    let composition = portico_local::compose(&config(lag_dir.path())?)?;
    let ctx = composition.context.clone();
    let loader = composition.warehouse.clone().ok_or_else(|| anyhow::anyhow!("no warehouse"))?;
    let feed = composition.changes.clone().ok_or_else(|| anyhow::anyhow!("no change table"))?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(portico_local::warehouse::run(ctx.clone(), loader.clone(), stop));
    // Let the first (empty) rebuild set the checkpoint.
    while loader.warehouse().checkpoint().map_err(err)?.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let (written_tx, mut written_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let writer = {
        let ctx = ctx.clone();
        let feed = feed.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            for i in 0..total {
                let due = began + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let ctx = ctx.clone();
                let feed = feed.clone();
                let written_tx = written_tx.clone();
                tokio::spawn(async move {
                    let new = NewAccount {
                        id: format!("lag-{i}"),
                        name: format!("Lag {i}"),
                        kind: AccountKind::Customer,
                        region: "local".into(),
                        created_at: OffsetDateTime::now_utc(),
                    };
                    if ctx.accounts.create_account(&new).await.is_ok()
                        && let Ok(seq) = feed.latest()
                    {
                        let _ = written_tx.send((seq, Instant::now()));
                    }
                });
            }
        })
    };
    let mut pending: Vec<(i64, Instant)> = Vec::new();
    let mut lags = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 30);
    while (lags.len() as u64) < total && Instant::now() < deadline {
        while let Ok(w) = written_rx.try_recv() {
            pending.push(w);
        }
        let at = loader.warehouse().checkpoint().map_err(err)?.unwrap_or(0);
        let now = Instant::now();
        pending.retain(|(seq, when)| {
            if *seq <= at {
                lags.push(now.saturating_duration_since(*when));
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await?;
    let _ = stop_tx.send(true);
    running.await?;
    lags.sort();
    println!(
        "lag at {} writes/s for {} s: {} writes seen, p50 {} p99 {} max {}",
        args.rate,
        args.seconds,
        lags.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags.last().copied().unwrap_or_default())
    );
    Ok(())
}
