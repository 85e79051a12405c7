//! The rmqtt hooks: where the broker asks the `Gate` and runs the rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use portico_core::mqtt::{Action, Principal};
use portico_functions::gate::{Admitted, Gate, Refusal};
use portico_rules::{Message, Outcome, RuleSet};
use rmqtt::acl::AuthInfo;
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, Publish, PublishAclResult, Subscribe, SubscribeAclResult,
};

pub(crate) const CONNECTIONS: &str = "portico_mqtt_connections";
pub(crate) const MESSAGES_IN: &str = "portico_mqtt_messages_in_total";
pub(crate) const MESSAGES_OUT: &str = "portico_mqtt_messages_out_total";
pub(crate) const DROPPED: &str = "portico_mqtt_dropped_total";
pub(crate) const CONNECTS_REFUSED: &str = "portico_mqtt_connects_refused_total";
pub(crate) const RULE_HITS: &str = "portico_rule_hits_total";
pub(crate) const RULE_SKIPS: &str = "portico_rule_skips_total";
pub(crate) const RULE_FUNCTION_DURATION: &str = "portico_rule_function_duration_seconds";
pub(crate) const RULE_FUNCTION_ERRORS: &str = "portico_rule_function_errors_total";

/// What the broker remembers about a client id.
struct Client {
    admitted: Arc<Admitted>,
    /// The identity that owns this client id (and its persistent session): another identity may
    /// not take it over.
    owner: String,
    /// When the connection that last authenticated was accepted (rmqtt's id creation time).
    connected_at: i64,
    tokens: f64,
    refilled: Instant,
}

pub(crate) struct Hooks {
    scx: ServerContext,
    gate: Arc<Gate>,
    rules: Arc<RuleSet>,
    clients: Mutex<HashMap<String, Client>>,
    rate: f64,
    burst: f64,
}

pub(crate) struct Handler(pub Arc<Hooks>);

#[async_trait]
impl rmqtt::hook::Handler for Handler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let hooks = &self.0;
        match param {
            Parameter::ClientAuthenticate(info) => hooks.authenticate(info).await,
            Parameter::ClientConnected(session) => {
                metrics::gauge!(CONNECTIONS).increment(1.0);
                hooks.end_at_expiry(session);
                (true, acc)
            }
            Parameter::ClientDisconnected(_, _) => {
                metrics::gauge!(CONNECTIONS).decrement(1.0);
                (true, acc)
            }
            Parameter::SessionTerminated(session, _) => {
                hooks.forget(session);
                (true, acc)
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let result = hooks.check_subscribe(session, subscribe).await;
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let result = hooks.check_publish(session, publish).await;
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessagePublish(Some(_), _, publish) => {
                metrics::counter!(MESSAGES_IN, "qos" => qos_label(publish.qos)).increment(1);
                (true, acc)
            }
            Parameter::MessageDelivered(_, _, publish) => {
                metrics::counter!(MESSAGES_OUT, "qos" => qos_label(publish.qos)).increment(1);
                (true, acc)
            }
            Parameter::MessageDropped(_, _, _, reason) => {
                let reason = format!("{reason:?}");
                let kind = reason
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap_or("other")
                    .to_string();
                metrics::counter!(DROPPED, "reason" => kind).increment(1);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

impl Hooks {
    pub(crate) fn new(
        scx: ServerContext,
        gate: Arc<Gate>,
        rules: RuleSet,
        settings: &crate::BrokerSettings,
    ) -> Self {
        Hooks {
            scx,
            gate,
            rules: Arc::new(rules),
            clients: Mutex::new(HashMap::new()),
            rate: f64::from(settings.publish_rate_per_sec.max(1)),
            burst: f64::from(settings.publish_burst.max(1)),
        }
    }

    async fn authenticate(&self, info: &ConnectInfo) -> ReturnType {
        let client_id = info.client_id().to_string();
        let username = info.username().map(|u| u.to_string());
        let password = info.password().map(|p| p.to_vec());
        let refuse = |result: AuthResult, why: &str| {
            tracing::info!(client_id, reason = why, "MQTT connection refused");
            metrics::counter!(CONNECTS_REFUSED).increment(1);
            (false, Some(HookResult::AuthResult(result)))
        };
        let admitted = match self
            .gate
            .connect(username.as_deref(), password.as_deref())
            .await
        {
            Ok(admitted) => admitted,
            Err(Refusal::BadCredentials(why)) => {
                return refuse(AuthResult::BadUsernameOrPassword, &why);
            }
            Err(Refusal::NotAuthorized(why)) => return refuse(AuthResult::NotAuthorized, &why),
            Err(Refusal::Unavailable(why)) => {
                tracing::warn!(client_id, error = why, "cannot check MQTT credentials");
                return refuse(
                    AuthResult::NotAuthorized,
                    "credentials cannot be checked now",
                );
            }
        };
        let owner = match &admitted.principal {
            Principal::User { user_id, .. } => format!("user:{user_id}"),
            Principal::Instrument { serial, .. } => format!("instrument:{serial}"),
        };
        {
            let Ok(mut clients) = self.clients.lock() else {
                return refuse(AuthResult::NotAuthorized, "broker state unavailable");
            };
            if clients.get(&client_id).is_some_and(|c| c.owner != owner) {
                drop(clients);
                return refuse(
                    AuthResult::NotAuthorized,
                    "the client id belongs to another identity's session",
                );
            }
            clients.insert(
                client_id.clone(),
                Client {
                    admitted: Arc::new(admitted.clone()),
                    owner,
                    connected_at: info.id().create_time,
                    tokens: self.burst,
                    refilled: Instant::now(),
                },
            );
        }
        let auth_info = AuthInfo {
            superuser: false,
            expire_at: admitted.expires_at.map(Duration::from_secs),
            rules: Vec::new(),
        };
        (
            false,
            Some(HookResult::AuthResult(AuthResult::Allow(
                false,
                Some(auth_info),
            ))),
        )
    }

    /// A user's session ends when their access token expires; they reconnect with a fresh one.
    fn end_at_expiry(&self, session: &Session) {
        let Some(expires_at) = self
            .admitted(&session.id.client_id)
            .and_then(|a| a.expires_at)
        else {
            return;
        };
        let scx = self.scx.clone();
        let id = session.id.clone();
        tokio::spawn(async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(expires_at.saturating_sub(now))).await;
            let mut entry = scx.extends.shared().await.entry(id.clone());
            // Only this connection: the client may have reconnected with a new token since.
            if entry.id_same() == Some(true) {
                tracing::info!(client_id = %id.client_id, "access token expired; disconnecting");
                let _ = entry.kick(true, true, true).await;
            }
        });
    }

    /// The session is over for good (not merely disconnected): its client id is free again.
    fn forget(&self, session: &Session) {
        let client_id: &str = &session.id.client_id;
        if let Ok(mut clients) = self.clients.lock()
            && clients
                .get(client_id)
                .is_some_and(|c| c.connected_at == session.id.create_time)
        {
            clients.remove(client_id);
        }
    }

    /// The principal behind a client id, unless its credentials have expired.
    fn admitted(&self, client_id: &str) -> Option<Arc<Admitted>> {
        let clients = self.clients.lock().ok()?;
        live(clients.get(client_id)?)
    }

    async fn check_subscribe(
        &self,
        session: &Session,
        subscribe: &Subscribe,
    ) -> SubscribeAclResult {
        let filter: &str = &subscribe.topic_filter;
        let allowed = match self.admitted(&session.id.client_id) {
            Some(a) => {
                self.gate
                    .allows(&a.principal, Action::Subscribe, filter)
                    .await
            }
            None => false,
        };
        if allowed {
            SubscribeAclResult::new_success(subscribe.opts.qos(), None)
        } else {
            tracing::info!(client_id = %session.id.client_id, filter, "subscription denied");
            metrics::counter!(DROPPED, "reason" => "subscribe_denied").increment(1);
            SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
        }
    }

    async fn check_publish(&self, session: &Session, publish: &Publish) -> PublishAclResult {
        let client_id = session.id.client_id.to_string();
        let topic: &str = &publish.topic;
        let deny = |reason: &'static str| {
            tracing::debug!(client_id, topic, reason, "publish dropped");
            metrics::counter!(DROPPED, "reason" => reason).increment(1);
            PublishAclResult::rejected(false, Some(reason.into()))
        };
        let admitted = match self.admit_publish(&client_id) {
            Ok(admitted) => admitted,
            Err(reason) => return deny(reason),
        };
        if !self
            .gate
            .allows(&admitted.principal, Action::Publish, topic)
            .await
        {
            return deny("publish_denied");
        }
        self.run_rules(&client_id, topic, &publish.payload);
        PublishAclResult::allow()
    }

    /// The publishing client's principal, if its credentials are live and its token bucket (one
    /// per client: a flood from one client is dropped without slowing the others) has a token.
    /// One lock for both: this runs for every message.
    fn admit_publish(&self, client_id: &str) -> Result<Arc<Admitted>, &'static str> {
        let mut clients = self.clients.lock().map_err(|_| "expired")?;
        let client = clients.get_mut(client_id).ok_or("expired")?;
        let admitted = live(client).ok_or("expired")?;
        let now = Instant::now();
        let elapsed = now.duration_since(client.refilled).as_secs_f64();
        client.tokens = (client.tokens + elapsed * self.rate).min(self.burst);
        client.refilled = now;
        if client.tokens < 1.0 {
            return Err("rate_limited");
        }
        client.tokens -= 1.0;
        Ok(admitted)
    }

    /// Rules see only messages the policy allowed; each hit runs its function in its own task.
    fn run_rules(&self, client_id: &str, topic: &str, payload: &[u8]) {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let outcomes = self.rules.evaluate(&Message {
            topic,
            payload,
            client_id,
            timestamp_ms,
        });
        for outcome in outcomes {
            match outcome {
                Outcome::Hit {
                    rule,
                    function,
                    output,
                } => {
                    metrics::counter!(RULE_HITS, "rule" => rule.clone()).increment(1);
                    let ctx = self.gate.context().clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let result =
                            portico_functions::run_rule_function(&ctx, &function, output).await;
                        metrics::histogram!(RULE_FUNCTION_DURATION, "function" => function.clone())
                            .record(started.elapsed().as_secs_f64());
                        if let Err(e) = result {
                            metrics::counter!(RULE_FUNCTION_ERRORS, "function" => function.clone())
                                .increment(1);
                            tracing::error!(rule, function, error = %e, "rule function failed");
                        }
                    });
                }
                Outcome::Skipped { rule, reason } => {
                    metrics::counter!(RULE_SKIPS, "rule" => rule.clone()).increment(1);
                    tracing::warn!(rule, topic, client_id, reason, "rule skipped a message");
                }
            }
        }
    }
}

/// The client's principal, unless its credentials have expired.
fn live(client: &Client) -> Option<Arc<Admitted>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    match client.admitted.expires_at {
        Some(exp) if exp <= now => None,
        _ => Some(client.admitted.clone()),
    }
}

fn qos_label(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    }
}
