//! Portico's local host: composes the embedded adapters (SQLite, the dev issuer or a remote
//! issuer's keys) with the HTTP gateway and serves it, with Prometheus metrics beside it.
//!
//! Like mini-redis, a server is bound first (so callers learn the real addresses of port-0
//! listeners) and then run until a shutdown future resolves.

pub mod demo;
mod metrics;
mod readiness;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_auth::DevIssuer;
use portico_broker::{Broker, BrokerSettings, BrokerTls};
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
    /// The plaintext HTTP listener, unless plaintext is off.
    http: Option<TcpListener>,
    /// The HTTPS listener and the certificates it presents, when TLS is configured.
    https: Option<(TcpListener, Arc<tls::Certificates>)>,
    reload_every: std::time::Duration,
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
        let http = match config.tls.plaintext {
            true => Some(
                TcpListener::bind(&config.http.addr)
                    .await
                    .with_context(|| format!("binding HTTP listener on {}", config.http.addr))?,
            ),
            false => None,
        };
        let certificates =
            config.tls.files().map(|(cert, key)| tls::Certificates::load(cert, key)).transpose()?;
        let https = match &certificates {
            Some(certificates) => Some((
                TcpListener::bind(&config.https.addr)
                    .await
                    .with_context(|| format!("binding HTTPS listener on {}", config.https.addr))?,
                certificates.clone(),
            )),
            None => None,
        };
        let metrics = TcpListener::bind(&config.metrics.addr)
            .await
            .with_context(|| format!("binding metrics listener on {}", config.metrics.addr))?;
        let broker = bind_broker(config, certificates.as_deref(), &composition, &publisher).await?;
        Ok(Server {
            composition,
            http,
            https,
            reload_every: std::time::Duration::from_secs(config.tls.reload_secs),
            metrics,
            broker,
            prometheus,
            worker: config.worker.enabled.then(|| worker_settings(config)),
        })
    }

    /// The plaintext HTTP listener's address, unless plaintext is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HTTPS listener's address, when TLS is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// The plaintext MQTT listener's address, unless plaintext is off.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.broker.tcp_addr()
    }

    pub fn mqtt_ws_addr(&self) -> Option<SocketAddr> {
        self.broker.ws_addr()
    }

    /// The MQTT over TLS listener's address, when TLS is configured.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.broker.mqtts_addr()
    }

    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.broker.wss_addr()
    }

    /// Every listener, its address and the URL a client connects to, in the order a person
    /// reads them.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr, String)> {
        let mut out = Vec::new();
        let mut add = |name, addr: Option<SocketAddr>, url: fn(SocketAddr) -> String| {
            out.extend(addr.map(|a| (name, a, url(a))));
        };
        add("http", self.http_addr(), |a| format!("http://{a}"));
        add("https", self.https_addr(), |a| format!("https://{a}"));
        add("mqtt", self.mqtt_addr(), |a| format!("mqtt://{a}"));
        add("mqtts", self.mqtts_addr(), |a| format!("mqtts://{a}"));
        add("mqtt-ws", self.mqtt_ws_addr(), |a| format!("ws://{a}/mqtt"));
        add("mqtt-wss", self.wss_addr(), |a| format!("wss://{a}/mqtt"));
        add("metrics", Some(self.metrics_addr()), |a| format!("http://{a}/metrics"));
        out
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

        for (listener, addr, url) in self.listeners() {
            tracing::info!(listener, addr = %addr, "{listener} listening on {url}");
        }

        // A renewed certificate is read by the HTTPS resolver at once and by the broker through
        // new TLS listeners.
        let reload = self.https.as_ref().map(|(_, certificates)| certificates.changes());
        let watching = self
            .https
            .as_ref()
            .map(|(_, certificates)| tokio::spawn(certificates.clone().watch(self.reload_every)));

        // The broker has no graceful stop of its own: it is aborted once HTTP has drained. If it
        // ends by itself, that is a failure, and the whole server stops rather than run without MQTT.
        let mqtt =
            self.mqtt_addr().or(self.mqtts_addr()).unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        let broker = tokio::spawn(self.broker.run(reload));
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
        let http = async {
            match self.http {
                Some(listener) => axum::serve(listener, app.clone())
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .await
                    .context("HTTP listener failed"),
                None => Ok(()),
            }
        };
        let https = async {
            let Some((listener, certificates)) = self.https else { return Ok(()) };
            let listener = tls::TlsListener::new(listener, certificates.server_config()?)?;
            // Links in answers over TLS use https.
            let app = app.clone().layer(axum::Extension(portico_http::Transport::Tls));
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .await
                .context("HTTPS listener failed")
        };
        let metrics = axum::serve(self.metrics, metrics::router(self.prometheus))
            .with_graceful_shutdown(stopped(stop_rx.clone()));
        let (http, https, metrics) = tokio::join!(http, https, metrics);
        // The watcher goes first, so the broker's planned stop is not reported as a failure.
        watch_broker.abort();
        stop_broker.abort();
        if let Some(watching) = watching {
            watching.abort();
        }
        if let Some(workers) = workers {
            let _ = workers.await;
        }
        http?;
        https?;
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
    certificates: Option<&tls::Certificates>,
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
    let plaintext = config.tls.plaintext;
    let tls = match certificates {
        Some(certificates) => Some(BrokerTls {
            mqtts_addr: parse_addr("mqtts.addr", &config.mqtts.addr)?,
            wss_addr: parse_addr("wss.addr", &config.wss.addr)?,
            cert: certificates.cert_path().to_path_buf(),
            key: certificates.key_path().to_path_buf(),
        }),
        None => None,
    };
    let settings = BrokerSettings {
        tcp_addr: plaintext.then(|| parse_addr("mqtt.addr", &config.mqtt.addr)).transpose()?,
        ws_addr: plaintext.then(|| parse_addr("mqtt.ws_addr", &config.mqtt.ws_addr)).transpose()?,
        tls,
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
