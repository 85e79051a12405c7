//! The `Publisher` port on the embedded broker: messages from the server itself (notifications).

use std::sync::OnceLock;

use async_trait::async_trait;
use portico_core::{Error, Publisher, Result};
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, Publish, QoS};

/// Publishes through the broker once it is bound; before that, publishing is `Unavailable`.
#[derive(Default)]
pub struct BrokerPublisher {
    scx: OnceLock<ServerContext>,
}

impl BrokerPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn attach(&self, scx: ServerContext) {
        let _ = self.scx.set(scx);
    }
}

#[async_trait]
impl Publisher for BrokerPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8) -> Result<()> {
        let scx = self
            .scx
            .get()
            .ok_or_else(|| Error::Unavailable("the MQTT broker is not running".into()))?;
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let publish = Publish::from(CodecPublish {
            dup: false,
            retain: false,
            qos,
            topic: topic.into(),
            packet_id: None,
            payload: payload.into(),
            properties: None,
        })
        .create_time(rmqtt::utils::timestamp_millis());
        let from = From::from_system(Id::new(scx.node.id(), 0, None, None, "portico".into(), None));
        SessionState::forwards(scx, from, publish, false, None)
            .await
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("publishing to {topic}: {e}")))
    }
}
