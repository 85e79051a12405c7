//! E-mail through a local stand-in that speaks SendGrid's v3 Mail Send wire format and fails on
//! command: every e-mail ends sent exactly once, or failed with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

#[derive(Clone, Debug)]
enum Answer {
    Accept,
    Status(u16, &'static str),
    RateLimited,
    Slow,
    Close,
}

#[derive(Default)]
struct SendGrid {
    /// Answers to give, per recipient, in order; then `Accept`.
    script: Mutex<HashMap<String, Vec<Answer>>>,
    /// Every request: (Authorization header, body).
    requests: Mutex<Vec<(String, Value)>>,
    /// Message ids accepted (202), in order.
    accepted: Mutex<Vec<String>>,
}

async fn mail_send(
    State(sg): State<Arc<SendGrid>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let to = body["personalizations"][0]["to"][0]["email"].as_str().unwrap_or("").to_string();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    sg.requests.lock().expect("lock").push((auth, body.clone()));
    let answer = {
        let mut script = sg.script.lock().expect("lock");
        match script.get_mut(&to) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => Answer::Accept,
        }
    };
    match answer {
        Answer::Accept => {
            let id = body["custom_args"]["portico_message_id"].as_str().unwrap_or("").to_string();
            sg.accepted.lock().expect("lock").push(id.clone());
            (StatusCode::ACCEPTED, [("x-message-id", format!("sg-{id}"))]).into_response()
        }
        Answer::Status(code, error) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            Json(json!({"errors": [{"message": error, "field": null, "help": null}]})),
        )
            .into_response(),
        Answer::RateLimited => {
            let reset = crate::helpers::now() + 1;
            (StatusCode::TOO_MANY_REQUESTS, [("x-ratelimit-reset", reset.to_string())], "")
                .into_response()
        }
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::ACCEPTED.into_response()
        }
        // A panicking handler makes the server drop the connection without an answer.
        Answer::Close => panic!("closing the connection on purpose"),
    }
}

async fn stand_in() -> (Arc<SendGrid>, String) {
    let sg = Arc::new(SendGrid::default());
    let app = Router::new().route("/v3/mail/send", post(mail_send)).with_state(sg.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (sg, format!("http://{addr}"))
}

async fn app_with_sendgrid(base: &str) -> TestApp {
    spawn_app_with(&[
        ("PORTICO_SENDGRID_API_KEY", "SG.test-key"),
        ("PORTICO_SENDGRID_BASE_URL", base),
        ("PORTICO_SENDGRID_FROM_EMAIL", "portal@lab-maker.example"),
        ("PORTICO_SENDGRID_RETRY_BASE_MS", "100"),
        ("PORTICO_SENDGRID_MAX_ATTEMPTS", "3"),
        ("PORTICO_SENDGRID_TIMEOUT_SECS", "1"),
    ])
    .await
}

/// Waits until no outbox entry is pending or sending; returns them all.
async fn settled_outbox(app: &TestApp) -> Vec<Value> {
    for _ in 0..300 {
        let (status, page) = app.get("/v1/outbox?limit=200", &app.admin_token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        if !items.is_empty()
            && items.iter().all(|e| e["status"] == "sent" || e["status"] == "failed")
        {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox never settled");
}

#[tokio::test]
async fn a_welcome_email_goes_out_once_in_sendgrid_format() {
    let (sg, base) = stand_in().await;
    let app = app_with_sendgrid(&base).await;
    let acme = app.create_account("Acme <Labs> & Co").await;
    app.add_user(&acme, "lena@acme.example", &["lab_manager"]).await;
    let outbox = settled_outbox(&app).await;
    assert_eq!(outbox.len(), 1);
    let entry = &outbox[0];
    assert_eq!((entry["status"].as_str(), entry["attempts"].as_u64()), (Some("sent"), Some(1)));
    assert_eq!(entry["category"], "welcome");
    let message_id = entry["id"].as_str().expect("id");
    assert_eq!(entry["provider_message_id"], format!("sg-{message_id}"));

    let requests = sg.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    let (auth, body) = &requests[0];
    assert_eq!(auth, "Bearer SG.test-key");
    assert_eq!(body["personalizations"][0]["to"][0]["email"], "lena@acme.example");
    assert_eq!(body["from"]["email"], "portal@lab-maker.example");
    assert!(body["subject"].as_str().is_some_and(|s| s.starts_with("[Portico] Welcome to Acme")));
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["type"], "text/html");
    assert!(
        body["content"][1]["value"]
            .as_str()
            .is_some_and(|h| h.contains("Acme &lt;Labs&gt; &amp; Co"))
    );
    assert_eq!(body["custom_args"]["portico_message_id"], message_id);
    assert_eq!(body["categories"], json!(["welcome"]));

    // Only admins read the outbox.
    let aa = app.add_user(&acme, "alice@acme.example", &["account_admin"]).await;
    let (status, _) = app.get("/v1/outbox", &aa).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get("/v1/outbox?status=bogus", &app.admin_token()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_failure_ends_sent_once_or_failed_with_the_reason() {
    let (sg, base) = stand_in().await;
    {
        let mut script = sg.script.lock().expect("lock");
        let mut set = |to: &str, answers: Vec<Answer>| {
            script.insert(to.to_string(), answers);
        };
        set(
            "bad@acme.example",
            vec![Answer::Status(400, "The to email does not contain a valid address.")],
        );
        set(
            "unauthorized@acme.example",
            vec![Answer::Status(
                401,
                "The provided authorization grant is invalid, expired, or revoked",
            )],
        );
        set("huge@acme.example", vec![Answer::Status(413, "Payload too large")]);
        set("limited@acme.example", vec![Answer::RateLimited]);
        set(
            "flaky@acme.example",
            vec![Answer::Status(500, "internal"), Answer::Status(502, "bad gateway")],
        );
        set("slow@acme.example", vec![Answer::Slow]);
        set("closed@acme.example", vec![Answer::Close]);
        set(
            "down@acme.example",
            vec![
                Answer::Status(503, "down"),
                Answer::Status(503, "down"),
                Answer::Status(503, "down"),
                Answer::Status(503, "down"),
            ],
        );
    }
    let app = app_with_sendgrid(&base).await;
    let acme = app.create_account("Acme").await;
    let recipients =
        ["ok", "bad", "unauthorized", "huge", "limited", "flaky", "slow", "closed", "down"];
    for name in recipients {
        app.add_user(&acme, &format!("{name}@acme.example"), &["scientist"]).await;
    }
    let outbox = settled_outbox(&app).await;
    assert_eq!(outbox.len(), recipients.len());
    let by_to: HashMap<String, &Value> =
        outbox.iter().map(|e| (e["to"].as_str().expect("to").to_string(), e)).collect();
    let expect = |to: &str, status: &str, attempts: u64, error: Option<&str>| {
        let e = by_to[&format!("{to}@acme.example")];
        assert_eq!(e["status"], status, "{to}: {e}");
        assert_eq!(e["attempts"], attempts, "{to}: {e}");
        if let Some(error) = error {
            assert!(e["last_error"].as_str().is_some_and(|m| m.contains(error)), "{to}: {e}");
        }
    };
    expect("ok", "sent", 1, None);
    expect(
        "bad",
        "failed",
        1,
        Some("SendGrid 400: The to email does not contain a valid address."),
    );
    expect("unauthorized", "failed", 1, Some("SendGrid 401"));
    expect("huge", "failed", 1, Some("SendGrid 413"));
    expect("limited", "sent", 2, None);
    expect("flaky", "sent", 3, None);
    expect("slow", "sent", 2, None);
    expect("closed", "sent", 2, None);
    expect("down", "failed", 3, Some("gave up after 3 attempts"));

    // Nothing was accepted twice. (The slow answer arrived after our timeout and is not counted:
    // had SendGrid delivered it, the duplicate would carry the same message id in custom_args.)
    let accepted = sg.accepted.lock().expect("lock").clone();
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &accepted {
        *counts.entry(id).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    assert_eq!(accepted.len(), 5, "ok, limited, flaky, slow, closed");
}
