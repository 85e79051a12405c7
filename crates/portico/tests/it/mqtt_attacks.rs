//! The broker against a client with a valid account who tries every side door: wills, resumed
//! sessions, squatted client ids, many connections, retained messages and failed-login floods.

use std::time::Duration;

use rumqttc::{ConnectReturnCode, LastWill, QoS};

use crate::helpers::{Acme, acme_with, id, world};
use crate::mqtt::{QUIET, WAIT, as_instrument, as_user, listening};
use crate::mqtt_client::{Connect, Mqtt, connect, connect_with};

fn will(topic: &str, payload: &[u8], retain: bool) -> LastWill {
    LastWill::new(topic, payload.to_vec(), QoS::AtLeastOnce, retain)
}

/// Everything `client` receives within `QUIET`.
async fn drain(client: &mut Mqtt) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((topic, payload, _)) = client.next(QUIET).await {
        out.push((topic, payload));
    }
    out
}

#[tokio::test]
async fn a_will_is_refused_unless_its_publish_would_be_allowed() {
    let w = world().await;
    let app = &w.app;
    // The targets listen: SN-G1 for commands, bob for notifications, dan on Globex's channels.
    let mut sn_g1 = as_instrument(app, "SN-G1", &w.sn_g1).await;
    assert!(sn_g1.subscribe("instruments/SN-G1/commands", QoS::AtLeastOnce).await);
    let (mut bob, bob_topic) = listening(app, "bob", &w.bob).await;
    let globex_channel = format!("accounts/{}/channels/ops", id(&w.globex));
    let mut dan = as_user(app, "dan", &w.dan).await;
    assert!(dan.subscribe(&globex_channel, QoS::AtLeastOnce).await);

    // Carol, a scientist of Acme, tries each forgery as a (retained) will.
    for (n, topic) in [
        "instruments/SN-G1/commands",
        "instruments/SN-A1/commands",
        bob_topic.as_str(),
        globex_channel.as_str(),
        "instruments/SN-G1/events",
    ]
    .into_iter()
    .enumerate()
    {
        let client_id = format!("carol-will-{n}");
        let attempt = connect_with(
            Connect::tcp(app.mqtt_addr, &client_id, "carol", &w.carol),
            Some(will(topic, br#"{"command":"purge","severity":"critical"}"#, true)),
        )
        .await;
        assert_eq!(attempt.err(), Some(ConnectReturnCode::NotAuthorized), "a will on {topic}");
    }
    assert!(drain(&mut sn_g1).await.is_empty());
    assert!(drain(&mut bob).await.is_empty());
    assert!(drain(&mut dan).await.is_empty());
    // Nothing was retained either: a fresh subscriber gets nothing.
    let mut late = as_instrument(app, "SN-G1", &w.sn_g1).await;
    assert!(late.subscribe("instruments/SN-G1/commands", QoS::AtLeastOnce).await);
    assert!(drain(&mut late).await.is_empty());
}

#[tokio::test]
async fn an_allowed_will_is_published_and_seen_by_the_rules() {
    let w = world().await;
    let app = &w.app;
    let (mut bob, bob_topic) = listening(app, "bob", &w.bob).await;
    let instrument = connect_with(
        Connect::tcp(app.mqtt_addr, "SN-A1", "SN-A1", &w.sn_a1),
        Some(will(
            "instruments/SN-A1/events",
            br#"{"severity":"critical","message":"Instrument went offline"}"#,
            false,
        )),
    )
    .await
    .expect("an instrument may leave a will on its own events");
    drop(instrument); // the socket closes without DISCONNECT: the will goes out
    let (topic, payload, _) = bob.next(WAIT).await.expect("the alert from the will");
    assert_eq!(topic, bob_topic);
    let alert: serde_json::Value = serde_json::from_slice(&payload).expect("json");
    assert!(alert.to_string().contains("Instrument went offline"), "{alert}");
}

#[tokio::test]
async fn a_will_whose_token_expired_is_withheld() {
    let w = world().await;
    let app = &w.app;
    let channel = format!("accounts/{}/channels/ops", id(&w.acme));
    let mut bob = as_user(app, "bob", &w.bob).await;
    assert!(bob.subscribe(&channel, QoS::AtLeastOnce).await);
    let short = app
        .issuer
        .mint(&portico_auth::TokenRequest {
            sub: "carol@acme.example".into(),
            groups: Vec::new(),
            ttl: Duration::from_secs(2),
        })
        .expect("token");
    let carol = connect_with(
        Connect::tcp(app.mqtt_addr, "carol-short", "carol", &short),
        Some(will(&channel, b"carol left", false)),
    )
    .await
    .expect("a will on her own account's channel is allowed");
    // The broker ends the session when the token expires; by then a publish would be refused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(carol);
    assert!(
        drain(&mut bob).await.is_empty(),
        "the will of an expired session reached a subscriber"
    );
}

#[tokio::test]
async fn a_resumed_session_keeps_only_what_its_principal_may_still_receive() {
    let w = world().await;
    let app = &w.app;
    // Sam is an Acme scientist who was also platform support (an Okta group) for a while.
    app.add_user(&w.acme, "sam@acme.example", &["scientist"]).await;
    let as_support = app.token("sam@acme.example", &["portico-support"]);
    let as_scientist = app.token("sam@acme.example", &[]);
    let session = |token| Connect::tcp(app.mqtt_addr, "sam-laptop", "sam", token).clean(false);
    let mut sam = connect(session(&as_support)).await.expect("connects");
    assert!(sam.subscribe("instruments/+/#", QoS::AtLeastOnce).await);
    sam.disconnect().await;

    let sn_g1 = as_instrument(app, "SN-G1", &w.sn_g1).await;
    let telemetry = |n: u32| {
        let sn_g1 = &sn_g1;
        async move {
            sn_g1.send("instruments/SN-G1/telemetry", format!("{{\"n\":{n}}}").as_bytes()).await
        }
    };
    telemetry(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still support: the queued message arrives (the session works as persistent sessions do).
    let mut sam = connect(session(&as_support)).await.expect("resumes");
    let got = drain(&mut sam).await;
    assert_eq!(got.len(), 1, "{got:?}");
    sam.disconnect().await;

    telemetry(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No longer support: neither the queued message nor anything later reaches the session.
    let mut sam = connect(session(&as_scientist)).await.expect("resumes as a scientist");
    assert!(drain(&mut sam).await.is_empty(), "a queued message leaked");
    telemetry(3).await;
    assert!(drain(&mut sam).await.is_empty(), "a lost subscription kept delivering");
    // What the scientist may still subscribe to works on the same session.
    assert!(
        !sam.subscribe("instruments/+/#", QoS::AtLeastOnce).await,
        "and a fresh SUBSCRIBE is refused as before"
    );
}

#[tokio::test]
async fn an_instruments_serial_is_its_own_client_id() {
    let w = world().await;
    let app = &w.app;
    let as_carol = |client_id: &'static str, clean| {
        Connect::tcp(app.mqtt_addr, client_id, "carol", &w.carol).clean(clean)
    };
    // A registered serial cannot be used by anyone else.
    assert_eq!(
        connect(as_carol("SN-A1", true)).await.err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    // A session squatted before the instrument was registered does not lock it out, and none of
    // the squatter's session is handed to it.
    let channel = format!("accounts/{}/channels/ops", id(&w.acme));
    let mut squat = connect(as_carol("SN-NEW", false)).await.expect("free yet");
    assert!(squat.subscribe(&channel, QoS::AtLeastOnce).await);
    squat.disconnect().await;
    let secret = app.register_instrument(&w.acme, "SN-NEW").await;
    let mut rightful =
        connect(Connect::tcp(app.mqtt_addr, "SN-NEW", "SN-NEW", &secret).clean(false))
            .await
            .expect("the instrument gets its serial back");
    assert_eq!(
        connect(as_carol("SN-NEW", false)).await.err(),
        Some(ConnectReturnCode::NotAuthorized),
        "and the squatter cannot take it again"
    );
    let bob = as_user(app, "bob", &w.bob).await;
    bob.send(&channel, b"for members").await;
    assert!(
        drain(&mut rightful).await.is_empty(),
        "the squatter's subscription was handed to the instrument"
    );
}

#[tokio::test]
async fn a_client_id_that_starts_with_a_user_id_is_that_users_alone() {
    let w = world().await;
    let app = &w.app;
    let bob_id = app.user_id(&w.bob).await;
    let phone = format!("{bob_id}-phone");
    let as_dan = Connect::tcp(app.mqtt_addr, &phone, "dan", &w.dan).clean(false);
    assert_eq!(connect(as_dan).await.err(), Some(ConnectReturnCode::NotAuthorized));
    let bob = connect(Connect::tcp(app.mqtt_addr, &phone, "bob", &w.bob).clean(false))
        .await
        .expect("bob uses his own id");
    bob.disconnect().await;
}

#[tokio::test]
async fn the_publish_budget_is_per_identity_not_per_connection() {
    let Acme { app, acme, bob, carol } = acme_with(&[
        ("PORTICO_MQTT_PUBLISH_RATE_PER_SEC", "1"),
        ("PORTICO_MQTT_PUBLISH_BURST", "20"),
    ])
    .await;
    let channel = format!("accounts/{}/channels/ops", id(&acme));
    let mut watcher = as_user(&app, "carol", &carol).await;
    assert!(watcher.subscribe(&channel, QoS::AtMostOnce).await);
    let mut flooders = Vec::new();
    for n in 0..5 {
        flooders.push(as_user(&app, &format!("bob-{n}"), &bob).await);
    }
    for flooder in &flooders {
        for i in 0..20 {
            flooder.publish(&channel, QoS::AtMostOnce, false, format!("{i}").as_bytes()).await;
        }
    }
    let heard = drain(&mut watcher).await.len();
    // One burst (20) plus what a few seconds of refill allow, not five bursts (100).
    assert!((20..=30).contains(&heard), "{heard} messages from five connections of one user");
}

#[tokio::test]
async fn retained_messages_are_bounded_per_identity() {
    let Acme { app, acme, bob, carol } = acme_with(&[
        ("PORTICO_MQTT_RETAINED_PER_IDENTITY", "3"),
        ("PORTICO_MQTT_RETAINED_BYTES_PER_IDENTITY", "1000"),
    ])
    .await;
    let channels = format!("accounts/{}/channels", id(&acme));
    let bob_client = as_user(&app, "bob", &bob).await;
    for n in 0..5 {
        bob_client.retain(&format!("{channels}/pinned-{n}"), b"status").await;
    }
    // Too large for what is left of his bytes.
    bob_client.retain(&format!("{channels}/pinned-0"), &[b'x'; 1001]).await;
    // Carol has her own allowance.
    let carol_client = as_user(&app, "carol", &carol).await;
    carol_client.retain(&format!("{channels}/carol"), b"mine").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut reader = as_user(&app, "reader", &carol).await;
    assert!(reader.subscribe(&format!("{channels}/+"), QoS::AtLeastOnce).await);
    let mut got: Vec<String> = drain(&mut reader)
        .await
        .into_iter()
        .map(|(topic, payload)| format!("{topic}={}", String::from_utf8_lossy(&payload)))
        .collect();
    got.sort();
    let want: Vec<String> = ["carol=mine", "pinned-0=status", "pinned-1=status", "pinned-2=status"]
        .iter()
        .map(|t| format!("{channels}/{t}"))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn failed_logins_back_off_per_username() {
    let w = world().await;
    let app = &w.app;
    let attempt = |secret: &str| {
        let secret = secret.to_string();
        async move { connect(Connect::tcp(app.mqtt_addr, "SN-A1", "SN-A1", &secret)).await.err() }
    };
    for _ in 0..6 {
        assert_eq!(attempt("guessing").await, Some(ConnectReturnCode::BadUserNamePassword));
    }
    // Blocked now: even the right secret is turned away without being checked ...
    assert_eq!(attempt(&w.sn_a1).await, Some(ConnectReturnCode::NotAuthorized));
    // ... other identities are not ...
    assert!(connect(Connect::tcp(app.mqtt_addr, "SN-G1", "SN-G1", &w.sn_g1)).await.is_ok());
    // ... and once the backoff has passed, the instrument gets in.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(attempt(&w.sn_a1).await, None);
}

#[tokio::test]
async fn failed_logins_back_off_per_source_address() {
    let w = world().await;
    let app = &w.app;
    let attempt = |client_id: String, username: String, password: String| async move {
        connect(Connect::tcp(app.mqtt_addr, &client_id, &username, &password)).await.err()
    };
    // Guessing a new serial every time dodges the per-serial backoff, not the per-address one.
    for n in 0..20 {
        assert_eq!(
            attempt(format!("guess-{n}"), format!("SN-GUESS-{n}"), "x".into()).await,
            Some(ConnectReturnCode::BadUserNamePassword)
        );
    }
    assert_eq!(
        attempt("guess-20".into(), "SN-GUESS-20".into(), "x".into()).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    // The address is blocked for a moment: even a good login from it waits ...
    assert_eq!(
        attempt("bob".into(), "bob".into(), w.bob.clone()).await,
        Some(ConnectReturnCode::NotAuthorized)
    );
    // ... and gets in once the backoff has passed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(attempt("bob".into(), "bob".into(), w.bob.clone()).await, None);
}
