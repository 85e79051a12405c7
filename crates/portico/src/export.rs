//! `portico export status` (either backend) and `portico export rebuild` (the local warehouse).

use anyhow::Context;
use portico_config::Config;

/// Prints where the warehouse stands (locally, or Snowflake's rows on the AWS backend).
pub fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let composition = runtime.block_on(portico_local::compose_backend(config))?;
    let status = runtime
        .block_on(composition.context.warehouse.status())
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // On AWS the checkpoint is the stream-poller's, kept in the table.
    #[cfg(feature = "aws")]
    let status = match composition.warehouse {
        Some(_) => status,
        None => {
            let (at, holder) =
                runtime.block_on(portico_local::warehouse::stream_checkpoint(config))?;
            if let Some(holder) = holder {
                eprintln!("a stream-poller run ({holder}) holds the lease");
            }
            portico_core::warehouse::WarehouseStatus { checkpoint: at, ..status }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let as_of = status
        .as_of
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into());
    match &composition.warehouse {
        Some(loader) => {
            println!("warehouse   {}", config.data_dir.join("warehouse.db").display());
            println!("snapshots   {}", loader.snapshot_dir().display());
        }
        None => println!(
            "warehouse   Snowflake ({})",
            config.snowflake.account.as_deref().unwrap_or("-")
        ),
    }
    println!(
        "checkpoint  {}",
        status.checkpoint.as_deref().unwrap_or("none (loads everything on the next run)")
    );
    println!("lag         {} changes", status.lag.unwrap_or(0));
    println!("as of       {as_of}");
    for (table, rows) in &status.rows {
        println!("{table:<16} {rows:>10} rows");
    }
    Ok(())
}

/// Reloads the warehouse from the records: the local one (and every snapshot), or Snowflake on
/// the AWS backend.
pub fn rebuild(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let composition = portico_local::compose_backend(config).await?;
        let started = std::time::Instant::now();
        let Some(loader) = composition.warehouse.as_ref() else {
            return rebuild_snowflake(config, &composition, started).await;
        };
        let (rebuilt, loaded) =
            loader.rebuild(&composition.context).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let rows = loader.snapshot(None).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        println!(
            "warehouse rebuilt in {:.1} s from {} ({} rows written, {rows} rows in the snapshots under {})",
            started.elapsed().as_secs_f64(),
            counts(&rebuilt),
            loaded.written,
            loader.snapshot_dir().display()
        );
        Ok(())
    })
}

fn counts(r: &portico_functions::graph::Rebuilt) -> String {
    let all = r.accounts
        + r.users
        + r.instruments
        + r.products
        + r.lots
        + r.shipments
        + r.lot_uses
        + r.documents
        + r.alerts
        + r.sign_ins;
    format!(
        "{all} records: {} accounts, {} users, {} shipments, {} lot uses, {} documents, {} alerts, {} sign-ins",
        r.accounts, r.users, r.shipments, r.lot_uses, r.documents, r.alerts, r.sign_ins
    )
}

#[cfg(feature = "aws")]
async fn rebuild_snowflake(
    config: &Config,
    composition: &portico_local::Composition,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let (rebuilt, merged) =
        portico_local::warehouse::rebuild_snowflake(&composition.context, config).await?;
    println!(
        "Snowflake warehouse rebuilt in {:.1} s from {} ({} statements, {} rows inserted)",
        started.elapsed().as_secs_f64(),
        counts(&rebuilt),
        merged.statements,
        merged.inserted
    );
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn rebuild_snowflake(
    _config: &Config,
    _composition: &portico_local::Composition,
    _started: std::time::Instant,
) -> anyhow::Result<()> {
    anyhow::bail!("this backend keeps no warehouse that this build can rebuild")
}
