//! What Portico's integration tests share: `spawn_app()` (the real server on `127.0.0.1:0` with a
//! fresh data dir), `spawn_api()` (the HTTP API alone on any backend, as the Lambda host runs it),
//! a client that talks to either, the seeded worlds the MQTT tests start from, and the upload
//! steps, and (`opensearch`) a stand-in for OpenSearch. Used by the `portico` crate's tests and by
//! the Lambda host's.

pub mod opensearch;
pub mod snowflake;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_auth::{DevIssuer, TokenRequest};
use portico_config::Config;
use portico_core::domain::{AccountKind, Role};
use portico_local::world::{self as seed, AccountPlan};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN_GROUP: &str = "portico-admins";
pub const SUPPORT_GROUP: &str = "portico-support";

pub struct TestApp {
    pub data_dir: std::path::PathBuf,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtt_ws_addr: SocketAddr,
    /// The HTTPS listener, when the config has TLS.
    pub https_addr: Option<SocketAddr>,
    pub issuer: Arc<DevIssuer>,
    pub client: reqwest::Client,
    pub composition: portico_local::Composition,
    stop: Option<oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A config for a fresh server: temp data dir, every listener on port 0, plus `extra` variables.
pub fn test_config(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let mut env: BTreeMap<String, String> = [
        ("PORTICO_DATA_DIR", data_dir.to_str().expect("utf-8 path")),
        ("PORTICO_HTTP_ADDR", "127.0.0.1:0"),
        ("PORTICO_METRICS_ADDR", "127.0.0.1:0"),
        ("PORTICO_MQTT_ADDR", "127.0.0.1:0"),
        ("PORTICO_MQTT_WS_ADDR", "127.0.0.1:0"),
        ("PORTICO_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::load(None, &env).expect("test config is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path(), extra);
    let mut app = spawn_on(config).await;
    app._dir = Some(dir);
    app
}

/// Starts a server on `config` (whose data dir the caller owns).
pub async fn spawn_on(config: Config) -> TestApp {
    let server = portico_local::Server::bind(&config).await.expect("server binds");
    // With plaintext off, the addresses of the TLS listeners.
    let addr = server.http_addr().or(server.https_addr()).expect("an HTTP listener");
    let metrics_addr = server.metrics_addr();
    let mqtt_addr = server.mqtt_addr().or(server.mqtts_addr()).expect("an MQTT listener");
    let mqtt_ws_addr = server.mqtt_ws_addr().or(server.wss_addr()).expect("a WebSocket listener");
    let https_addr = server.https_addr();
    let composition = server.composition().clone();
    let issuer = match server.dev_issuer() {
        Some(issuer) => issuer,
        // With an external issuer configured, tests still need a key to forge tokens with.
        None => Arc::new(portico_local::load_dev_issuer(&config).expect("dev issuer")),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        data_dir: config.data_dir.clone(),
        addr,
        metrics_addr,
        mqtt_addr,
        mqtt_ws_addr,
        https_addr,
        issuer,
        client: client(),
        composition,
        stop: Some(stop),
        _dir: None,
    }
}

/// Serves only the HTTP API on `config` (any backend; no broker, no workers): what the Lambda
/// host runs, on a local port.
pub async fn spawn_api(config: Config) -> TestApp {
    let composition = portico_local::compose_backend(&config).await.expect("composes");
    let issuer = composition
        .dev_issuer
        .clone()
        .unwrap_or_else(|| Arc::new(portico_local::load_dev_issuer(&config).expect("dev issuer")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let app = portico_http::app(composition.state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let nowhere: SocketAddr = ([127, 0, 0, 1], 0).into();
    TestApp {
        data_dir: config.data_dir.clone(),
        addr,
        metrics_addr: nowhere,
        mqtt_addr: nowhere,
        mqtt_ws_addr: nowhere,
        https_addr: None,
        issuer,
        client: client(),
        composition,
        stop: Some(stop),
        _dir: None,
    }
}

/// The HTTP client tests call the server with.
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.issuer
            .mint(&TokenRequest {
                sub: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ttl: Duration::from_secs(3600),
            })
            .expect("token")
    }

    pub fn admin_token(&self) -> String {
        self.token("admin@portico.example", &[ADMIN_GROUP])
    }

    pub fn support_token(&self) -> String {
        self.token("support@portico.example", &[SUPPORT_GROUP])
    }

    /// Claims like the dev issuer's, for tests that tamper with one of them.
    pub fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({
            "ver": 1, "jti": "AT.test", "iss": self.issuer.issuer(), "aud": "api://default",
            "iat": now, "exp": now + 600, "cid": "test", "uid": "00utest",
            "scp": ["openid"], "sub": sub, "groups": [ADMIN_GROUP],
        })
    }

    /// Sends a request and returns status and JSON body (`Value::Null` when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates an account as admin and returns its JSON.
    pub async fn create_account(&self, name: &str) -> Value {
        let (status, body) = self
            .post("/v1/accounts", &self.admin_token(), json!({"name": name, "kind": "customer"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Adds a user with `roles` to `account` (its JSON) as admin and returns a token for them.
    pub async fn add_user(&self, account: &Value, sub: &str, roles: &[&str]) -> String {
        let path = format!("/v1/accounts/{}/users", id(account));
        let body = json!({"sub": sub, "email": sub, "display_name": sub, "roles": roles});
        let (status, body) = self.post(&path, &self.admin_token(), body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.token(sub, &[])
    }
}

impl TestApp {
    /// The value of one Prometheus series (`name{labels}` exactly as exposed), if present.
    /// Counters are process-wide: tests that share a process see each other's counts.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.metrics_addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// (recipient, subject) of every e-mail in the outbox for `category`, oldest first, as an
    /// admin sees them through `GET /v1/outbox`.
    pub async fn outbox(&self, category: &str) -> Vec<(String, String)> {
        let entries = self.every_item("/v1/outbox?limit=200", &self.admin_token()).await;
        let mut out: Vec<(String, String)> = entries
            .iter()
            .filter(|entry| entry["category"] == category)
            .map(|entry| {
                let field = |name: &str| entry[name].as_str().expect(name).to_string();
                (field("to"), field("subject"))
            })
            .collect();
        out.reverse();
        out
    }

    /// Every item of a listing, following `next_cursor` from `path` (which has a query already,
    /// e.g. `?limit=3`) to the last page.
    pub async fn every_item(&self, path: &str, token: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page_path = path.to_string();
        for _ in 0..10_000 {
            let (status, page) = self.get(&page_path, token).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => page_path = format!("{path}&cursor={cursor}"),
                None => return items,
            }
        }
        panic!("{path} never reached its last page");
    }

    /// Registers an instrument of `account` (its JSON) as admin; returns its device secret.
    pub async fn register_instrument(&self, account: &Value, serial: &str) -> String {
        let body = json!({"serial": serial, "model": "Sequencer X", "account_id": id(account),
                          "name": format!("Sequencer {serial}")});
        let (status, body) = self.post("/v1/instruments", &self.admin_token(), body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["device_secret"].as_str().expect("device secret").to_string()
    }

    /// Portico's user id for `token`'s subject.
    pub async fn user_id(&self, token: &str) -> String {
        let (_, me) = self.get("/v1/me", token).await;
        me["id"].as_str().expect("a provisioned user").to_string()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// GETs `url` with `token`: the JSON body (`Null` when there is none), for servers a test runs
/// as a child process.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = client.get(url).bearer_auth(token).send().await.expect("sent");
    response.json().await.unwrap_or(Value::Null)
}

/// POSTs `body` to `url` with `token`: the status and the JSON answer (`Null` when there is none).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client.post(url).bearer_auth(token).json(&body).send().await.expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Writes `text` to `name` in `dir` and answers its path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// A response header's value, if present and text.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The fields a problem document's `errors` name, in order.
pub fn fields(problem: &Value) -> Vec<&str> {
    let errors = problem["errors"].as_array().expect("errors");
    errors.iter().filter_map(|e| e["field"].as_str()).collect()
}

/// The `kind` of every item of a page (of notifications), in order.
pub fn kinds(page: &Value) -> Vec<&str> {
    let items = page["items"].as_array().expect("items");
    items.iter().filter_map(|n| n["kind"].as_str()).collect()
}

/// Acme (lab manager bob, scientist carol, account admin alice, instrument SN-A1), Globex (lab
/// manager dan, instrument SN-G1), and a support user; tokens for each, device secrets for the
/// instruments.
pub struct World {
    pub app: TestApp,
    pub acme: Value,
    pub globex: Value,
    pub bob: String,
    pub carol: String,
    pub alice: String,
    pub dan: String,
    pub support: String,
    pub sn_a1: String,
    pub sn_g1: String,
}

/// Acme alone (lab manager bob, scientist carol) on a server started with `env`: for tests that
/// change the broker's limits.
pub struct Acme {
    pub app: TestApp,
    pub acme: Value,
    pub bob: String,
    pub carol: String,
}

fn acme_plan() -> AccountPlan {
    AccountPlan::new("Acme", AccountKind::Customer)
        .user("bob@acme.example", "bob", &[Role::LabManager])
        .user("carol@acme.example", "carol", &[Role::Scientist])
}

/// Seeds `plan` through the functions of `app`'s backend, as the platform admin.
pub async fn seed(app: &TestApp, plan: &seed::World) -> seed::Seeded {
    seed::seed(&app.composition.context, plan).await.expect("the world seeds")
}

pub async fn acme_with(env: &[(&str, &str)]) -> Acme {
    let app = spawn_app_with(env).await;
    let plan = seed::World { accounts: vec![acme_plan()], ..seed::World::default() };
    let seeded = seed(&app, &plan).await;
    Acme {
        acme: json!(seeded.accounts[0].account),
        bob: app.token("bob@acme.example", &[]),
        carol: app.token("carol@acme.example", &[]),
        app,
    }
}

pub async fn world() -> World {
    let app = spawn_app().await;
    let plan = seed::World {
        support: vec![seed::SUPPORT_SUB.into()],
        accounts: vec![
            acme_plan()
                .user("alice@acme.example", "alice", &[Role::AccountAdmin])
                .instrument("SN-A1"),
            AccountPlan::new("Globex", AccountKind::Customer)
                .user("dan@globex.example", "dan", &[Role::LabManager])
                .instrument("SN-G1"),
        ],
        lots: Vec::new(),
    };
    let seeded = seed(&app, &plan).await;
    let (acme, globex) = (&seeded.accounts[0], &seeded.accounts[1]);
    World {
        acme: json!(acme.account),
        globex: json!(globex.account),
        bob: app.token("bob@acme.example", &[]),
        carol: app.token("carol@acme.example", &[]),
        alice: app.token("alice@acme.example", &[]),
        dan: app.token("dan@globex.example", &[]),
        support: app.support_token(),
        sn_a1: acme.instruments[0].device_secret.clone(),
        sn_g1: globex.instruments[0].device_secret.clone(),
        app,
    }
}

// --- uploads ---------------------------------------------------------------------------------

/// Asks for an upload ticket (`POST /v1/documents/uploads`).
pub async fn request(
    app: &TestApp,
    token: &str,
    filename: &str,
    content_type: &str,
    size: usize,
) -> (StatusCode, Value) {
    app.post(
        "/v1/documents/uploads",
        token,
        json!({"filename": filename, "content_type": content_type, "size": size}),
    )
    .await
}

pub async fn put(
    app: &TestApp,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = app
        .client
        .put(url)
        .header("content-type", content_type)
        // As every upload ticket's `upload_headers` say (S3 signs it into the URL).
        .header("if-none-match", "*")
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls the document until it is ready or failed.
pub async fn settled(app: &TestApp, token: &str, document_id: &str) -> Value {
    for _ in 0..300 {
        let (status, doc) = app.get(&format!("/v1/documents/{document_id}"), token).await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        if doc["status"] == "ready" || doc["status"] == "failed" {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("document {document_id} never settled");
}
