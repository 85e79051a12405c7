//! Portico's local host: composes the embedded adapters (SQLite, the dev issuer or a remote
//! issuer's keys) with the HTTP gateway and serves it, with Prometheus metrics beside it.
//!
//! Like mini-redis, a server is bound first (so callers learn the real addresses of port-0
//! listeners) and then run until a shutdown future resolves.

mod compose;
pub mod demo;
mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_auth::DevIssuer;
use portico_config::Config;
use tokio::net::TcpListener;

pub use compose::{Composition, compose, dev_issuer_url, load_dev_issuer};

/// A server whose listeners are bound, ready to run.
pub struct Server {
    composition: Composition,
    http: TcpListener,
    metrics: TcpListener,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

impl Server {
    /// Opens the data dir and binds every listener named in `config`.
    pub async fn bind(config: &Config) -> anyhow::Result<Server> {
        let prometheus = metrics::recorder()?;
        let composition = compose(config)?;
        let http = TcpListener::bind(&config.http.addr)
            .await
            .with_context(|| format!("binding HTTP listener on {}", config.http.addr))?;
        let metrics = TcpListener::bind(&config.metrics.addr)
            .await
            .with_context(|| format!("binding metrics listener on {}", config.metrics.addr))?;
        Ok(Server {
            composition,
            http,
            metrics,
            prometheus,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// The local dev issuer, when no external issuer is configured.
    pub fn dev_issuer(&self) -> Option<Arc<DevIssuer>> {
        self.composition.dev_issuer.clone()
    }

    pub fn composition(&self) -> &Composition {
        &self.composition
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        tracing::info!(listener = "http", addr = %self.http_addr(), "HTTP API listening on http://{}", self.http_addr());
        tracing::info!(listener = "metrics", addr = %self.metrics_addr(), "Prometheus metrics on http://{}/metrics", self.metrics_addr());

        let app = portico_http::app(self.composition.state.clone());
        let http = axum::serve(self.http, app).with_graceful_shutdown(stopped(stop_rx.clone()));
        let metrics = axum::serve(self.metrics, metrics::router(self.prometheus))
            .with_graceful_shutdown(stopped(stop_rx.clone()));
        let (http, metrics) = tokio::join!(http, metrics);
        http.context("HTTP listener failed")?;
        metrics.context("metrics listener failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}
