//! Portico's embedded MQTT broker: rmqtt inside the `portico serve` process, on TCP and WebSocket,
//! MQTT 3.1, 3.1.1 and 5. Every CONNECT, SUBSCRIBE and PUBLISH is decided by the functions' `Gate`
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
use std::sync::Arc;

use anyhow::Context as _;
use portico_functions::gate::Gate;
use portico_rules::RuleSet;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;

pub use publisher::BrokerPublisher;

/// Limits and addresses of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub tcp_addr: SocketAddr,
    pub ws_addr: SocketAddr,
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

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            tcp_addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 8083)),
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
    tcp: Listener,
    ws: Listener,
    tcp_addr: SocketAddr,
    ws_addr: SocketAddr,
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

        let inflight = NonZeroU16::new(settings.max_inflight).unwrap_or(NonZeroU16::MIN);
        let builder = |name: &str, addr: SocketAddr| {
            // SO_REUSEADDR, as tokio's listeners have: a restarted broker binds at once even
            // while its last connections sit in TIME_WAIT (a live listener still conflicts).
            Builder::new()
                .name(name)
                .laddr(addr)
                .reuseaddr(Some(true))
                .allow_anonymous(false)
                .max_packet_size(settings.max_packet_size)
                .max_inflight(inflight)
                .max_topic_levels(settings.max_topic_levels)
        };
        let tcp = builder("tcp", settings.tcp_addr)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("binding MQTT listener on {}", settings.tcp_addr))?;
        let ws = builder("ws", settings.ws_addr)
            .bind()
            .and_then(|l| l.ws())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("binding MQTT WebSocket listener on {}", settings.ws_addr))?;
        let tcp_addr = tcp.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
        let ws_addr = ws.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?;
        publisher.attach(scx.clone());
        Ok(Broker { scx, tcp, ws, tcp_addr, ws_addr })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// Accepts connections until the task running it is dropped.
    pub async fn run(self) -> anyhow::Result<()> {
        // Explicit listener ids: rmqtt keys listeners by port, and two port-0 listeners collide.
        MqttServer::new(self.scx)
            .listener_by_id(self.tcp, 1)
            .listener_by_id(self.ws, 2)
            .build()
            .run()
            .await
            .map_err(|e| anyhow::anyhow!("MQTT server failed: {e}"))
    }
}
