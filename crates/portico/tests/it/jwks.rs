//! The verifier against a remote (Okta-like) issuer served by a local test server: discovery, key
//! rotation, the refetch rate limit, outages and slow responses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portico_auth::{AuthError, DevIssuer, JwksSettings, TokenRequest, Verifier, VerifierSettings};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Outage,
    Slow,
}

struct Okta {
    issuer: String,
    /// The issuer the metadata claims to be (normally `issuer`).
    metadata_issuer: Mutex<String>,
    keys: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    max_age: Mutex<u64>,
    oauth_metadata: Mutex<bool>,
    fetches: AtomicUsize,
}

struct TestIssuer {
    okta: Arc<Okta>,
    _dir: tempfile::TempDir,
    key_a: DevIssuer,
    key_b: DevIssuer,
}

impl TestIssuer {
    async fn start() -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}/oauth2/default");
        let dir = tempfile::tempdir().expect("temp dir");
        let key_a = DevIssuer::load_or_create(&dir.path().join("a"), &issuer, "api://default")
            .expect("key a");
        let key_b = DevIssuer::load_or_create(&dir.path().join("b"), &issuer, "api://default")
            .expect("key b");
        let okta = Arc::new(Okta {
            issuer: issuer.clone(),
            metadata_issuer: Mutex::new(issuer),
            keys: Mutex::new(vec![key_a.jwks()["keys"][0].clone()]),
            mode: Mutex::new(Mode::Normal),
            max_age: Mutex::new(3600),
            oauth_metadata: Mutex::new(true),
            fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/oauth2/default/.well-known/oauth-authorization-server", get(oauth_metadata))
            .route("/oauth2/default/.well-known/openid-configuration", get(oidc_metadata))
            .route("/oauth2/default/v1/keys", get(keys))
            .with_state(okta.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIssuer { okta, _dir: dir, key_a, key_b }
    }

    /// A fresh verifier's answer to a token signed with key A.
    async fn verify_a(&self) -> Result<portico_auth::Claims, portico_auth::AuthError> {
        self.verifier(Duration::from_secs(30)).verify(&token(&self.key_a, "a")).await
    }

    fn verifier(&self, refetch_interval: Duration) -> Verifier {
        Verifier::with_discovery(
            VerifierSettings::new(&self.okta.issuer, "api://default", &["RS256".into()], 60),
            JwksSettings {
                timeout: Duration::from_millis(500),
                refetch_interval,
                default_max_age: Duration::from_secs(300),
                min_max_age: Duration::ZERO,
            },
        )
    }

    fn fetches(&self) -> usize {
        self.okta.fetches.load(Ordering::SeqCst)
    }

    fn set<T>(&self, field: impl Fn(&Okta) -> &Mutex<T>, value: T) {
        *field(&self.okta).lock().expect("lock") = value;
    }
}

fn token(key: &DevIssuer, sub: &str) -> String {
    key.mint(&TokenRequest {
        sub: sub.into(),
        groups: vec!["portico-admins".into()],
        ttl: Duration::from_secs(600),
    })
    .expect("token")
}

fn metadata(okta: &Okta) -> Value {
    json!({
        "issuer": *okta.metadata_issuer.lock().expect("lock"),
        "jwks_uri": format!("{}/v1/keys", okta.issuer),
    })
}

async fn oauth_metadata(State(okta): State<Arc<Okta>>) -> Response {
    if !*okta.oauth_metadata.lock().expect("lock") {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(metadata(&okta)).into_response()
}

async fn oidc_metadata(State(okta): State<Arc<Okta>>) -> Response {
    Json(metadata(&okta)).into_response()
}

async fn keys(State(okta): State<Arc<Okta>>) -> Response {
    okta.fetches.fetch_add(1, Ordering::SeqCst);
    let mode = *okta.mode.lock().expect("lock");
    match mode {
        Mode::Outage => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        Mode::Normal => {}
    }
    let keys = okta.keys.lock().expect("lock").clone();
    let max_age = *okta.max_age.lock().expect("lock");
    ([("cache-control", format!("max-age={max_age}"))], Json(json!({ "keys": keys })))
        .into_response()
}

#[tokio::test]
async fn keys_are_discovered_once_and_cached() {
    let okta = TestIssuer::start().await;
    let verifier = okta.verifier(Duration::from_secs(30));
    for n in 0..5 {
        let claims =
            verifier.verify(&token(&okta.key_a, &format!("user{n}"))).await.expect("verifies");
        assert_eq!(claims.sub, format!("user{n}"));
    }
    assert_eq!(okta.fetches(), 1);
}

#[tokio::test]
async fn rotation_is_picked_up_but_unknown_kids_are_rate_limited() {
    let okta = TestIssuer::start().await;
    let interval = Duration::from_millis(400);
    let verifier = okta.verifier(interval);
    verifier.verify(&token(&okta.key_a, "a")).await.expect("key a");
    okta.set(
        |o| &o.keys,
        vec![okta.key_a.jwks()["keys"][0].clone(), okta.key_b.jwks()["keys"][0].clone()],
    );

    // Within the interval a new kid is not fetched for, however many tokens carry it.
    for _ in 0..20 {
        let err = verifier.verify(&token(&okta.key_b, "b")).await.expect_err("rate limited");
        assert!(matches!(err, AuthError::UnknownKey(_)), "{err}");
    }
    assert_eq!(okta.fetches(), 1);

    // From now on the issuer says its keys may not be cached.
    okta.set(|o| &o.max_age, 0);
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    verifier.verify(&token(&okta.key_b, "b")).await.expect("rotated key accepted");
    assert_eq!(okta.fetches(), 2);

    // Key A is retired at the issuer: once refetched, its tokens stop verifying.
    okta.set(|o| &o.keys, vec![okta.key_b.jwks()["keys"][0].clone()]);
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    verifier.verify(&token(&okta.key_b, "b2")).await.expect("still fine");
    let err = verifier.verify(&token(&okta.key_a, "a2")).await.expect_err("retired");
    assert!(matches!(err, AuthError::UnknownKey(_)), "{err}");
}

#[tokio::test]
async fn an_outage_keeps_serving_cached_keys() {
    let okta = TestIssuer::start().await;
    okta.set(|o| &o.max_age, 0); // always stale: every lookup past the interval tries the issuer
    let interval = Duration::from_millis(100);
    let verifier = okta.verifier(interval);
    verifier.verify(&token(&okta.key_a, "a")).await.expect("key a");
    okta.set(|o| &o.mode, Mode::Outage);
    for n in 0..3 {
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        verifier
            .verify(&token(&okta.key_a, &format!("during-outage-{n}")))
            .await
            .expect("cached key serves");
    }
    assert!(okta.fetches() >= 2, "the verifier kept trying the issuer");
}

#[tokio::test]
async fn no_keys_at_all_is_unavailable_not_unauthorized() {
    let okta = TestIssuer::start().await;
    okta.set(|o| &o.mode, Mode::Slow);
    let verifier = okta.verifier(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let err = verifier.verify(&token(&okta.key_a, "a")).await.expect_err("no keys");
    assert!(err.is_unavailable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "the fetch timeout bounds the wait");

    let okta = TestIssuer::start().await;
    okta.set(|o| &o.mode, Mode::Outage);
    let err = okta.verify_a().await.expect_err("no keys");
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn metadata_must_name_the_issuer_exactly() {
    let okta = TestIssuer::start().await;
    okta.set(|o| &o.metadata_issuer, format!("{}/", okta.okta.issuer));
    let err = okta.verify_a().await.expect_err("mismatch");
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(okta.fetches(), 0, "keys are never fetched from an issuer that is not ours");
}

#[tokio::test]
async fn openid_configuration_is_the_fallback() {
    let okta = TestIssuer::start().await;
    okta.set(|o| &o.oauth_metadata, false);
    okta.verify_a().await.expect("found via OIDC discovery");
}

#[tokio::test]
async fn the_server_accepts_an_external_issuers_tokens() {
    let okta = TestIssuer::start().await;
    let app = crate::helpers::spawn_app_with(&[("PORTICO_AUTH_ISSUER", &okta.okta.issuer)]).await;
    let (status, me) = app.get("/v1/me", &token(&okta.key_a, "ops@example.com")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{me}");
    assert_eq!(me["roles"], json!(["admin"]));
    // The local dev issuer's tokens mean nothing here.
    let (status, _) = app.get("/v1/me", &app.admin_token()).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let (status, _) = app.call(reqwest::Method::GET, "/oauth2/default/v1/keys", None, None).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    // The issuer is down and nothing is cached: 503, not 401.
    let okta2 = TestIssuer::start().await;
    okta2.set(|o| &o.mode, Mode::Outage);
    let app2 = crate::helpers::spawn_app_with(&[("PORTICO_AUTH_ISSUER", &okta2.okta.issuer)]).await;
    let (status, _) = app2.get("/v1/me", &token(&okta2.key_a, "x")).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
}
