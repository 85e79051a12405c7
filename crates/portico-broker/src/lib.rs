//! Portico's embedded MQTT broker: rmqtt inside the `portico serve` process, on TCP and WebSocket,
//! plaintext or TLS, MQTT 3.1, 3.1.1 and 5. Every CONNECT, SUBSCRIBE and PUBLISH is decided by the functions' `Gate`
//! (access tokens, device secrets, the policy); every allowed publish goes through the rules.
//!
//! This is the only crate that knows rmqtt. Two of its habits shape the code: its `MessagePublish`
//! hook runs *before* the publish ACL check, so rules are run from the ACL hook once a message is
//! allowed; and `MqttServer::start()` exits the process on error, so the server is `run()` as a task.

mod hooks;
mod publisher;
mod retained;
mod throttle;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use portico_functions::gate::Gate;
use portico_rules::RuleSet;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use rmqtt::types::ListenerId;
use tokio::sync::watch;

pub use publisher::BrokerPublisher;

/// Limits and addresses of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The plaintext listeners; `None` when plaintext is off.
    pub tcp_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    /// The TLS listeners, when TLS is configured.
    pub tls: Option<BrokerTls>,
    /// Largest packet accepted (AWS IoT Core's limit is 128 KiB).
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1/2 messages per client.
    pub max_inflight: u16,
    /// Deepest topic accepted.
    pub max_topic_levels: usize,
    /// Publishes per second one client may sustain; above it, its messages are dropped.
    pub publish_rate_per_sec: u32,
    /// How many publishes one client may send in a burst before the rate applies.
    pub publish_burst: u32,
    /// Retained messages (and their payload bytes) one identity may hold.
    pub retained_per_identity: usize,
    pub retained_bytes_per_identity: usize,
    /// Retained messages (and their payload bytes) the broker holds in all.
    pub retained_max: usize,
    pub retained_max_bytes: usize,
}

/// MQTT over TLS and over secure WebSocket, from PEM files that rmqtt reads when a listener is
/// made (so a renewed certificate takes new listeners: `Broker::run`'s `reload`).
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub mqtts_addr: SocketAddr,
    pub wss_addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            tcp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            ws_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            tls: None,
            max_packet_size: 128 * 1024,
            max_inflight: 32,
            max_topic_levels: 8,
            publish_rate_per_sec: 100,
            publish_burst: 200,
            retained_per_identity: 100,
            retained_bytes_per_identity: 1024 * 1024,
            retained_max: 100_000,
            retained_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A broker whose listeners are bound.
pub struct Broker {
    scx: ServerContext,
    limits: Limits,
    tcp: Option<(Listener, SocketAddr)>,
    ws: Option<(Listener, SocketAddr)>,
    tls: Option<TlsListeners>,
}

/// What every listener is made with.
#[derive(Clone)]
struct Limits {
    max_packet_size: u32,
    max_inflight: NonZeroU16,
    max_topic_levels: usize,
}

impl Limits {
    fn builder(&self, name: &str, addr: SocketAddr) -> Builder {
        // SO_REUSEADDR, as tokio's listeners have: a restarted broker binds at once even while
        // its last connections sit in TIME_WAIT (a live listener still conflicts).
        Builder::new()
            .name(name)
            .laddr(addr)
            .reuseaddr(Some(true))
            .allow_anonymous(false)
            .max_packet_size(self.max_packet_size)
            .max_inflight(self.max_inflight)
            .max_topic_levels(self.max_topic_levels)
    }
}

/// The TLS listeners of one certificate, and what makes the next ones.
struct TlsListeners {
    settings: BrokerTls,
    mqtts: Listener,
    wss: Listener,
    mqtts_addr: SocketAddr,
    wss_addr: SocketAddr,
}

impl TlsListeners {
    /// Binds both with SO_REUSEPORT, so the next certificate's listeners can bind the same
    /// ports while these still accept: the ports never close during a reload. (A connection the
    /// kernel queued on an old listener in its last moment is reset; clients reconnect.)
    fn bind(limits: &Limits, settings: &BrokerTls) -> anyhow::Result<TlsListeners> {
        let tls = |name: &str, addr: SocketAddr| {
            limits
                .builder(name, addr)
                .reuseport(Some(true))
                .tls_cert(Some(settings.cert.display().to_string()))
                .tls_key(Some(settings.key.display().to_string()))
        };
        let mqtts = tls("mqtts", settings.mqtts_addr)
            .bind()
            .and_then(|l| l.tls())
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("binding MQTT TLS listener on {}", settings.mqtts_addr))?;
        let wss = tls("wss", settings.wss_addr)
            .bind()
            .and_then(|l| l.wss())
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| {
                format!("binding MQTT secure WebSocket listener on {}", settings.wss_addr)
            })?;
        let mqtts_addr = mqtts.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
        let wss_addr = wss.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
        // The next listeners bind the ports these got, not port 0 again.
        let settings = BrokerTls { mqtts_addr, wss_addr, ..settings.clone() };
        Ok(TlsListeners { settings, mqtts, wss, mqtts_addr, wss_addr })
    }
}

impl Broker {
    /// Binds both listeners and wires the hooks; `publisher` starts delivering through this broker.
    pub async fn bind(
        settings: &BrokerSettings,
        gate: Arc<Gate>,
        rules: RuleSet,
        publisher: &BrokerPublisher,
    ) -> anyhow::Result<Broker> {
        // Retained messages live in memory, as with most brokers' defaults; the hooks' ledger
        // bounds them per identity and in all, and the retainer's own cap backs it up.
        let retainer = format!(
            "storage.type = \"ram\"\nmax_retained_messages = {}\nmax_payload_size = \"128KB\"\n",
            settings.retained_max.max(1)
        );
        let scx =
            ServerContext::new().plugins_config_map_add("rmqtt-retainer", &retainer).build().await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| anyhow::anyhow!("starting retained-message storage: {e}"))?;

        let hooks = Arc::new(hooks::Hooks::new(scx.clone(), gate, rules, settings));
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::SessionTerminated,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::MessagePublish,
            Type::MessageDelivered,
            Type::MessageDropped,
        ] {
            register.add(typ, Box::new(hooks::Handler(hooks.clone()))).await;
        }
        register.start().await;

        let limits = Limits {
            max_packet_size: settings.max_packet_size,
            max_inflight: NonZeroU16::new(settings.max_inflight).unwrap_or(NonZeroU16::MIN),
            max_topic_levels: settings.max_topic_levels,
        };
        let plain = |name: &str, addr: Option<SocketAddr>, ws: bool| -> anyhow::Result<_> {
            let Some(addr) = addr else { return Ok(None) };
            let listener = limits
                .builder(name, addr)
                .bind()
                .and_then(|l| if ws { l.ws() } else { l.tcp() })
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("binding MQTT {name} listener on {addr}"))?;
            let bound = listener.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Some((listener, bound)))
        };
        let tcp = plain("tcp", settings.tcp_addr, false)?;
        let ws = plain("ws", settings.ws_addr, true)?;
        let tls = settings.tls.as_ref().map(|tls| TlsListeners::bind(&limits, tls)).transpose()?;
        publisher.attach(scx.clone());
        Ok(Broker { scx, limits, tcp, ws, tls })
    }

    /// The plaintext MQTT listener's address, unless plaintext is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|(_, addr)| *addr)
    }

    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().map(|(_, addr)| *addr)
    }

    /// The MQTT over TLS listener's address, when TLS is configured.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|t| t.mqtts_addr)
    }

    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|t| t.wss_addr)
    }

    /// Accepts connections until the task running it is dropped. Each change seen on `reload`
    /// makes new TLS listeners (the certificate files are read again); the old ones stop
    /// accepting once the new ones run, and their connections go on.
    pub async fn run(self, mut reload: Option<watch::Receiver<u64>>) -> anyhow::Result<()> {
        // Explicit listener ids: rmqtt keys listeners by port, and two port-0 listeners collide.
        let mut plain = MqttServer::new(self.scx.clone());
        let mut any_plain = false;
        for (id, listener) in [(1, self.tcp), (2, self.ws)] {
            if let Some((listener, _)) = listener {
                plain = plain.listener_by_id(listener, id);
                any_plain = true;
            }
        }
        let plain = async move {
            if !any_plain {
                return std::future::pending().await;
            }
            plain.build().run().await.map_err(|e| anyhow::anyhow!("MQTT server failed: {e}"))?;
            anyhow::bail!("the MQTT listeners stopped")
        };
        let Some(tls) = self.tls else { return plain.await };
        let (scx, limits) = (self.scx, self.limits);
        let mut generation: ListenerId = 0;
        let serve_tls = |tls: TlsListeners, generation: ListenerId| {
            // Each generation takes the next two ids. rmqtt panics on an id it holds, and only
            // registers them (nothing reads them back), so a reused id's old entry goes first.
            let first = 3 + 2 * (generation % 30_000);
            for id in [first, first + 1] {
                scx.listen_cfgs.remove(&id);
            }
            tokio::spawn(
                MqttServer::new(scx.clone())
                    .listener_by_id(tls.mqtts, first)
                    .listener_by_id(tls.wss, first + 1)
                    .build()
                    .run(),
            )
        };
        let mut settings = tls.settings.clone();
        let mut serving = serve_tls(tls, generation);
        tokio::pin!(plain);
        loop {
            let changed = async {
                match reload.as_mut() {
                    Some(reload) => reload.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                outcome = &mut plain => {
                    serving.abort();
                    return outcome;
                }
                ended = &mut serving => {
                    anyhow::bail!("the MQTT TLS listeners stopped: {ended:?}");
                }
                still = changed => {
                    if !still {
                        reload = None;
                        continue;
                    }
                    match TlsListeners::bind(&limits, &settings) {
                        Ok(next) => {
                            generation = generation.wrapping_add(1);
                            settings = next.settings.clone();
                            let old = std::mem::replace(&mut serving, serve_tls(next, generation));
                            old.abort();
                            tracing::info!(mqtts = %settings.mqtts_addr, wss = %settings.wss_addr, "MQTT TLS listeners use the new certificate");
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "new MQTT TLS listeners could not be made; the previous certificate stays in use");
                        }
                    }
                }
            }
        }
    }
}
