//! The local warehouse's loader: reads the change table from the warehouse's own checkpoint
//! (kept in `warehouse.db`, committed with the rows it covers), loads what it finds, and keeps
//! the CSV snapshots under `<data_dir>/warehouse/` fresh: the tables a load wrote are written
//! again at most every `SNAPSHOT_EVERY`. On a warehouse that has no checkpoint (new, emptied
//! by a schema change, or `portico export rebuild`) it first loads every record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_core::Result;
use portico_functions::Context;
use portico_functions::graph::{Rebuilt, each_record};
use portico_sqlite::{ChangeFeed, Loaded, SqliteWarehouse};
use tokio::sync::watch;

/// Changes loaded per transaction.
const BATCH: u32 = 5_000;
/// How long an idle loader waits before it looks again.
pub const IDLE: Duration = Duration::from_millis(200);
/// How often at most the snapshots of changed tables are written again.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

/// The local warehouse with its change feed and snapshot folder.
#[derive(Clone)]
pub struct Loader {
    warehouse: SqliteWarehouse,
    feed: ChangeFeed,
    dir: PathBuf,
}

impl Loader {
    pub fn new(warehouse: SqliteWarehouse, feed: ChangeFeed, dir: PathBuf) -> Loader {
        Loader { warehouse, feed, dir }
    }

    pub fn warehouse(&self) -> &SqliteWarehouse {
        &self.warehouse
    }

    /// Where the CSV snapshots are written.
    pub fn snapshot_dir(&self) -> &Path {
        &self.dir
    }

    /// Loads up to one batch of pending changes (after a rebuild, if the warehouse has no
    /// checkpoint); answers what it wrote and how many changes it read.
    pub async fn load_pending(&self, ctx: &Context) -> Result<(Loaded, usize)> {
        let Some(from) = self.warehouse.checkpoint()? else {
            let (_, loaded) = self.rebuild(ctx).await?;
            return Ok((loaded, 0));
        };
        let records = self.feed.after(from, BATCH)?;
        let Some(last) = records.last().map(|r| r.version) else {
            return Ok((Loaded::default(), 0));
        };
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let loaded = self.warehouse.load(&records, Some(last)).await?;
        metrics::counter!("portico_warehouse_changes_loaded_total").increment(records.len() as u64);
        let lag = self.feed.latest()?.saturating_sub(last);
        metrics::gauge!("portico_warehouse_lag_changes").set(lag as f64);
        Ok((loaded, records.len()))
    }

    /// Empties the warehouse and loads every record the ports hold, as of the newest change
    /// written before it began (newer ones are loaded afterwards, as usual). The checkpoint is
    /// set only when the whole rebuild is in: one that is cut off starts again.
    pub async fn rebuild(&self, ctx: &Context) -> Result<(Rebuilt, Loaded)> {
        let latest = self.feed.latest()?;
        self.warehouse.clear().await?;
        let written = std::sync::Mutex::new(Loaded::default());
        let warehouse = &self.warehouse;
        let written_ref = &written;
        let rebuilt = each_record(ctx, latest.max(0) as u128, |records| async move {
            let loaded = warehouse.load(&records, None).await?;
            if let Ok(mut all) = written_ref.lock() {
                all.written += loaded.written;
                all.tables.extend(loaded.tables);
            }
            Ok(records.len())
        })
        .await?;
        self.warehouse.load(&[], Some(latest)).await?;
        let loaded = written.into_inner().unwrap_or_default();
        tracing::info!(?rebuilt, rows = loaded.written, "warehouse rebuilt");
        Ok((rebuilt, loaded))
    }

    /// Writes the CSV snapshots of `tables` (every table when `None`); answers the rows written.
    pub async fn snapshot(&self, tables: Option<BTreeSet<&'static str>>) -> Result<u64> {
        let (warehouse, dir) = (self.warehouse.clone(), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            portico_sqlite::snapshot(&warehouse, &dir, tables.as_ref())
        })
        .await
        .map_err(|e| portico_core::Error::Unexpected(anyhow::anyhow!("snapshot task: {e}")))?
    }
}

/// Runs the loader until `stop` turns true.
pub async fn run(ctx: Arc<Context>, loader: Loader, mut stop: watch::Receiver<bool>) {
    // The snapshots are written whole once at start (the folder may be new, or older than the
    // warehouse), then table by table as loads change them.
    let mut dirty: BTreeSet<&'static str> = BTreeSet::new();
    let mut all_due = true;
    let mut last_snapshot = Instant::now() - SNAPSHOT_EVERY;
    loop {
        let idle = match loader.load_pending(&ctx).await {
            Ok((loaded, read)) => {
                dirty.extend(loaded.tables);
                read == 0
            }
            Err(e) => {
                tracing::warn!(error = %e, "warehouse load failed; will retry");
                true
            }
        };
        if (all_due || !dirty.is_empty()) && last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            let tables = if all_due { None } else { Some(std::mem::take(&mut dirty)) };
            match loader.snapshot(tables.clone()).await {
                Ok(_) => all_due = false,
                Err(e) => {
                    tracing::warn!(error = %e, "warehouse snapshot failed; will retry");
                    dirty.extend(tables.into_iter().flatten());
                }
            }
            last_snapshot = Instant::now();
        }
        if *stop.borrow() {
            return;
        }
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Rebuilds the Snowflake warehouse (the AWS backend) from every record the ports hold: empties
/// it and loads every record as version 0, below any version the stream carries, so what the
/// stream-poller delivers meanwhile or later wins (as `graph::rebuild_from_stream_start` does
/// for Neptune).
#[cfg(feature = "aws")]
pub async fn rebuild_snowflake(
    ctx: &Context,
    config: &portico_config::Config,
) -> anyhow::Result<(Rebuilt, portico_snowflake::Merged)> {
    use portico_core::graph::batch;
    use portico_core::warehouse::{Upsert, upserts};

    let settings = portico_snowflake::Settings::from_config(&config.snowflake)?
        .ok_or_else(|| anyhow::anyhow!("set snowflake.account (PORTICO_SNOWFLAKE_ACCOUNT)"))?;
    let warehouse = portico_snowflake::SnowflakeWarehouse::new(settings)?;
    warehouse.ensure_schema().await?;
    warehouse.clear().await?;
    let merged = std::sync::Mutex::new(portico_snowflake::Merged::default());
    let (warehouse, merged_ref) = (&warehouse, &merged);
    let rebuilt = each_record(ctx, 0, |records| async move {
        let rows: Vec<Upsert> = batch(&records).elements.iter().flat_map(upserts).collect();
        let done = warehouse
            .load(&rows)
            .await
            .map_err(|e| portico_core::Error::Unavailable(e.to_string()))?;
        if let Ok(mut all) = merged_ref.lock() {
            all.statements += done.statements;
            all.inserted += done.inserted;
            all.updated += done.updated;
        }
        Ok(records.len())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok((rebuilt, merged.into_inner().unwrap_or_default()))
}

/// The stream-poller's checkpoint (`commitNum/opNum`) and its current holder, on the AWS backend.
#[cfg(feature = "aws")]
pub async fn stream_checkpoint(
    config: &portico_config::Config,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let sdk = portico_aws::sdk_config(&crate::aws_settings(config)?).await;
    let lease = portico_aws::StreamLease::new(
        portico_aws::dynamodb(&sdk),
        &config.aws.table,
        "portico export status",
        Duration::ZERO,
    );
    let (at, holder) = lease.peek().await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok((at.map(|p| format!("{}/{}", p.commit_num, p.op_num)), holder))
}
