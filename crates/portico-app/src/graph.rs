//! The local graph projector (and the rebuilds): reads the change table from its checkpoint, projects what it finds
//! (`portico_functions::graph`) and moves the checkpoint on. Any number of workers may run it on
//! one data dir: upserts are idempotent, so two workers applying the same changes are harmless.

use std::time::Duration;

use portico_core::Result;
use portico_functions::Context;
use portico_functions::graph::{self, Rebuilt};
use portico_sqlite::ChangeFeed;
use tokio::sync::watch;

/// The projector's name in the change table's checkpoints.
pub const CONSUMER: &str = "graph";
/// Changes projected per transaction.
const BATCH: u32 = 500;
/// How long an idle projector waits before it looks again: the graph's usual lag behind the API.
pub const IDLE: Duration = Duration::from_millis(100);

/// Projects up to one batch of pending changes; answers how many.
pub async fn project_pending(ctx: &Context, feed: &ChangeFeed) -> Result<usize> {
    let from = match feed.checkpoint(CONSUMER)? {
        Some(seq) => seq,
        // A data dir the projector never ran on (new, or made by an older Portico whose records
        // never became changes): build the graph from the records first.
        None => {
            rebuild(ctx, feed).await?;
            return Ok(0);
        }
    };
    let records = feed.after(from, BATCH)?;
    let Some(last) = records.last().map(|r| r.version) else {
        return Ok(0);
    };
    graph::project(ctx.graph.as_ref(), &records).await?;
    feed.set_checkpoint(CONSUMER, i64::try_from(last).unwrap_or(i64::MAX)).await?;
    let lag = feed.latest()?.saturating_sub(i64::try_from(last).unwrap_or(i64::MAX));
    metrics::gauge!("portico_graph_lag_changes").set(lag as f64);
    Ok(records.len())
}

/// Rebuilds the graph from every record, then moves the checkpoint to the newest change written
/// before the rebuild began (newer ones are projected afterwards, as usual).
pub async fn rebuild(ctx: &Context, feed: &ChangeFeed) -> Result<Rebuilt> {
    let latest = feed.latest()?;
    let rebuilt = graph::rebuild(ctx, latest.max(0) as u128).await?;
    feed.set_checkpoint(CONSUMER, latest).await?;
    Ok(rebuilt)
}

/// Rebuilds a graph that a stream feeds (Neptune, from the DynamoDB table's stream): every record
/// is written as version 0, below any stream record's sequence number, so the projector's records
/// win over it; and since an item's last stream record is its current state, the graph converges
/// on the table whatever the projector still had to deliver when the rebuild ran.
pub async fn rebuild_from_stream_start(ctx: &Context) -> Result<Rebuilt> {
    graph::rebuild(ctx, 0).await
}

/// Runs the projector until `stop` turns true.
pub async fn run(ctx: std::sync::Arc<Context>, feed: ChangeFeed, mut stop: watch::Receiver<bool>) {
    loop {
        let idle = match project_pending(&ctx, &feed).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::warn!(error = %e, "graph projection failed; will retry");
                true
            }
        };
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
