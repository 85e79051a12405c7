//! A small MQTT test client over rumqttc: connect (TCP or WebSocket, 3.1.1), subscribe and wait
//! for the SUBACK, publish, and read what arrives.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, Incoming, MqttOptions, QoS, SubscribeReasonCode, Transport,
};
use tokio::sync::mpsc;

pub struct Mqtt {
    pub client: AsyncClient,
    publishes: mpsc::UnboundedReceiver<(String, Vec<u8>, QoS)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Connect<'a> {
    pub addr: SocketAddr,
    pub client_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub clean: bool,
    pub websocket: bool,
}

impl<'a> Connect<'a> {
    /// A clean session over TCP.
    pub fn tcp(addr: SocketAddr, client_id: &'a str, username: &'a str, password: &'a str) -> Self {
        Connect { addr, client_id, username, password, clean: true, websocket: false }
    }

    /// A session the broker keeps while the client is away (`false`), or not.
    pub fn clean(self, clean: bool) -> Self {
        Connect { clean, ..self }
    }

    /// Over WebSocket (`addr` is then the broker's WebSocket listener).
    pub fn websocket(self) -> Self {
        Connect { websocket: true, ..self }
    }
}

/// Connects and waits for the CONNACK; a refusal comes back as its return code.
pub async fn connect(c: Connect<'_>) -> Result<Mqtt, rumqttc::ConnectReturnCode> {
    connect_with(c, None).await
}

/// Connects with a last will (published by the broker if the connection drops without a
/// DISCONNECT, e.g. when the `Mqtt` is dropped).
pub async fn connect_with(
    c: Connect<'_>,
    will: Option<rumqttc::LastWill>,
) -> Result<Mqtt, rumqttc::ConnectReturnCode> {
    let mut options = if c.websocket {
        let mut o = MqttOptions::new(c.client_id, format!("ws://{}/mqtt", c.addr), c.addr.port());
        o.set_transport(Transport::Ws);
        o
    } else {
        MqttOptions::new(c.client_id, c.addr.ip().to_string(), c.addr.port())
    };
    options
        .set_credentials(c.username, c.password)
        .set_clean_session(c.clean)
        .set_keep_alive(Duration::from_secs(30));
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (pub_tx, publishes) = mpsc::unbounded_channel();
    let (sub_tx, subacks) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = pub_tx.send((p.topic.clone(), p.payload.to_vec(), p.qos));
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    let _ = sub_tx.send(ack.return_codes.clone());
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(code));
                    }
                    return;
                }
                Err(e) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(rumqttc::ConnectReturnCode::ServiceUnavailable));
                        eprintln!("mqtt connection error: {e}");
                    }
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(Mqtt { client, publishes, subacks, task }),
        Ok(Ok(Err(code))) => Err(code),
        _ => Err(rumqttc::ConnectReturnCode::ServiceUnavailable),
    }
}

impl Mqtt {
    /// Subscribes and returns whether the broker granted it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> bool {
        self.client.subscribe(filter, qos).await.expect("subscribe sent");
        let codes = tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .expect("SUBACK within 10 s")
            .expect("connection open");
        matches!(codes.first(), Some(SubscribeReasonCode::Success(_)))
    }

    pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        self.client.publish(topic, qos, retain, payload.to_vec()).await.expect("publish queued");
    }

    /// Publishes at QoS 1, not retained: what instruments and apps mostly send.
    pub async fn send(&self, topic: &str, payload: &[u8]) {
        self.publish(topic, QoS::AtLeastOnce, false, payload).await
    }

    /// Publishes at QoS 1, retained.
    pub async fn retain(&self, topic: &str, payload: &[u8]) {
        self.publish(topic, QoS::AtLeastOnce, true, payload).await
    }

    /// The next message delivered, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Vec<u8>, QoS)> {
        tokio::time::timeout(wait, self.publishes.recv()).await.ok().flatten()
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
