//! Portico's local host: composes the embedded adapters (SQLite, the dev issuer or a remote
//! issuer's keys) with the HTTP gateway and serves it, with Prometheus metrics beside it.
//!
//! Like mini-redis, a server is bound first (so callers learn the real addresses of port-0
//! listeners) and then run until a shutdown future resolves.

pub mod demo;
mod metrics;
mod readiness;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_auth::DevIssuer;
use portico_broker::{Broker, BrokerSettings};
use portico_config::Config;
use portico_core::mqtt::Policy;
use portico_functions::gate::Gate;
use portico_rules::RuleSet;
use tokio::net::TcpListener;

// The composition and the workers are shared with the Lambda host; the local host re-exports
// them so its callers (the CLI, the bench, the tests) have one crate to ask.
pub use portico_app::{
    Composition, backup, compose_backend, dev_issuer_url, graph, load_dev_issuer,
    opensearch_cluster, s3_events, warehouse, worker, worker_settings, world,
};
use portico_broker::BrokerPublisher;

/// The local backend around a broker publisher that is not bound yet (tools and tests that
/// compose without serving).
pub fn compose(config: &Config) -> anyhow::Result<Composition> {
    portico_app::compose_local(config, Arc::new(BrokerPublisher::new()))
}

/// A server whose listeners are bound, ready to run.
pub struct Server {
    composition: Composition,
    http: TcpListener,
    metrics: TcpListener,
    broker: Broker,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    /// The queue workers to run beside the API, unless disabled.
    worker: Option<worker::WorkerSettings>,
}

impl Server {
    /// Opens the data dir and binds every listener named in `config`.
    pub async fn bind(config: &Config) -> anyhow::Result<Server> {
        anyhow::ensure!(
            config.backend == portico_config::Backend::Local,
            "`portico serve` runs the local backend (the embedded broker, SQLite, files); with \
             backend = \"aws\" run the Lambda functions, or `portico worker` for the queue"
        );
        let prometheus = metrics::recorder()?;
        // Server-side publishes go through the embedded broker, once it is bound.
        let publisher = Arc::new(BrokerPublisher::new());
        let composition = portico_app::compose_local(config, publisher.clone())?;
        let http = TcpListener::bind(&config.http.addr)
            .await
            .with_context(|| format!("binding HTTP listener on {}", config.http.addr))?;
        let metrics = TcpListener::bind(&config.metrics.addr)
            .await
            .with_context(|| format!("binding metrics listener on {}", config.metrics.addr))?;
        let broker = bind_broker(config, &composition, &publisher).await?;
        Ok(Server {
            composition,
            http,
            metrics,
            broker,
            prometheus,
            worker: config.worker.enabled.then(|| worker_settings(config)),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.tcp_addr()
    }

    pub fn mqtt_ws_addr(&self) -> SocketAddr {
        self.broker.ws_addr()
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
        let stop_tx = std::sync::Arc::new(stop_tx);
        let on_signal = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = on_signal.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        tracing::info!(listener = "http", addr = %self.http_addr(), "HTTP API listening on http://{}", self.http_addr());
        tracing::info!(listener = "metrics", addr = %self.metrics_addr(), "Prometheus metrics on http://{}/metrics", self.metrics_addr());
        tracing::info!(listener = "mqtt", addr = %self.mqtt_addr(), "MQTT listening on mqtt://{}", self.mqtt_addr());
        tracing::info!(listener = "mqtt-ws", addr = %self.mqtt_ws_addr(), "MQTT over WebSocket on ws://{}/mqtt", self.mqtt_ws_addr());

        // The broker has no graceful stop of its own: it is aborted once HTTP has drained. If it
        // ends by itself, that is a failure, and the whole server stops rather than run without MQTT.
        let mqtt = self.mqtt_addr();
        let broker = tokio::spawn(self.broker.run());
        let stop_broker = broker.abort_handle();
        let broker_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let broker_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watch_broker = {
            let (stop_tx, failed) = (stop_tx.clone(), broker_failed.clone());
            let running = broker_running.clone();
            tokio::spawn(async move {
                let outcome = broker.await;
                running.store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(?outcome, "the MQTT broker stopped; shutting down");
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = stop_tx.send(true);
            })
        };

        let workers_running =
            self.worker.map(|_| std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let workers = self.worker.map(|settings| {
            let (composition, stop) = (self.composition.clone(), stop_rx.clone());
            let running = workers_running.clone();
            tokio::spawn(async move {
                worker::run(composition, settings, stop).await;
                if let Some(running) = running {
                    running.store(false, std::sync::atomic::Ordering::SeqCst);
                }
            })
        });
        self.composition.state.set_readiness(std::sync::Arc::new(readiness::LocalReadiness {
            database: self.composition.database.clone(),
            mqtt,
            broker_running,
            workers_running,
        }));

        let app = portico_http::app(self.composition.state.clone());
        let http = axum::serve(self.http, app).with_graceful_shutdown(stopped(stop_rx.clone()));
        let metrics = axum::serve(self.metrics, metrics::router(self.prometheus))
            .with_graceful_shutdown(stopped(stop_rx.clone()));
        let (http, metrics) = tokio::join!(http, metrics);
        // The watcher goes first, so the broker's planned stop is not reported as a failure.
        watch_broker.abort();
        stop_broker.abort();
        if let Some(workers) = workers {
            let _ = workers.await;
        }
        http.context("HTTP listener failed")?;
        metrics.context("metrics listener failed")?;
        if broker_failed.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("the MQTT broker failed");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Loads the policy and rules (built in, or from the configured files) and binds the broker.
async fn bind_broker(
    config: &Config,
    composition: &Composition,
    publisher: &BrokerPublisher,
) -> anyhow::Result<Broker> {
    let policy = match &config.mqtt.policy_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading MQTT policy file {}", path.display()))?;
            Policy::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Policy::default_policy(),
    };
    let functions = portico_functions::RULE_FUNCTIONS;
    let rules = match &config.mqtt.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading rules file {}", path.display()))?;
            let json = path.extension().is_some_and(|e| e == "json");
            let parsed = if json {
                RuleSet::from_json(&text, functions)
            } else {
                RuleSet::from_toml(&text, functions)
            };
            parsed.with_context(|| format!("in {}", path.display()))?
        }
        None => RuleSet::builtin(functions)?,
    };
    let parse_addr = |name: &str, addr: &str| {
        addr.parse().with_context(|| format!("{name} = {addr:?} is not an address"))
    };
    let settings = BrokerSettings {
        tcp_addr: parse_addr("mqtt.addr", &config.mqtt.addr)?,
        ws_addr: parse_addr("mqtt.ws_addr", &config.mqtt.ws_addr)?,
        max_packet_size: config.mqtt.max_packet_bytes,
        max_inflight: config.mqtt.max_inflight,
        max_topic_levels: config.mqtt.max_topic_levels,
        publish_rate_per_sec: config.mqtt.publish_rate_per_sec,
        publish_burst: config.mqtt.publish_burst,
        retained_per_identity: config.mqtt.retained_per_identity,
        retained_bytes_per_identity: config.mqtt.retained_bytes_per_identity,
        retained_max: config.mqtt.retained_max,
        retained_max_bytes: config.mqtt.retained_max_bytes,
    };
    let gate =
        Arc::new(Gate::new(composition.context.clone(), composition.verifier.clone(), policy));
    Broker::bind(&settings, gate, rules, publisher).await
}

/// Serves Prometheus `/metrics` on `config.metrics.addr` for a process other than `serve` (the
/// worker), until the process ends; returns the bound address. A taken address (a `serve` on the
/// same machine and configuration) is logged and the process goes on without its own endpoint.
pub async fn serve_metrics(config: &Config) -> anyhow::Result<Option<SocketAddr>> {
    let handle = metrics::recorder()?;
    let listener = match TcpListener::bind(&config.metrics.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(addr = %config.metrics.addr, error = %e, "metrics listener not started");
            return Ok(None);
        }
    };
    let addr = listener.local_addr()?;
    tracing::info!(listener = "metrics", addr = %addr, "Prometheus metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, metrics::router(handle)).await {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    Ok(Some(addr))
}
