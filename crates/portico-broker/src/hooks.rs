//! The rmqtt hooks: where the broker asks the `Gate` and runs the rules.
//!
//! Every way a client can make the broker publish or deliver something is checked against the
//! principal behind it: publishes (ACL hook), wills (at CONNECT, and again when published),
//! subscriptions (ACL hook) and the subscriptions and queued messages of a resumed session (at
//! CONNECT, before the session is handed over).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use portico_core::mqtt::{Action, ClientIdClaim, Principal};
use portico_functions::gate::{Admitted, Gate, Refusal};
use portico_rules::{Message, Outcome, RuleSet};
use rmqtt::acl::AuthInfo;
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, From, FromType, Id, Publish, PublishAclResult, Subscribe,
    SubscribeAclResult, Unsubscribe,
};

use crate::retained::{Ledger, Limits};
use crate::throttle::Throttle;

pub(crate) const CONNECTIONS: &str = "portico_mqtt_connections";
pub(crate) const MESSAGES_IN: &str = "portico_mqtt_messages_in_total";
pub(crate) const MESSAGES_OUT: &str = "portico_mqtt_messages_out_total";
pub(crate) const DROPPED: &str = "portico_mqtt_dropped_total";
pub(crate) const CONNECTS_REFUSED: &str = "portico_mqtt_connects_refused_total";
pub(crate) const RULE_HITS: &str = "portico_rule_hits_total";
pub(crate) const RULE_SKIPS: &str = "portico_rule_skips_total";
pub(crate) const RULE_FUNCTION_DURATION: &str = "portico_rule_function_duration_seconds";
pub(crate) const RULE_FUNCTION_ERRORS: &str = "portico_rule_function_errors_total";

/// The session attribute that carries the principal a connection authenticated as.
const ADMITTED_ATTR: &str = "portico.admitted";
/// Where a will goes that may no longer be published: a `$` topic, which no wildcard matches and
/// the policy lets no one subscribe to, so nothing receives it.
const NOWHERE: &str = "$portico/withheld-will";

/// What the broker remembers about a client id.
struct Client {
    admitted: Arc<Admitted>,
    /// The identity that owns this client id (and its persistent session): another identity may
    /// not take it over, unless the id is reserved for that other identity. Shared, as every
    /// publish carries it along (cloning is a reference count, not an allocation).
    owner: Arc<str>,
    /// When the connection that last authenticated was accepted (rmqtt's id creation time).
    connected_at: i64,
}

/// One identity's publish budget, shared by all its connections.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
struct Clients {
    by_id: HashMap<String, Client>,
    buckets: HashMap<Arc<str>, Bucket>,
}

pub(crate) struct Hooks {
    scx: ServerContext,
    gate: Arc<Gate>,
    rules: Arc<RuleSet>,
    clients: Mutex<Clients>,
    retained: Mutex<Ledger>,
    throttle: Mutex<Throttle>,
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
                hooks.remember_principal(session).await;
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
            Parameter::MessagePublish(Some(session), from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                metrics::counter!(MESSAGES_IN, "qos" => qos_label(publish.qos)).increment(1);
                match hooks.check_will(session, from, publish).await {
                    Some(withheld) => (true, Some(HookResult::Publish(withheld))),
                    None => (true, acc),
                }
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
                let kind = reason.split(['(', ' ', '{']).next().unwrap_or("other").to_string();
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
            clients: Mutex::new(Clients::default()),
            retained: Mutex::new(Ledger::new(Limits {
                per_identity: settings.retained_per_identity,
                bytes_per_identity: settings.retained_bytes_per_identity,
                total: settings.retained_max,
                total_bytes: settings.retained_max_bytes,
            })),
            throttle: Mutex::new(Throttle::default()),
            rate: f64::from(settings.publish_rate_per_sec.max(1)),
            burst: f64::from(settings.publish_burst.max(1)),
        }
    }

    async fn authenticate(&self, info: &ConnectInfo) -> ReturnType {
        let client_id = info.client_id().to_string();
        let username = info.username().map(|u| u.to_string());
        let password = info.password().map(|p| p.to_vec());
        let address = info.id().remote_addr.map(|a| a.ip());
        let refuse = |result: AuthResult, why: &str| {
            tracing::info!(client_id, reason = why, "MQTT connection refused");
            metrics::counter!(CONNECTS_REFUSED).increment(1);
            (false, Some(HookResult::AuthResult(result)))
        };
        // A username names an identity only for instruments (their serial); with a token it is
        // free text, and throttling it would let anyone lock out whoever types the same.
        let is_token = password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .is_some_and(portico_functions::gate::is_access_token);
        let throttled_name = username.as_deref().filter(|_| !is_token);
        let blocked = self
            .throttle
            .lock()
            .ok()
            .and_then(|t| t.blocked(address, throttled_name, Instant::now()));
        if let Some(wait) = blocked {
            metrics::counter!(DROPPED, "reason" => "auth_throttled").increment(1);
            return refuse(
                AuthResult::NotAuthorized,
                &format!(
                    "too many failed logins from this address or username; retry in {} s",
                    wait.as_secs().max(1)
                ),
            );
        }
        let connected = self.gate.connect(username.as_deref(), password.as_deref()).await;
        let failed = || {
            if let Ok(mut t) = self.throttle.lock() {
                t.failed(address, throttled_name, Instant::now());
            }
        };
        let admitted = match connected {
            Ok(admitted) => {
                if let Ok(mut t) = self.throttle.lock() {
                    t.succeeded(throttled_name);
                }
                admitted
            }
            Err(Refusal::BadCredentials(why)) => {
                failed();
                return refuse(AuthResult::BadUsernameOrPassword, &why);
            }
            Err(Refusal::NotAuthorized(why)) => {
                failed();
                return refuse(AuthResult::NotAuthorized, &why);
            }
            Err(Refusal::Unavailable(why)) => {
                tracing::warn!(client_id, error = why, "cannot check MQTT credentials");
                return refuse(AuthResult::NotAuthorized, "credentials cannot be checked now");
            }
        };
        if let Err(why) = self.admit_session(info, &admitted).await {
            return refuse(AuthResult::NotAuthorized, &why);
        }
        let auth_info = AuthInfo {
            superuser: false,
            expire_at: admitted.expires_at.map(Duration::from_secs),
            rules: Vec::new(),
        };
        (false, Some(HookResult::AuthResult(AuthResult::Allow(false, Some(auth_info)))))
    }

    /// The checks of a CONNECT after its credentials: whose client id it is, whether its will may
    /// be published, and what a session it resumes may keep. Records the client on success.
    async fn admit_session(&self, info: &ConnectInfo, admitted: &Admitted) -> Result<(), String> {
        let client_id = info.client_id().to_string();
        let principal = &admitted.principal;
        let owner: Arc<str> = match principal {
            Principal::User { user_id, .. } => format!("user:{user_id}"),
            Principal::Instrument { serial, .. } => format!("instrument:{serial}"),
        }
        .into();
        let claim = self
            .gate
            .claim_client_id(principal, &client_id)
            .await
            .map_err(|_| "credentials cannot be checked now".to_string())?;
        if claim == ClientIdClaim::Foreign {
            return Err("the client id is reserved for another identity".into());
        }
        if let Some(will) = info.last_will() {
            let will = Publish::try_from(will).map_err(|e| format!("bad will: {e}"))?;
            if !self.gate.allows(principal, Action::Publish, &will.topic).await {
                return Err(format!(
                    "the will's topic `{}` is not one this client may publish to",
                    will.topic
                ));
            }
        }
        let holder = {
            let clients = self.clients.lock().map_err(|_| "broker state unavailable")?;
            clients.by_id.get(&client_id).map(|c| c.owner.clone())
        };
        match holder {
            Some(holder) if holder == owner && !info.clean_start() => {
                self.prune_resumed_session(info.id(), principal).await;
            }
            // A clean start of one's own session: rmqtt discards the old one.
            Some(holder) if holder == owner => {}
            Some(holder) if claim == ClientIdClaim::Owner => {
                // The id is this identity's own: whatever another identity left under it goes,
                // and none of it is handed over.
                tracing::info!(
                    client_id,
                    holder = &*holder,
                    "discarding another identity's session under a reserved client id"
                );
                let mut entry = self.scx.extends.shared().await.entry(info.id().clone());
                if let Err(e) = entry.kick(true, true, true).await {
                    tracing::warn!(client_id, error = %e, "discarding the session failed");
                    return Err("the client id's session cannot be released now".into());
                }
            }
            Some(_) => return Err("the client id belongs to another identity's session".into()),
            None => {}
        }
        let mut clients = self.clients.lock().map_err(|_| "broker state unavailable")?;
        let burst = self.burst;
        clients
            .buckets
            .entry(owner.clone())
            .or_insert(Bucket { tokens: burst, refilled: Instant::now() });
        clients.by_id.insert(
            client_id,
            Client {
                admitted: Arc::new(admitted.clone()),
                owner,
                connected_at: info.id().create_time,
            },
        );
        Ok(())
    }

    /// A session being resumed keeps only what its principal, as it is now, may receive: stored
    /// subscriptions that are no longer allowed are removed, and so are queued and unacknowledged
    /// messages on topics it may no longer read. Runs before rmqtt hands the session over.
    async fn prune_resumed_session(&self, id: &Id, principal: &Principal) {
        let shared = self.scx.extends.shared().await;
        let Some(session) = shared.entry(id.clone()).session() else {
            return;
        };
        // The router removes a subscription only for the id that made it: the old session's.
        let entry = shared.entry(session.id.clone());
        let mut dropped_subscriptions = 0;
        for sub in entry.subscriptions().await.unwrap_or_default() {
            if self.gate.allows(principal, Action::Subscribe, &sub.topic).await {
                continue;
            }
            let unsubscribe = Unsubscribe { topic_filter: sub.topic.clone() };
            if let Err(e) = entry.unsubscribe(&unsubscribe).await {
                tracing::warn!(client_id = %id.client_id, filter = %sub.topic, error = %e, "removing a lost subscription failed");
            }
            dropped_subscriptions += 1;
        }
        let mut readable: HashMap<String, bool> = HashMap::new();
        let mut may_read = async |topic: &str| -> bool {
            if let Some(known) = readable.get(topic) {
                return *known;
            }
            let allowed = self.gate.allows(principal, Action::Subscribe, topic).await;
            readable.insert(topic.to_owned(), allowed);
            allowed
        };
        let queue = session.deliver_queue();
        let mut kept = Vec::new();
        let mut dropped_messages = 0;
        while let Some((from, publish)) = queue.pop() {
            if may_read(&publish.topic).await {
                kept.push((from, publish));
            } else {
                dropped_messages += 1;
            }
        }
        for item in kept {
            let _ = queue.push(item);
        }
        let mut inflight = session.out_inflight().write().await;
        for message in inflight.to_inflight_messages() {
            if may_read(&message.publish.topic).await {
                inflight.push_back(message);
            } else {
                dropped_messages += 1;
            }
        }
        if dropped_subscriptions + dropped_messages > 0 {
            tracing::info!(
                client_id = %id.client_id,
                dropped_subscriptions,
                dropped_messages,
                "resumed session lost what its principal may no longer receive"
            );
            metrics::counter!(DROPPED, "reason" => "resumed_not_allowed")
                .increment(dropped_messages as u64);
        }
    }

    /// Keeps the principal with the session itself, so a will published after the client id has
    /// passed to another connection is still judged by the connection that set it.
    async fn remember_principal(&self, session: &Session) {
        let admitted = self.clients.lock().ok().and_then(|clients| {
            clients
                .by_id
                .get(&*session.id.client_id)
                .filter(|c| c.connected_at == session.id.create_time)
                .map(|c| (c.admitted.clone(), c.owner.clone()))
        });
        if let Some(admitted) = admitted {
            session.extra_attrs.write().await.insert(ADMITTED_ATTR.into(), admitted);
        }
    }

    /// A will is published exactly when a publish of its topic by the same principal would be
    /// (it was checked at CONNECT; credentials may have expired since), and then goes through the
    /// rules and the retained-message limits like any publish. A will that may not be published
    /// is rewritten to go nowhere (rmqtt cannot drop it here): the answer is the rewrite.
    async fn check_will(
        &self,
        session: &Session,
        from: &From,
        publish: &Publish,
    ) -> Option<Publish> {
        let remembered = session
            .extra_attrs
            .read()
            .await
            .get::<(Arc<Admitted>, Arc<str>)>(ADMITTED_ATTR)
            .cloned();
        let client_id = from.id.client_id.to_string();
        let topic: &str = &publish.topic;
        let allowed = match &remembered {
            Some((admitted, _)) if live_admitted(admitted) => {
                self.gate.allows(&admitted.principal, Action::Publish, topic).await
            }
            _ => false,
        };
        let withhold = |reason: &'static str| {
            tracing::info!(client_id, topic, reason, "will withheld");
            metrics::counter!(DROPPED, "reason" => reason).increment(1);
            let mut withheld = publish.clone();
            withheld.topic = NOWHERE.into();
            withheld.retain = false;
            Some(withheld)
        };
        let Some((_, owner)) = remembered.filter(|_| allowed) else {
            return withhold("will_denied");
        };
        if publish.retain && self.retain(&owner, topic, publish.payload.len()).is_err() {
            return withhold("retained_quota");
        }
        self.run_rules(&client_id, topic, &publish.payload);
        None
    }

    /// Charges a retained publish to `owner`; refuses it past the limits.
    fn retain(&self, owner: &str, topic: &str, bytes: usize) -> Result<(), &'static str> {
        let mut ledger = self.retained.lock().map_err(|_| "retained_quota")?;
        ledger.retain(owner, topic, bytes).map_err(|r| r.as_str())
    }

    /// A user's session ends when their access token expires; they reconnect with a fresh one.
    fn end_at_expiry(&self, session: &Session) {
        let Some(expires_at) = self.admitted(&session.id.client_id).and_then(|a| a.expires_at)
        else {
            return;
        };
        let scx = self.scx.clone();
        let id = session.id.clone();
        tokio::spawn(async move {
            let now =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
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
    /// Budgets that have refilled completely are dropped with it (a fresh one is the same).
    fn forget(&self, session: &Session) {
        let client_id: &str = &session.id.client_id;
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        if clients.by_id.get(client_id).is_some_and(|c| c.connected_at == session.id.create_time) {
            clients.by_id.remove(client_id);
        }
        if clients.buckets.len() > 2 * clients.by_id.len() + 1024 {
            let (rate, burst, now) = (self.rate, self.burst, Instant::now());
            let Clients { by_id, buckets } = &mut *clients;
            buckets.retain(|owner, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate < burst
                    || by_id.values().any(|c| &c.owner == owner)
            });
        }
    }

    /// The principal behind a client id, unless its credentials have expired.
    fn admitted(&self, client_id: &str) -> Option<Arc<Admitted>> {
        let clients = self.clients.lock().ok()?;
        live(clients.by_id.get(client_id)?)
    }

    async fn check_subscribe(
        &self,
        session: &Session,
        subscribe: &Subscribe,
    ) -> SubscribeAclResult {
        let filter: &str = &subscribe.topic_filter;
        let allowed = match self.admitted(&session.id.client_id) {
            Some(a) => self.gate.allows(&a.principal, Action::Subscribe, filter).await,
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
        let (admitted, owner) = match self.admit_publish(&client_id) {
            Ok(admitted) => admitted,
            Err(reason) => return deny(reason),
        };
        if !self.gate.allows(&admitted.principal, Action::Publish, topic).await {
            return deny("publish_denied");
        }
        if publish.retain
            && let Err(reason) = self.retain(&owner, topic, publish.payload.len())
        {
            return deny(reason);
        }
        self.run_rules(&client_id, topic, &publish.payload);
        PublishAclResult::allow()
    }

    /// The publishing client's principal and identity, if its credentials are live and its
    /// identity's token bucket (one per user or instrument, however many connections it opens: a
    /// flood from one is dropped without slowing the others) has a token. One lock for both: this
    /// runs for every message.
    fn admit_publish(&self, client_id: &str) -> Result<(Arc<Admitted>, Arc<str>), &'static str> {
        let mut clients = self.clients.lock().map_err(|_| "expired")?;
        let Clients { by_id, buckets } = &mut *clients;
        let client = by_id.get(client_id).ok_or("expired")?;
        let admitted = live(client).ok_or("expired")?;
        let bucket = buckets.get_mut(&client.owner).ok_or("expired")?;
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            return Err("rate_limited");
        }
        bucket.tokens -= 1.0;
        Ok((admitted, client.owner.clone()))
    }

    /// Rules see only messages the policy allowed; each hit runs its function in its own task.
    fn run_rules(&self, client_id: &str, topic: &str, payload: &[u8]) {
        let timestamp_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let outcomes = self.rules.evaluate(&Message { topic, payload, client_id, timestamp_ms });
        for outcome in outcomes {
            match outcome {
                Outcome::Hit { rule, function, output } => {
                    metrics::counter!(RULE_HITS, "rule" => rule.clone()).increment(1);
                    let ctx = self.gate.context().clone();
                    // Each invocation gets a request id, and names the instrument it came from,
                    // so "what happened to this event" is one log search away. Time-ordered, as
                    // the HTTP gateway's, so the log store's index of them grows at its end.
                    let request_id = uuid::Uuid::now_v7().to_string();
                    let serial = topic
                        .strip_prefix("instruments/")
                        .and_then(|rest| rest.split('/').next())
                        .map(str::to_string);
                    let topic = topic.to_string();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let acting = portico_functions::rule_acting(
                            &function,
                            serial.as_deref(),
                            Some(request_id.clone()),
                        );
                        let run = portico_functions::run_rule_function(&ctx, &function, output);
                        let result = portico_core::audit::scope(acting, run).await;
                        let elapsed = started.elapsed();
                        metrics::histogram!(RULE_FUNCTION_DURATION, "function" => function.clone())
                            .record(elapsed.as_secs_f64());
                        let duration_ms = elapsed.as_secs_f64() * 1e3;
                        match result {
                            Ok(()) => tracing::info!(
                                rule,
                                function,
                                request_id,
                                serial,
                                topic,
                                duration_ms,
                                "rule invocation"
                            ),
                            Err(e) => {
                                metrics::counter!(RULE_FUNCTION_ERRORS, "function" => function.clone())
                                    .increment(1);
                                tracing::error!(rule, function, request_id, serial, topic, duration_ms, error = %e, "rule function failed");
                            }
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
    live_admitted(&client.admitted).then(|| client.admitted.clone())
}

fn live_admitted(admitted: &Admitted) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    !matches!(admitted.expires_at, Some(exp) if exp <= now)
}

fn qos_label(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    }
}
