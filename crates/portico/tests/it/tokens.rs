//! The token authorizer against forged, stale and misaddressed tokens: every one gets 401 with a
//! problem document, and nothing is provisioned for it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, header, now, spawn_app};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let response =
        app.client.get(app.url("/v1/accounts")).bearer_auth(token).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
    assert!(response.headers().contains_key("www-authenticate"), "{why}");
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"), "{why}");
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused() {
    let app = spawn_app().await;
    let kid = app.issuer.kid().to_string();
    let good = app.claims("admin@portico.example");
    let sign = |claims: Value| app.issuer.sign(&claims).expect("signed");
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        sign(c)
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(key);
        sign(c)
    };

    // The untampered token works, so every refusal below is about the one thing changed.
    let (status, _) = app.get("/v1/accounts", &sign(good.clone())).await;
    assert_eq!(status, StatusCode::OK);

    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": kid})), b64(&good));
    assert_refused(&app, &alg_none, "alg none").await;

    // HS256 keyed with the public key (the classic algorithm-confusion attack).
    let public_n = app.issuer.jwks()["keys"][0]["n"].as_str().expect("n").to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(public_n.as_bytes()),
    )
    .expect("hs256");
    assert_refused(&app, &hs256, "HS256 with the public key").await;

    let unknown_kid = app
        .issuer
        .sign_with_header(&json!({"alg": "RS256", "kid": "not-a-key"}), &good)
        .expect("signed");
    assert_refused(&app, &unknown_kid, "unknown kid").await;
    let no_kid = app.issuer.sign_with_header(&json!({"alg": "RS256"}), &good).expect("signed");
    assert_refused(&app, &no_kid, "no kid").await;
    let crit = app
        .issuer
        .sign_with_header(
            &json!({"alg": "RS256", "kid": kid, "crit": ["exp-v2"], "exp-v2": 1}),
            &good,
        )
        .expect("signed");
    assert_refused(&app, &crit, "unknown crit").await;

    let t = now();
    assert_refused(&app, &with("exp", json!(t - 600)), "expired beyond leeway").await;
    assert_refused(&app, &with("nbf", json!(t + 600)), "not yet valid").await;
    assert_refused(&app, &with("iat", json!(t + 600)), "issued in the future").await;
    assert_refused(
        &app,
        &with("iss", json!("https://evil.example/oauth2/default")),
        "wrong issuer",
    )
    .await;
    assert_refused(&app, &with("aud", json!("api://other")), "wrong audience").await;
    assert_refused(&app, &without("exp"), "no exp").await;
    assert_refused(&app, &without("sub"), "no sub").await;

    // A valid signature over changed claims.
    let token = sign(good.clone());
    let mut parts: Vec<&str> = token.split('.').collect();
    let tampered = b64(
        &json!({"sub": "someone-else", "iss": good["iss"], "aud": "api://default", "exp": t + 600}),
    );
    parts[1] = &tampered;
    assert_refused(&app, &parts.join("."), "tampered payload").await;

    assert_refused(&app, &"a".repeat(9000), "oversized token").await;
    assert_refused(&app, "not.a.jwt", "garbage").await;

    for header in ["", "Bearer", "Basic dXNlcjpwYXNz", "Bearer    "] {
        let response = app
            .client
            .get(app.url("/v1/me"))
            .header("authorization", header)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "header {header:?}");
    }
    let (status, _) = app.call(reqwest::Method::GET, "/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn small_clock_skew_is_tolerated() {
    let app = spawn_app().await;
    let mut claims = app.claims("admin@portico.example");
    let t = now();
    claims["exp"] = json!(t - 30);
    claims["iat"] = json!(t + 30);
    let (status, _) = app.get("/v1/me", &app.issuer.sign(&claims).expect("signed")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_for_another_account_opens_nothing_there() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme").await;
    let globex = app.create_account("Globex").await;
    let alice = app.add_user(&acme, "alice@acme.example", &["account_admin"]).await;
    let globex_users = format!("/v1/accounts/{}/users", globex["id"].as_str().expect("id"));
    let (status, _) = app.get(&globex_users, &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
