//! The outbox sender against a local stand-in that speaks SendGrid's Mail Send API and accepts
//! everything: e-mails queued, sent and recorded per second. No server needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use portico_core::{EmailStatus, OutboundEmail, PageRequest};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 5000)]
    emails: usize,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let app = Router::new().route(
        "/v3/mail/send",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                (StatusCode::ACCEPTED, [("x-message-id", "bench")])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir()?;
    let env: std::collections::BTreeMap<String, String> = [
        ("PORTICO_DATA_DIR", dir.path().to_str().unwrap_or(".")),
        ("PORTICO_HTTP_ADDR", "127.0.0.1:0"),
        ("PORTICO_SENDGRID_API_KEY", "SG.bench"),
        ("PORTICO_SENDGRID_BASE_URL", base.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = portico_config::Config::load(None, &env)?;
    let composition = portico_local::compose(&config)?;
    let ctx = composition.context.clone();
    for n in 0..args.emails {
        ctx.outbox
            .enqueue(&OutboundEmail {
                id: format!("bench-{n}"),
                to: format!("user{n}@bench.example"),
                subject: "[Portico] Benchmark".into(),
                text: "Hello".into(),
                html: "<p>Hello</p>".into(),
                category: "bench".into(),
            })
            .await?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let worker = tokio::spawn(portico_local::worker::run(
        composition.clone(),
        portico_local::worker_settings(&config),
        stop_rx,
    ));
    let probe = PageRequest { limit: 1, cursor: None };
    loop {
        let pending = ctx.outbox.list_outbox(Some(EmailStatus::Pending), &probe).await?;
        let sending = ctx.outbox.list_outbox(Some(EmailStatus::Sending), &probe).await?;
        if pending.items.is_empty() && sending.items.is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("the outbox did not drain in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = worker.await;
    println!(
        "outbox: {} e-mails sent to the SendGrid stand-in and recorded in {secs:.2} s: {:.0} e-mails/s ({} accepted)",
        args.emails,
        args.emails as f64 / secs,
        accepted.load(Ordering::Relaxed)
    );
    Ok(())
}
