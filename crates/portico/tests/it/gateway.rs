//! The HTTP gateway's own behaviour: problem documents, limits, request ids, OpenAPI, metrics.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{header, spawn_app, spawn_app_with};

async fn raw_post(
    app: &crate::helpers::TestApp,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let response = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(app.admin_token())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn bad_bodies_get_clear_problems_and_change_nothing() {
    let app = spawn_app_with(&[("PORTICO_HTTP_BODY_LIMIT_BYTES", "1024")]).await;
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "application/json",
            br#"{"name": "Acme", "kind": "custo"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", b"".to_vec(), StatusCode::BAD_REQUEST),
        (
            "application/json",
            br#"{"name": "Acme", "kind": "customer"} {}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            br#"{"name": 42, "kind": "customer"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("application/json", br#"{"kind": "customer"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "application/json",
            br#"{"name": "A", "kind": "customer", "account_number": "1"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("application/json", br#"[1, 2, 3]"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "application/json",
            format!(r#"{{"name": "{}", "kind": "customer"}}"#, "x".repeat(2048)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "text/plain",
            br#"{"name": "Acme", "kind": "customer"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("application/json", vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST),
    ];
    for (content_type, body, expected) in cases {
        let shown = String::from_utf8_lossy(&body).chars().take(60).collect::<String>();
        let (status, problem, headers) = raw_post(&app, content_type, body).await;
        assert_eq!(status, expected, "{shown}: {problem}");
        assert_eq!(problem["status"], expected.as_u16(), "{shown}");
        assert!(problem["title"].is_string() && problem["detail"].is_string(), "{problem}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
    let (_, problem, _) =
        raw_post(&app, "application/json", br#"{"name": 42, "kind": "customer"}"#.to_vec()).await;
    assert_eq!(problem["errors"][0]["field"], "name");
    let (_, list) = app.get("/v1/accounts", &app.admin_token()).await;
    assert_eq!(list["items"], serde_json::json!([]));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert!(response.headers().get("x-request-id").is_some_and(|v| !v.is_empty()));
    // A UUIDv7 (its version nibble is 7): ordered by time, as the log store's index wants.
    let id = header(&response, "x-request-id").unwrap_or_default().to_string();
    assert_eq!((id.len(), id.chars().nth(14)), (36, Some('7')), "{id}");
    assert_eq!(response.json::<Value>().await.expect("json"), serde_json::json!({"status": "ok"}));
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(header(&response, "x-request-id"), Some("trace-me-42"));
    let response = app.client.get(app.url("/no/such/route")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
    let response = app.client.delete(app.url("/v1/accounts")).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let (status, doc) = app.call(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for (path, method) in [
        ("/healthz", "get"),
        ("/openapi.json", "get"),
        ("/v1/me", "get"),
        ("/v1/accounts", "get"),
        ("/v1/accounts", "post"),
        ("/v1/accounts/{id}", "get"),
        ("/v1/accounts/{id}/users", "get"),
        ("/v1/accounts/{id}/users", "post"),
        ("/v1/instruments", "post"),
        ("/v1/instruments/{serial}", "get"),
        ("/v1/notifications", "get"),
        ("/v1/notifications/{id}/read", "post"),
        ("/v1/documents", "get"),
        ("/v1/documents/uploads", "post"),
        ("/v1/documents/{id}", "get"),
        ("/v1/documents/{id}/content", "put"),
        ("/v1/documents/{id}/content", "get"),
        ("/v1/outbox", "get"),
        ("/v1/products", "post"),
        ("/v1/products", "get"),
        ("/v1/products/{sku}", "get"),
        ("/v1/lots", "post"),
        ("/v1/lots/{lot}", "get"),
        ("/v1/lots/{lot}/certificate.pdf", "get"),
        ("/v1/shipments", "post"),
        ("/v1/shipments", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
    }
    assert!(doc["components"]["schemas"]["Account"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every error answer is documented, as the problem document it is.
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            for status in ["500", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: no {status}");
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            for (status, response) in responses {
                if status.starts_with(['4', '5']) {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status}: not a problem document"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn invocations_are_measured_like_lambda_functions() {
    let app = spawn_app().await;
    app.get("/v1/me", &app.admin_token()).await;
    let text = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for needle in [
        "portico_function_invocations_total{function=\"get_me\"}",
        "portico_function_duration_seconds_bucket{function=\"get_me\",le=\"0.005\"}",
        "portico_function_concurrent_executions{function=\"get_me\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn the_dev_issuer_publishes_discovery_and_keys() {
    let app = spawn_app().await;
    let (status, metadata) = app
        .call(
            reqwest::Method::GET,
            "/oauth2/default/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["issuer"], app.issuer.issuer());
    let (status, jwks) =
        app.call(reqwest::Method::GET, "/oauth2/default/v1/keys", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jwks["keys"][0]["kid"], app.issuer.kid());
    assert!(jwks["keys"][0].get("d").is_none(), "private key material must never be served");
}

/// The upload link a caller gets when it says `Host: host`.
async fn upload_url_for_host(app: &crate::helpers::TestApp, token: &str, host: &str) -> String {
    let response = app
        .client
        .post(app.url("/v1/documents/uploads"))
        .bearer_auth(token)
        .header("host", host)
        .json(&serde_json::json!({"filename": "run.csv", "content_type": "text/csv", "size": 10}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    let ticket: Value = response.json().await.expect("json");
    ticket["upload_url"].as_str().expect("url").to_string()
}

/// A token for Carol, a scientist of a new account on `app`.
async fn scientist_on(app: &crate::helpers::TestApp) -> String {
    let acme = app.create_account("Acme").await;
    app.add_user(&acme, "carol@acme.example", &["scientist"]).await
}

#[tokio::test]
async fn links_name_this_server_only_as_configured_or_from_loopback() {
    let app = spawn_app().await;
    let carol = scientist_on(&app).await;
    // A caller's Host header names the server only on loopback (a developer's own machine) ...
    let port = app.addr.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]
    {
        let url = upload_url_for_host(&app, &carol, &host).await;
        assert!(url.starts_with(&format!("http://{host}/v1/documents/")), "{url}");
    }
    // ... any other Host is the caller's invention: the link stays host-relative.
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        let url = upload_url_for_host(&app, &carol, host).await;
        assert!(url.starts_with("/v1/documents/"), "{host}: {url}");
    }

    let app =
        spawn_app_with(&[("PORTICO_HTTP_PUBLIC_URL", "https://portal.example.com/api/")]).await;
    let carol = scientist_on(&app).await;
    for host in ["evil.example", "127.0.0.1"] {
        let url = upload_url_for_host(&app, &carol, host).await;
        assert!(url.starts_with("https://portal.example.com/api/v1/documents/"), "{host}: {url}");
    }
}

#[tokio::test]
async fn cross_origin_calls_follow_the_configured_origins() {
    let preflight = |app: &crate::helpers::TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let app = spawn_app().await;
    let response = preflight(&app, "https://portal.example.com").await.expect("sent");
    assert!(response.headers().get("access-control-allow-origin").is_none());

    let app = spawn_app_with(&[(
        "PORTICO_HTTP_CORS_ORIGINS",
        "https://portal.example.com, http://localhost:3000",
    )])
    .await;
    let response = preflight(&app, "https://portal.example.com").await.expect("sent");
    assert!(response.status().is_success(), "{}", response.status());
    let header = |name: &str| header(&response, name).unwrap_or_default().to_ascii_lowercase();
    assert_eq!(header("access-control-allow-origin"), "https://portal.example.com");
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert!(header("access-control-allow-methods").contains("put"));
    assert!(header("access-control-allow-credentials").is_empty());
    let response = preflight(&app, "https://evil.example").await.expect("sent");
    assert!(response.headers().get("access-control-allow-origin").is_none());
    // The answer itself, errors too, is readable by the page, request id included.
    let response = app
        .client
        .get(app.url("/v1/me"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let allowed = response.headers().get("access-control-allow-origin");
    assert_eq!(allowed.and_then(|v| v.to_str().ok()), Some("http://localhost:3000"));
    let exposed = crate::helpers::header(&response, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

/// `/readyz`: ready while the database takes writes, the broker accepts connections and the
/// workers run; 503 naming the database while another process holds its write lock, and ready
/// again once it lets go. `/healthz` stays 200 throughout (liveness).
#[tokio::test]
async fn readyz_answers_503_while_the_database_cannot_take_writes() {
    let app = crate::helpers::spawn_app().await;
    let ready = || async {
        let response = app.client.get(app.url("/readyz")).send().await.expect("readyz");
        let status = response.status();
        (status, response.json::<serde_json::Value>().await.expect("checks"))
    };
    let (status, checks) = ready().await;
    assert_eq!(status, StatusCode::OK, "{checks}");
    let parts: Vec<&str> =
        checks.as_array().expect("a list").iter().filter_map(|c| c["part"].as_str()).collect();
    assert_eq!(parts, ["database", "mqtt", "workers"]);

    let lock = rusqlite::Connection::open(app.data_dir.join("portico.db")).expect("open");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("the write lock");
    let (status, checks) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{checks}");
    assert!(checks["detail"].as_str().is_some_and(|d| d.contains("database")), "{checks}");
    let database = &checks["checks"].as_array().expect("a list")[0];
    assert_eq!(
        (&database["part"], &database["ok"]),
        (&serde_json::json!("database"), &serde_json::json!(false)),
        "{checks}"
    );
    let healthz = app.client.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(healthz.status(), StatusCode::OK);
    lock.execute_batch("ROLLBACK").expect("let go");

    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, checks) = ready().await;
        if status == StatusCode::OK {
            return;
        }
        last = checks;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never ready again: {last}");
}
