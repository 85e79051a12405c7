//! `portico export status` (either backend) and `portico export rebuild` (the local warehouse).

use anyhow::Context;
use portico_config::Config;

fn loader(
    composition: &portico_local::Composition,
) -> anyhow::Result<&portico_local::warehouse::Loader> {
    composition.warehouse.as_ref().context(
        "`export rebuild` reloads the local warehouse; on AWS the stream-poller feeds Snowflake",
    )
}

/// Prints where the warehouse stands (locally, or Snowflake's rows on the AWS backend).
pub fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let composition = runtime.block_on(portico_local::compose_backend(config))?;
    let status = runtime
        .block_on(composition.context.warehouse.status())
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
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

/// Reloads the warehouse from the records and writes every snapshot.
pub fn rebuild(config: &Config) -> anyhow::Result<()> {
    let composition = portico_local::compose(config)?;
    let loader = loader(&composition)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let started = std::time::Instant::now();
        let (rebuilt, loaded) =
            loader.rebuild(&composition.context).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let rows = loader.snapshot(None).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        println!(
            "warehouse rebuilt in {:.1} s from {} records ({} accounts, {} users, {} shipments, {} lot uses, {} documents, {} alerts, {} sign-ins): {} rows written, {rows} rows in the snapshots under {}",
            started.elapsed().as_secs_f64(),
            rebuilt.accounts
                + rebuilt.users
                + rebuilt.instruments
                + rebuilt.products
                + rebuilt.lots
                + rebuilt.shipments
                + rebuilt.lot_uses
                + rebuilt.documents
                + rebuilt.alerts
                + rebuilt.sign_ins,
            rebuilt.accounts,
            rebuilt.users,
            rebuilt.shipments,
            rebuilt.lot_uses,
            rebuilt.documents,
            rebuilt.alerts,
            rebuilt.sign_ins,
            loaded.written,
            loader.snapshot_dir().display()
        );
        Ok(())
    })
}
