//! The embedded broker through a real MQTT client (rumqttc): authentication, the policy, QoS,
//! retained messages, persistent sessions, WebSocket, floods, and the full alert path.

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{ConnectReturnCode, QoS};
use serde_json::{Value, json};

use crate::helpers::{Acme, TestApp, acme_with, id, spawn_app_with, world, write_file};
use crate::mqtt_client::{Connect, Mqtt, connect};

pub(crate) const QUIET: Duration = Duration::from_millis(700);
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn as_user(app: &TestApp, client_id: &str, token: &str) -> Mqtt {
    connect(Connect::tcp(app.mqtt_addr, client_id, "user", token)).await.expect("user connects")
}

/// A user connected as `client_id` and subscribed to their own notification topic (answered).
pub(crate) async fn listening(app: &TestApp, client_id: &str, token: &str) -> (Mqtt, String) {
    let topic = format!("users/{}/notifications", app.user_id(token).await);
    let mut client = as_user(app, client_id, token).await;
    assert!(client.subscribe(&topic, QoS::AtLeastOnce).await, "{topic}");
    (client, topic)
}

pub(crate) async fn as_instrument(app: &TestApp, serial: &str, secret: &str) -> Mqtt {
    connect(Connect::tcp(app.mqtt_addr, serial, serial, secret)).await.expect("instrument connects")
}

async fn notifications(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, page) = app.get("/v1/notifications", token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn an_instrument_error_reaches_exactly_the_right_people() {
    let w = world().await;
    let app = &w.app;
    let mut subscribers = Vec::new();
    for (name, token) in
        [("bob", &w.bob), ("carol", &w.carol), ("dan", &w.dan), ("support", &w.support)]
    {
        let user_id = app.user_id(token).await;
        let mut client = as_user(app, name, token).await;
        let own = format!("users/{user_id}/notifications");
        // Everyone may subscribe to their own topic; nobody can widen it with wildcards.
        assert!(client.subscribe(&own, QoS::AtLeastOnce).await, "{name} own topic");
        for widened in ["users/+/notifications", "users/#", "#", "+/+/notifications"] {
            assert!(!client.subscribe(widened, QoS::AtLeastOnce).await, "{name} {widened}");
        }
        subscribers.push((name, client));
    }

    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    let event = json!({"severity": "critical", "code": "E42", "message": "Pump pressure too high", "event_id": "evt-1"});
    instrument.send("instruments/SN-A1/events", event.to_string().as_bytes()).await;

    for (name, client) in subscribers.iter_mut() {
        let expected = matches!(*name, "bob" | "support");
        let got = client.next(if expected { WAIT } else { QUIET }).await;
        assert_eq!(got.is_some(), expected, "{name}: {got:?}");
        if let Some((topic, payload, qos)) = got {
            let n: Value = serde_json::from_slice(&payload).expect("JSON notification");
            assert!(topic.ends_with("/notifications"));
            assert_eq!(qos, QoS::AtLeastOnce);
            assert_eq!(n["kind"], "instrument_alert");
            assert_eq!(n["data"]["serial"], "SN-A1");
            assert_eq!(n["body"], "Pump pressure too high");
        }
    }
    let bob_list = notifications(app, &w.bob).await;
    assert_eq!(bob_list.len(), 1);
    assert_eq!(notifications(app, &w.support).await.len(), 1);
    assert!(notifications(app, &w.carol).await.is_empty());
    assert!(notifications(app, &w.dan).await.is_empty());

    // Critical: an e-mail each for Bob and support waits in the outbox.
    let mut to: Vec<String> =
        app.outbox("instrument_alert").await.into_iter().map(|(to, _)| to).collect();
    to.sort();
    assert_eq!(to, vec!["bob@acme.example".to_string(), "support@portico.example".to_string()]);

    // The same event delivered again (QoS 1 redelivery) notifies nobody twice.
    instrument.send("instruments/SN-A1/events", event.to_string().as_bytes()).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(notifications(app, &w.bob).await.len(), 1);
    assert_eq!(app.outbox("instrument_alert").await.len(), 2);
    // Nor sends it again over MQTT.
    for (name, client) in subscribers.iter_mut() {
        assert!(client.next(QUIET).await.is_none(), "{name} was told twice");
    }

    // Only the owner can mark it read.
    let nid = bob_list[0]["id"].as_str().expect("id");
    let (status, _) = app.post(&format!("/v1/notifications/{nid}/read"), &w.carol, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, read) =
        app.post(&format!("/v1/notifications/{nid}/read"), &w.bob, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(read["read_at"].is_string());

    // Info events and telemetry alert nobody.
    instrument.send("instruments/SN-A1/events", br#"{"severity":"info"}"#).await;
    instrument
        .publish(
            "instruments/SN-A1/telemetry",
            QoS::AtMostOnce,
            false,
            br#"{"severity":"critical"}"#,
        )
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(notifications(app, &w.bob).await.len(), 1);
}

#[tokio::test]
async fn denied_publishes_are_dropped_before_any_rule_sees_them() {
    let w = world().await;
    let app = &w.app;
    let (mut bob, _) = listening(app, "bob", &w.bob).await;
    let critical = br#"{"severity":"critical","message":"forged"}"#;

    // A user pretending to be Acme's instrument, and Globex's instrument writing to Acme's topic.
    let carol = as_user(app, "carol", &w.carol).await;
    carol.send("instruments/SN-A1/events", critical).await;
    let globex = as_instrument(app, "SN-G1", &w.sn_g1).await;
    globex.send("instruments/SN-A1/events", critical).await;
    assert!(bob.next(QUIET).await.is_none());
    assert!(notifications(app, &w.bob).await.is_empty());

    // Acme's lab manager watches Acme's instrument but not Globex's.
    assert!(bob.subscribe("instruments/SN-A1/#", QoS::AtMostOnce).await);
    assert!(!bob.subscribe("instruments/SN-G1/#", QoS::AtMostOnce).await);
    assert!(!bob.subscribe("instruments/+/events", QoS::AtMostOnce).await);
    assert!(!bob.subscribe("$SYS/#", QoS::AtMostOnce).await);
    let acme_instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    acme_instrument
        .publish("instruments/SN-A1/telemetry", QoS::AtMostOnce, false, b"{\"t\":21.5}")
        .await;
    let (topic, _, _) = bob.next(WAIT).await.expect("own instrument's telemetry");
    assert_eq!(topic, "instruments/SN-A1/telemetry");
    globex.publish("instruments/SN-G1/telemetry", QoS::AtMostOnce, false, b"{}").await;
    assert!(bob.next(QUIET).await.is_none());

    // Commands: lab managers and account admins of the account only.
    let mut device = acme_instrument;
    assert!(device.subscribe("instruments/SN-A1/commands", QoS::AtLeastOnce).await);
    assert!(!device.subscribe("instruments/SN-G1/commands", QoS::AtLeastOnce).await);
    bob.send("instruments/SN-A1/commands", b"{\"cmd\":\"calibrate\"}").await;
    assert!(device.next(WAIT).await.is_some());
    let alice = as_user(app, "alice", &w.alice).await;
    alice.send("instruments/SN-A1/commands", b"{\"cmd\":\"stop\"}").await;
    assert!(device.next(WAIT).await.is_some());
    carol.send("instruments/SN-A1/commands", b"{\"cmd\":\"stop\"}").await;
    let dan = as_user(app, "dan", &w.dan).await;
    dan.send("instruments/SN-A1/commands", b"{\"cmd\":\"stop\"}").await;
    assert!(device.next(QUIET).await.is_none());
}

#[tokio::test]
async fn connects_are_refused_with_the_right_code() {
    let w = world().await;
    let app = &w.app;
    let attempt = |client_id: &'static str, username: &'static str, password: String| {
        let addr = app.mqtt_addr;
        async move { connect(Connect::tcp(addr, client_id, username, &password)).await.err() }
    };
    assert_eq!(
        attempt("a", "SN-A1", "wrong-secret".into()).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        attempt("b", "SN-UNKNOWN", w.sn_a1.clone()).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        attempt("c", "x", "not.a.token".into()).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let mut expired = app.claims("bob@acme.example");
    expired["exp"] = json!(crate::helpers::now() - 3600);
    assert_eq!(
        attempt("d", "x", app.issuer.sign(&expired).expect("signed")).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    // A valid token for someone Portico does not know yet.
    let stranger = app.token("mallory@example.com", &[]);
    assert_eq!(attempt("e", "x", stranger).await, Some(ConnectReturnCode::NotAuthorized));
    assert!(attempt("f", "x", w.bob.clone()).await.is_none());
    let _ = &w.acme;
}

#[tokio::test]
async fn a_client_id_cannot_be_taken_over_by_another_identity() {
    let w = world().await;
    let app = &w.app;
    let bob_id = app.user_id(&w.bob).await;
    let mut bob = connect(Connect::tcp(app.mqtt_addr, "shared-id", "bob", &w.bob).clean(false))
        .await
        .expect("bob connects");
    assert!(bob.subscribe(&format!("users/{bob_id}/notifications"), QoS::AtLeastOnce).await);
    bob.disconnect().await;
    let refused =
        connect(Connect::tcp(app.mqtt_addr, "shared-id", "carol", &w.carol).clean(false)).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
}

#[tokio::test]
async fn persistent_sessions_get_what_they_missed() {
    let w = world().await;
    let app = &w.app;
    let bob_id = app.user_id(&w.bob).await;
    let session = |clean| Connect::tcp(app.mqtt_addr, "bob-phone", "bob", &w.bob).clean(clean);
    let mut bob = connect(session(false)).await.expect("connects");
    assert!(bob.subscribe(&format!("users/{bob_id}/notifications"), QoS::AtLeastOnce).await);
    bob.disconnect().await;

    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    instrument
        .send(
            "instruments/SN-A1/events",
            br#"{"severity":"error","message":"while you were away"}"#,
        )
        .await;
    tokio::time::sleep(QUIET).await;

    let mut bob = connect(session(false)).await.expect("reconnects");
    let (_, payload, _) = bob.next(WAIT).await.expect("the queued notification");
    assert!(String::from_utf8_lossy(&payload).contains("while you were away"));
}

#[tokio::test]
async fn qos_levels_and_retained_messages_on_account_channels() {
    let w = world().await;
    let app = &w.app;
    let channel = format!("accounts/{}/channels/lab", id(&w.acme));
    let carol = as_user(app, "carol", &w.carol).await;
    carol.retain(&channel, b"retained status").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut bob = as_user(app, "bob", &w.bob).await;
    assert!(bob.subscribe(&format!("accounts/{}/channels/+", id(&w.acme)), QoS::ExactlyOnce).await);
    let (_, payload, _) = bob.next(WAIT).await.expect("retained message on subscribe");
    assert_eq!(payload, b"retained status");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let body = format!("qos {qos:?}");
        carol.publish(&channel, qos, false, body.as_bytes()).await;
        let (_, payload, got) = bob.next(WAIT).await.expect("delivered");
        assert_eq!(payload, body.as_bytes());
        assert_eq!(got, qos);
    }
    // Another account's channel is closed to carol both ways.
    let mut carol = carol;
    assert!(!carol.subscribe("accounts/someone-else/channels/+", QoS::AtMostOnce).await);
}

#[tokio::test]
async fn websocket_clients_work_like_tcp_clients() {
    let w = world().await;
    let app = &w.app;
    let bob_id = app.user_id(&w.bob).await;
    let mut bob = connect(Connect::tcp(app.mqtt_ws_addr, "bob-browser", "bob", &w.bob).websocket())
        .await
        .expect("WebSocket connect");
    assert!(bob.subscribe(&format!("users/{bob_id}/notifications"), QoS::AtLeastOnce).await);
    assert!(!bob.subscribe("users/+/notifications", QoS::AtLeastOnce).await);
    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    instrument.send("instruments/SN-A1/events", br#"{"severity":"error"}"#).await;
    assert!(bob.next(WAIT).await.is_some());
}

#[tokio::test]
async fn a_flooding_client_is_throttled_and_others_are_not() {
    let Acme { app: w_app, acme, bob, carol } = acme_with(&[
        ("PORTICO_MQTT_PUBLISH_RATE_PER_SEC", "20"),
        ("PORTICO_MQTT_PUBLISH_BURST", "20"),
    ])
    .await;
    let secret = w_app.register_instrument(&acme, "SN-F1").await;
    let mut watcher = as_user(&w_app, "bob", &bob).await;
    assert!(watcher.subscribe("instruments/SN-F1/telemetry", QoS::AtMostOnce).await);
    let channel = format!("accounts/{}/channels/ops", id(&acme));
    assert!(watcher.subscribe(&channel, QoS::AtMostOnce).await);

    let flooder = as_instrument(&w_app, "SN-F1", &secret).await;
    for i in 0..200 {
        flooder
            .publish(
                "instruments/SN-F1/telemetry",
                QoS::AtMostOnce,
                false,
                format!("{i}").as_bytes(),
            )
            .await;
    }
    let polite = as_user(&w_app, "carol", &carol).await;
    polite.publish(&channel, QoS::AtMostOnce, false, b"still heard").await;

    let mut telemetry = 0;
    let mut heard_polite = false;
    while let Some((topic, payload, _)) = watcher.next(Duration::from_millis(1500)).await {
        if topic == channel {
            heard_polite = payload == b"still heard";
        } else {
            telemetry += 1;
        }
    }
    assert!(heard_polite, "the other client was not affected");
    assert!(telemetry < 200, "the flood was throttled ({telemetry} delivered)");
    assert!(telemetry >= 20, "the burst got through ({telemetry} delivered)");
}

#[tokio::test]
async fn bad_input_is_refused_and_the_broker_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let app = &w.app;
    let (mut bob, _) = listening(app, "bob", &w.bob).await;
    assert!(bob.subscribe("instruments/SN-A1/#", QoS::AtMostOnce).await);

    // Garbage instead of a CONNECT: the connection is closed.
    let mut raw = tokio::net::TcpStream::connect(app.mqtt_addr).await.expect("tcp");
    raw.write_all(b"\xff\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "garbage must not get an answer: {read:?}");

    // A payload over the packet limit never arrives; the sender is cut off, others carry on.
    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    let huge = vec![b'x'; 200 * 1024];
    instrument.publish("instruments/SN-A1/telemetry", QoS::AtMostOnce, false, &huge).await;
    assert!(bob.next(QUIET).await.is_none());

    // Not JSON on a JSON rule: the rule skips it (and says so in the metrics); nobody is alerted.
    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    instrument.send("instruments/SN-A1/events", b"severity=critical").await;
    let (topic, _, _) = bob.next(WAIT).await.expect("the raw event still reaches watchers");
    assert_eq!(topic, "instruments/SN-A1/events");
    assert!(bob.next(QUIET).await.is_none(), "no notification for a payload the rule cannot read");
    assert!(notifications(app, &w.bob).await.is_empty());

    // And the broker still works for everyone.
    instrument.send("instruments/SN-A1/events", br#"{"severity":"error"}"#).await;
    let mut got_notification = false;
    while let Some((topic, _, _)) = bob.next(WAIT).await {
        if topic.ends_with("/notifications") {
            got_notification = true;
            break;
        }
    }
    assert!(got_notification);
    assert!(!bob.subscribe("#", QoS::AtMostOnce).await);

    let text = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "portico_mqtt_connections",
        "portico_mqtt_messages_in_total{qos=\"1\"}",
        "portico_mqtt_messages_out_total",
        "portico_mqtt_dropped_total",
        "portico_rule_hits_total{rule=\"instrument_alert\"}",
        "portico_rule_skips_total{rule=\"instrument_alert\"}",
        "portico_rule_function_duration_seconds_bucket{function=\"instrument_alert\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
}

#[tokio::test]
async fn an_expired_token_ends_the_session() {
    let w = world().await;
    let app = &w.app;
    let token = app
        .issuer
        .mint(&portico_auth::TokenRequest {
            sub: "bob@acme.example".into(),
            groups: vec![],
            ttl: Duration::from_secs(2),
        })
        .expect("token");
    let (mut bob, _) = listening(app, "bob-short", &token).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let instrument = as_instrument(app, "SN-A1", &w.sn_a1).await;
    instrument.send("instruments/SN-A1/events", br#"{"severity":"error"}"#).await;
    assert!(bob.next(QUIET * 2).await.is_none(), "an expired session receives nothing");
    // Stored all the same, for when Bob comes back with a fresh token.
    tokio::time::sleep(QUIET).await;
    assert_eq!(notifications(app, &w.bob).await.len(), 1);
}

#[tokio::test]
async fn policy_and_rules_files_replace_the_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_file(
        &dir,
        "policy.toml",
        "[[grant]]\nwho = \"instrument\"\npublish = [\"instruments/${serial}/events\"]\n\n[[grant]]\nroles = [\"scientist\"]\nsubscribe = [\"users/${user_id}/notifications\", \"instruments/${account_serial}/events\"]\n",
    );
    let rules = write_file(
        &dir,
        "rules.json",
        r#"{"rules": [{"name": "everything_alerts", "function": "instrument_alert",
            "sql": "SELECT *, topic(2) AS serial, 'error' AS severity FROM 'instruments/+/events' WHERE level > 3"}]}"#,
    );
    let app = spawn_app_with(&[
        ("PORTICO_MQTT_POLICY_FILE", policy.to_str().expect("utf-8")),
        ("PORTICO_MQTT_RULES_FILE", rules.to_str().expect("utf-8")),
    ])
    .await;
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let bob = app.add_user(&acme, "bob@acme.example", &["lab_manager"]).await;
    let secret = app.register_instrument(&acme, "SN-P1").await;
    let mut carol_client = as_user(&app, "carol", &carol).await;
    assert!(
        carol_client.subscribe("instruments/SN-P1/events", QoS::AtMostOnce).await,
        "the custom grant applies"
    );
    let mut bob_client = as_user(&app, "bob", &bob).await;
    assert!(
        !bob_client.subscribe("instruments/SN-P1/#", QoS::AtMostOnce).await,
        "the default grant is gone"
    );
    let instrument = as_instrument(&app, "SN-P1", &secret).await;
    instrument.send("instruments/SN-P1/events", br#"{"level": 5}"#).await;
    assert!(carol_client.next(WAIT).await.is_some());
    tokio::time::sleep(QUIET).await;
    assert_eq!(notifications(&app, &bob).await.len(), 1, "the custom rule fired");
}

#[tokio::test]
async fn a_token_without_a_required_scope_cannot_connect() {
    let app = spawn_app_with(&[("PORTICO_AUTH_REQUIRED_SCOPES", "portico.api")]).await;
    let acme = app.create_account("Acme").await;
    let bob = app.add_user(&acme, "bob@acme.example", &["lab_manager"]).await;
    let scopeless = app.issuer.sign(&app.claims("bob@acme.example")).expect("signed");
    let attempt = |client_id: &'static str, password: String| {
        let addr = app.mqtt_addr;
        async move { connect(Connect::tcp(addr, client_id, "bob", &password)).await.err() }
    };
    // Genuine but not allowed: "not authorized", not "bad credentials".
    assert_eq!(attempt("scopeless", scopeless).await, Some(ConnectReturnCode::NotAuthorized));
    assert!(attempt("scoped", bob).await.is_none());
}
