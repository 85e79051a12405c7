//! The queue workers: upload events in, checked documents out. They run inside `portico serve`
//! (unless disabled) and alone in `portico worker`, as many processes as one likes: the queue
//! hands each message to one worker at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_core::{Delivery, QueueMessage, Receive};
use portico_functions::Context;
use portico_functions::documents::{self, Processed, UPLOADS_QUEUE};
use portico_sqlite::DEAD_LETTER_SUFFIX;
use tokio::sync::watch;

use crate::Composition;

const RECEIVES: &str = "portico_queue_receives_total";
const PROCESSED: &str = "portico_queue_processed_total";
const RETRIES: &str = "portico_queue_retries_total";
const DURATION: &str = "portico_queue_processing_duration_seconds";
const DEPTH: &str = "portico_queue_depth";
const IN_FLIGHT: &str = "portico_queue_in_flight";
const OLDEST: &str = "portico_queue_oldest_message_age_seconds";
const DEAD: &str = "portico_queue_dead_letters";

/// How the workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub visibility: Duration,
    /// First delay before an e-mail is tried again; doubles per attempt.
    pub email_retry_base: Duration,
    /// Attempts before an e-mail is given up.
    pub email_max_attempts: u32,
}

const EMAILS_SENT: &str = "portico_emails_sent_total";
const EMAILS_FAILED: &str = "portico_emails_failed_total";
const EMAILS_RETRIED: &str = "portico_emails_retried_total";
const EMAIL_SEND: &str = "portico_email_send_duration_seconds";
/// How long a sender's claim on an e-mail lasts; if the sender dies, the e-mail is sent again.
const EMAIL_LEASE: Duration = Duration::from_secs(60);

/// Runs the workers until `stop` turns true; a message being processed is finished first. On
/// the local backend they include the graph projector and the warehouse's loader.
pub async fn run(composition: Composition, settings: WorkerSettings, stop: watch::Receiver<bool>) {
    let ctx = composition.context;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(feed) = composition.changes {
        tasks.spawn(crate::graph::run(ctx.clone(), feed, stop.clone()));
    }
    if let Some(loader) = composition.warehouse {
        tasks.spawn(crate::warehouse::run(ctx.clone(), loader, stop.clone()));
    }
    if let Some(export) = composition.audit_export {
        tasks.spawn(crate::audit_export::run(export, stop.clone()));
    }
    for _ in 0..settings.concurrency.max(1) {
        tasks.spawn(process_uploads(ctx.clone(), settings, stop.clone()));
    }
    tasks.spawn(handle_dead_letters(ctx.clone(), stop.clone()));
    tasks.spawn(send_emails(ctx.clone(), settings, stop.clone()));
    tasks.spawn(report_queue(ctx, stop));
    while tasks.join_next().await.is_some() {}
    tracing::info!("workers stopped");
}

async fn process_uploads(
    ctx: Arc<Context>,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let received = tokio::select! {
            received = ctx.queue.receive(UPLOADS_QUEUE, Receive { max: 1, visibility: settings.visibility, wait: Duration::from_secs(1) }) => received,
            _ = stop.changed() => return,
        };
        match received {
            Ok(messages) => {
                for message in messages {
                    handle(&ctx, settings, message).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive from the upload queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn handle(ctx: &Arc<Context>, settings: WorkerSettings, message: QueueMessage) {
    metrics::counter!(RECEIVES, "queue" => UPLOADS_QUEUE).increment(1);
    // Keep the message hidden while the work goes on, however long the file.
    let heartbeat = {
        let (ctx, receipt) = (ctx.clone(), message.receipt.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(settings.visibility / 2).await;
                let _ =
                    ctx.queue.change_visibility(UPLOADS_QUEUE, &receipt, settings.visibility).await;
            }
        })
    };
    let started = Instant::now();
    let result = documents::process_upload(ctx, &crate::s3_events::keys(&message.body)).await;
    heartbeat.abort();
    metrics::histogram!(DURATION, "queue" => UPLOADS_QUEUE).record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            for outcome in &outcomes {
                let label = match outcome {
                    Processed::Ready(_) => "ready",
                    Processed::Failed(..) => "failed",
                    Processed::AlreadyDone(_) => "duplicate",
                    Processed::Unknown(_) => "unknown",
                };
                metrics::counter!(PROCESSED, "queue" => UPLOADS_QUEUE, "outcome" => label)
                    .increment(1);
            }
            if let Err(e) = ctx.queue.delete(UPLOADS_QUEUE, &message.receipt).await {
                // It will come back and be recognised as done.
                tracing::warn!(error = %e, message_id = message.id, "processed message not deleted");
            }
        }
        Err(e) => {
            // Back off: 2, 4, 8 ... seconds before the next attempt, never longer than the
            // visibility timeout the operator chose.
            let backoff =
                Duration::from_secs(1u64 << message.receive_count.min(6)).min(settings.visibility);
            tracing::warn!(error = %e, message_id = message.id, attempt = message.receive_count, ?backoff, "upload event failed; will retry");
            metrics::counter!(RETRIES, "queue" => UPLOADS_QUEUE).increment(1);
            let _ = ctx.queue.change_visibility(UPLOADS_QUEUE, &message.receipt, backoff).await;
        }
    }
}

/// Documents whose events were dead-lettered are marked failed; the messages stay in the
/// dead-letter queue (hidden for a day at a time) for an operator to inspect.
async fn handle_dead_letters(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let queue = format!("{UPLOADS_QUEUE}{DEAD_LETTER_SUFFIX}");
    loop {
        let received = tokio::select! {
            received = ctx.queue.receive(&queue, Receive { max: 10, visibility: Duration::from_secs(24 * 3600), wait: Duration::from_secs(1) }) => received,
            _ = stop.changed() => return,
        };
        for message in received.unwrap_or_default() {
            if let Err(e) =
                documents::dead_lettered(&ctx, &crate::s3_events::keys(&message.body)).await
            {
                tracing::warn!(error = %e, "dead-lettered upload not recorded; will retry");
                let _ = ctx
                    .queue
                    .change_visibility(&queue, &message.receipt, Duration::from_secs(10))
                    .await;
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

async fn report_queue(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Ok(stats) = ctx.queue.stats(UPLOADS_QUEUE).await {
            metrics::gauge!(DEPTH, "queue" => UPLOADS_QUEUE).set(stats.visible as f64);
            metrics::gauge!(IN_FLIGHT, "queue" => UPLOADS_QUEUE).set(stats.in_flight as f64);
            metrics::gauge!(OLDEST, "queue" => UPLOADS_QUEUE)
                .set(stats.oldest_age_ms as f64 / 1000.0);
            metrics::gauge!(DEAD, "queue" => UPLOADS_QUEUE).set(stats.dead as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The outbox sender: claims due e-mails, hands them to the mailer, records what happened.
/// At-least-once: an e-mail is marked sent only after the provider accepted it, and a claim
/// that lapses (the sender died mid-send) makes it due again.
async fn send_emails(ctx: Arc<Context>, settings: WorkerSettings, mut stop: watch::Receiver<bool>) {
    loop {
        let idle = send_due_emails(&ctx, settings).await == 0;
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One pass of the outbox sender: sends the e-mails due now (up to 20) and returns how many it
/// claimed. The Lambda host runs passes on a schedule; `portico worker` runs them in a loop.
pub async fn send_due_emails(ctx: &Arc<Context>, settings: WorkerSettings) -> usize {
    let claimed = match ctx.outbox.claim_due(20, EMAIL_LEASE).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox");
            Vec::new()
        }
    };
    let count = claimed.len();
    let sends = claimed.into_iter().map(|(email, attempt)| {
        let ctx = ctx.clone();
        async move {
            let started = Instant::now();
            let delivery = ctx.mailer.deliver(&email).await;
            metrics::histogram!(EMAIL_SEND).record(started.elapsed().as_secs_f64());
            record(&ctx, settings, &email, attempt, delivery).await;
        }
    });
    futures_util::future::join_all(sends).await;
    count
}

async fn record(
    ctx: &Context,
    settings: WorkerSettings,
    email: &portico_core::OutboundEmail,
    attempt: u32,
    delivery: Delivery,
) {
    let category = email.category.clone();
    let result = match delivery {
        Delivery::Accepted { provider_message_id } => {
            metrics::counter!(EMAILS_SENT, "category" => category).increment(1);
            ctx.outbox.mark_sent(&email.id, provider_message_id.as_deref()).await
        }
        Delivery::Rejected { reason } => {
            tracing::warn!(id = %email.id, reason, "e-mail refused by the provider");
            metrics::counter!(EMAILS_FAILED, "category" => category).increment(1);
            ctx.outbox.mark_failed(&email.id, &reason).await
        }
        Delivery::RetryLater { reason, .. } if attempt >= settings.email_max_attempts => {
            let reason = format!("gave up after {attempt} attempts: {reason}");
            tracing::warn!(id = %email.id, reason, "e-mail failed");
            metrics::counter!(EMAILS_FAILED, "category" => category).increment(1);
            ctx.outbox.mark_failed(&email.id, &reason).await
        }
        Delivery::RetryLater { reason, after } => {
            let delay = after.unwrap_or_else(|| backoff(settings.email_retry_base, attempt));
            tracing::info!(id = %email.id, reason, ?delay, attempt, "e-mail will be retried");
            metrics::counter!(EMAILS_RETRIED, "category" => category).increment(1);
            ctx.outbox.retry_later(&email.id, delay, &reason).await
        }
    };
    if let Err(e) = result {
        // The claim lapses and the e-mail is tried again: at least once, never lost.
        tracing::warn!(id = %email.id, error = %e, "e-mail outcome not recorded");
    }
}

/// `base * 2^(attempt-1)`, at most ten minutes, with up to 25% random jitter so that many
/// e-mails failing together do not come back together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(600));
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut byte);
    capped + capped.mul_f64(f64::from(byte[0]) / 255.0 * 0.25)
}
