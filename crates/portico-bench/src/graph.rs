//! The traceability graph at scale, on the local backend (no server needed): writes a catalogue
//! of accounts, users, instruments, lots, shipment chains, lot uses and run files through the
//! record ports (each write appends its change record, as through the API), runs the local
//! projector over the change table and reports its changes/s, then asks every lot's impact and
//! reports p50/p99/max.

use std::time::{Duration, Instant};

use portico_core::domain::{
    AccountKind, Caller, Document, DocumentStatus, Instrument, Lot, LotUse, Product, QcTest, Role,
    Shipment, User,
};
use portico_core::ports::NewAccount;
use time::OffsetDateTime;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5_000)]
    accounts: usize,
    /// Of the accounts, how many are distributors (the first ones).
    #[arg(long, default_value_t = 500)]
    distributors: usize,
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    #[arg(long, default_value_t = 20_000)]
    instruments: usize,
    #[arg(long, default_value_t = 1_000)]
    lots: usize,
    #[arg(long, default_value_t = 100_000)]
    shipments: usize,
    /// The longest chain of shipments (manufacturer -> distributors -> customer).
    #[arg(long, default_value_t = 4)]
    max_chain: usize,
    /// Impact queries: every lot in turn, this many in all.
    #[arg(long, default_value_t = 5_000)]
    queries: usize,
}

/// A small deterministic generator (xorshift64*), so every run builds the same catalogue.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

fn err(e: portico_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env: std::collections::BTreeMap<String, String> = [
        ("PORTICO_DATA_DIR", dir.path().to_str().unwrap_or(".")),
        ("PORTICO_HTTP_ADDR", "127.0.0.1:0"),
        ("PORTICO_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = portico_config::Config::load(None, &env)?;
    let composition = portico_local::compose(&config)?;
    let ctx = composition.context.clone();
    let feed = composition.changes.clone().ok_or_else(|| anyhow::anyhow!("no change table"))?;
    // The projector's first pass on an empty data dir builds the (empty) graph and sets its
    // checkpoint, so what follows is projected from the change table.
    portico_local::graph::project_pending(&ctx, &feed).await.map_err(err)?;

    let at = OffsetDateTime::now_utc();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut accounts = Vec::with_capacity(args.accounts);
    for n in 0..args.accounts {
        let kind =
            if n < args.distributors { AccountKind::Distributor } else { AccountKind::Customer };
        let new = NewAccount {
            id: format!("acc-{n:05}"),
            name: format!("Account {n}"),
            kind,
            region: config.region.clone(),
            created_at: at,
        };
        accounts.push(ctx.accounts.create_account(&new).await.map_err(err)?.id);
    }
    let roles = [Role::Scientist, Role::LabManager, Role::AccountAdmin];
    for n in 0..args.users {
        let account = &accounts[n % accounts.len()];
        let user = User {
            id: format!("u-{n:06}"),
            sub: format!("user-{n}@bench.example"),
            email: format!("user-{n}@bench.example"),
            display_name: format!("User {n}"),
            account_id: Some(account.clone()),
            roles: vec![roles[n % roles.len()]],
            created_at: at,
        };
        ctx.users.insert_user(&user).await.map_err(err)?;
    }
    let customers = &accounts[args.distributors.min(accounts.len() - 1)..];
    let mut instruments = Vec::with_capacity(args.instruments);
    for n in 0..args.instruments {
        let account = customers[n % customers.len()].clone();
        let instrument = Instrument {
            serial: format!("SN-{n:06}"),
            model: "Sequencer X".into(),
            name: format!("Sequencer {n}"),
            account_id: account.clone(),
            created_at: at,
        };
        ctx.instruments.create_instrument(&instrument, "bench").await.map_err(err)?;
        instruments.push((instrument.serial, account));
    }
    let product = Product {
        sku: "RGT-1".into(),
        name: "Master Mix".into(),
        category: "Reagents".into(),
        created_at: at,
    };
    ctx.catalogue.create_product(&product).await.map_err(err)?;
    let qc = QcTest {
        name: "Purity".into(),
        method: "HPLC".into(),
        specification: ">= 98 %".into(),
        result: "99".into(),
        unit: "%".into(),
        pass: true,
    };
    for n in 0..args.lots {
        let lot = Lot {
            lot_number: format!("L-{n:05}"),
            sku: product.sku.clone(),
            manufactured_on: "2026-01-01".into(),
            expires_on: "2027-01-01".into(),
            qc_tests: vec![qc.clone()],
            created_at: at,
            recall: None,
        };
        ctx.catalogue.create_lot(&lot).await.map_err(err)?;
    }
    // Shipment chains: the manufacturer to a distributor (or straight to a customer), on through
    // up to `max_chain - 1` more hops, halving the quantity each time, ending at a customer.
    let distributors = &accounts[..args.distributors.min(accounts.len())];
    let mut made = 0;
    let mut chain_id = 0;
    while made < args.shipments {
        let lot = format!("L-{:05}", chain_id % args.lots);
        chain_id += 1;
        let hops = 1 + rng.below(args.max_chain.max(1));
        let mut from: Option<String> = None;
        let mut quantity = 1u32 << 12;
        for hop in 0..hops {
            let last = hop + 1 == hops;
            let to = if last || distributors.is_empty() {
                customers[rng.below(customers.len())].clone()
            } else {
                distributors[rng.below(distributors.len())].clone()
            };
            if from.as_deref() == Some(to.as_str()) {
                break;
            }
            let shipment = Shipment {
                id: format!("s-{made:06}"),
                lot_number: lot.clone(),
                from_account_id: from.clone(),
                account_id: to.clone(),
                shipped_on: "2026-02-01".into(),
                quantity,
                created_at: at,
            };
            ctx.catalogue.create_shipment(&shipment).await.map_err(err)?;
            made += 1;
            quantity /= 2;
            from = Some(to);
            if made >= args.shipments {
                break;
            }
        }
    }
    // Every instrument loads one lot and uploads one run file after it.
    for (n, (serial, account)) in instruments.iter().enumerate() {
        let lot = format!("L-{:05}", rng.below(args.lots));
        let lot_use = LotUse {
            id: format!("use-{n:06}"),
            lot_number: lot,
            serial: serial.clone(),
            account_id: account.clone(),
            loaded_at: at,
        };
        ctx.catalogue.record_lot_use(&lot_use).await.map_err(err)?;
        let document = Document {
            id: format!("doc-{n:06}"),
            account_id: account.clone(),
            uploaded_by: "u-000000".into(),
            filename: format!("run-{n}.csv"),
            content_type: "text/csv".into(),
            size: 100,
            status: DocumentStatus::Ready,
            failure_reason: None,
            metadata: None,
            instrument_serial: Some(serial.clone()),
            created_at: at + Duration::from_secs(60),
            updated_at: at + Duration::from_secs(60),
        };
        ctx.documents.create_document(&document).await.map_err(err)?;
    }
    let written = feed.latest().map_err(err)?;
    let seeding = started.elapsed();
    println!(
        "wrote {written} records ({} accounts, {} users, {} instruments, {} lots, {made} shipments in chains up to {} deep, {} lot uses, {} run files) in {:.1} s",
        args.accounts,
        args.users,
        args.instruments,
        args.lots,
        args.max_chain,
        instruments.len(),
        instruments.len(),
        seeding.as_secs_f64()
    );

    let started = Instant::now();
    let mut projected = 0;
    loop {
        let n = portico_local::graph::project_pending(&ctx, &feed).await.map_err(err)?;
        if n == 0 {
            break;
        }
        projected += n;
    }
    let projecting = started.elapsed();
    println!(
        "projector: {projected} changes in {:.2} s = {:.0} changes/s (change table -> graph, batches of 500)",
        projecting.as_secs_f64(),
        projected as f64 / projecting.as_secs_f64()
    );

    let admin = Caller {
        sub: "admin@bench.example".into(),
        user: Some(User {
            id: "u-admin".into(),
            sub: "admin@bench.example".into(),
            email: "admin@bench.example".into(),
            display_name: "Admin".into(),
            account_id: None,
            roles: vec![Role::Admin],
            created_at: at,
        }),
    };
    let mut latencies = Vec::with_capacity(args.queries);
    let (mut reached, mut widest) = (0usize, 0usize);
    for q in 0..args.queries {
        let lot = format!("L-{:05}", q % args.lots);
        let started = Instant::now();
        let impact = portico_functions::trace::impact(&ctx, &admin, &lot).await.map_err(err)?;
        latencies.push(started.elapsed());
        reached += impact.accounts.len();
        widest = widest.max(impact.accounts.len());
    }
    latencies.sort();
    let pick = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "impact: {} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; accounts reached per lot: mean {:.1}, max {widest}",
        latencies.len(),
        pick(0.50).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        reached as f64 / latencies.len().max(1) as f64
    );

    // A rebuild from the records, for comparison with the projector.
    let started = Instant::now();
    let rebuilt = portico_local::graph::rebuild(&ctx, &feed).await.map_err(err)?;
    println!("rebuild from the records: {:.2} s ({rebuilt:?})", started.elapsed().as_secs_f64());
    Ok(())
}
