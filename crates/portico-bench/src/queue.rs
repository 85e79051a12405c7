//! The SQLite queue on its own: producers send, consumers receive and delete, and the run reports
//! end-to-end messages per second. Uses a temporary database; no server needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_core::{Queue, Receive};
use portico_sqlite::{Database, SqliteQueue};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    #[arg(long, default_value_t = 4)]
    producers: usize,
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Messages taken per receive (SQS allows up to 10).
    #[arg(long, default_value_t = 10)]
    batch: u32,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Database::open(&dir.path().join("queue.db")).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let queue = Arc::new(SqliteQueue::new(db, 5));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_producer = args.messages / args.producers.max(1);
    let total = per_producer * args.producers.max(1);
    for p in 0..args.producers.max(1) {
        let queue = queue.clone();
        tasks.spawn(async move {
            let attributes = BTreeMap::new();
            for i in 0..per_producer {
                let body = format!("{{\"producer\":{p},\"n\":{i}}}");
                if queue.send("bench", &body, &attributes).await.is_err() {
                    return;
                }
            }
        });
    }
    for _ in 0..args.consumers.max(1) {
        let (queue, done) = (queue.clone(), done.clone());
        let batch = args.batch;
        tasks.spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let Ok(messages) = queue
                    .receive(
                        "bench",
                        Receive {
                            max: batch,
                            visibility: Duration::from_secs(30),
                            wait: Duration::from_millis(100),
                        },
                    )
                    .await
                else {
                    return;
                };
                for m in messages {
                    if queue.delete("bench", &m.receipt).await.unwrap_or(false) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    println!(
        "queue: {total} messages sent, received and deleted by {} producers / {} consumers (batch {}) in {secs:.2} s: {:.0} messages/s end to end",
        args.producers,
        args.consumers,
        args.batch,
        total as f64 / secs
    );
    Ok(())
}
