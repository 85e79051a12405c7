//! The Lambda host: API Gateway events (JSON fixtures beside the tests) through the same Router
//! give the same answers as the local gateway; the authorizer answers every event shape.

use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use reqwest::Method;
use serde_json::{Value, json};

use portico_testkit::{TestApp, header, id, spawn_app};

fn fixture(name: &str, vars: &[(&str, &str)]) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).expect("fixture");
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

/// Sends one request both ways and returns (local status, local body, lambda status, lambda body).
async fn both_ways(
    app: &TestApp,
    fixture_name: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> ((u16, Value), (u16, Value)) {
    let (status, local) =
        app.call(method.clone(), path, Some(token).filter(|t| !t.is_empty()), body.clone()).await;
    let body_json = match &body {
        Some(b) => Value::String(b.to_string()).to_string(),
        None => "null".into(),
    };
    let event = fixture(
        fixture_name,
        &[
            ("PATH", path),
            ("PROXY", path.trim_start_matches('/')),
            ("METHOD", method.as_str()),
            ("TOKEN", token),
            ("BODY", &body_json),
        ],
    );
    let request: LambdaRequest = serde_json::from_str(&event).expect("an API Gateway event");
    let answer = portico_lambda::http::handle(
        portico_http::app(app.composition.state.clone()),
        LambdaEvent::new(request, Context::default()),
    )
    .await
    .expect("handled");
    let lambda_status = answer["statusCode"].as_u64().expect("statusCode") as u16;
    let lambda_body = answer["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).expect("JSON body"))
        .unwrap_or(Value::Null);
    ((status.as_u16(), local), (lambda_status, lambda_body))
}

#[tokio::test]
async fn proxy_events_get_the_same_answers_as_the_local_gateway() {
    same_answers_both_ways(&spawn_app().await).await;
}

/// API Gateway events through the Lambda handler answer exactly as HTTP requests to the gateway
/// do, on whichever backend `app` runs.
pub async fn same_answers_both_ways(app: &TestApp) {
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let admin = app.admin_token();
    for fixture_name in ["apigw_v1_proxy.json", "apigw_v2_proxy.json"] {
        for (path, token) in [
            (format!("/v1/accounts/{}", id(&acme)), carol.as_str()),
            ("/v1/me".to_string(), carol.as_str()),
            ("/v1/accounts/does-not-exist".to_string(), carol.as_str()),
            (format!("/v1/accounts/{}/users", id(&acme)), admin.as_str()),
            ("/v1/me".to_string(), "garbage"),
            ("/healthz".to_string(), ""),
        ] {
            let (local, lambda) =
                both_ways(app, fixture_name, Method::GET, &path, token, None).await;
            assert_eq!(local, lambda, "{fixture_name} GET {path}");
        }
        // Writes: same status and same shape of answer (each creates its own account).
        let body = json!({"name": "Via Lambda", "kind": "distributor"});
        let ((local_status, local), (lambda_status, lambda)) =
            both_ways(app, fixture_name, Method::POST, "/v1/accounts", &admin, Some(body)).await;
        assert_eq!((local_status, lambda_status), (201, 201), "{lambda}");
        assert_eq!(local["kind"], lambda["kind"]);
        assert_ne!(local["account_number"], lambda["account_number"]);
        // Validation problems are identical.
        let bad = json!({"name": "", "kind": "customer"});
        let (local, lambda) =
            both_ways(app, fixture_name, Method::POST, "/v1/accounts", &admin, Some(bad)).await;
        assert_eq!(local, lambda, "{fixture_name} invalid POST");
        assert_eq!(local.0, 422);
    }
}

async fn authorize(
    app: &TestApp,
    fixture_name: &str,
    token: &str,
) -> Result<Value, portico_lambda::authorizer::AuthorizerError> {
    let event: Value =
        serde_json::from_str(&fixture(fixture_name, &[("TOKEN", token)])).expect("event");
    portico_lambda::authorizer::handle(&app.composition.verifier, event).await
}

/// The answer's one statement, checked to say `effect` for every method of the stage (so that one
/// cached policy serves the whole API).
fn statement<'a>(answer: &'a Value, effect: &str) -> &'a Value {
    let statement = &answer["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], effect, "{answer}");
    let stage = json!(["arn:aws:execute-api:eu-west-1:123456789012:abc123defg/prod/*/*"]);
    assert_eq!(json!(statement["Resource"]), stage);
    statement
}

#[tokio::test]
async fn the_authorizer_answers_token_request_and_http_api_events() {
    let app = spawn_app().await;
    let token = app.admin_token();
    for fixture_name in ["authorizer_token.json", "authorizer_request.json"] {
        let answer = authorize(&app, fixture_name, &token).await.expect("allowed");
        assert_eq!(answer["principalId"], "admin@portico.example");
        statement(&answer, "Allow");
        assert_eq!(answer["context"]["groups"], "portico-admins");
        assert!(answer["context"].as_object().expect("context").values().all(Value::is_string));

        let err = authorize(&app, fixture_name, "forged.token.here").await.expect_err("refused");
        assert_eq!(err.to_string(), "Unauthorized");
    }
    let answer = authorize(&app, "authorizer_v2.json", &token).await.expect("answered");
    assert_eq!(answer["isAuthorized"], true);
    assert_eq!(answer["context"]["sub"], "admin@portico.example");
    let answer = authorize(&app, "authorizer_v2.json", "forged").await.expect("answered");
    assert_eq!(answer["isAuthorized"], false);

    let garbage =
        portico_lambda::authorizer::handle(&app.composition.verifier, json!({"hello": "world"}))
            .await;
    assert!(garbage.is_err());
}

#[test]
fn fixtures_round_trip_as_api_gateway_events() {
    use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
    let vars = [
        ("PATH", "/v1/me"),
        ("PROXY", "v1/me"),
        ("METHOD", "GET"),
        ("TOKEN", "t"),
        ("BODY", "null"),
    ];
    let v1: ApiGatewayProxyRequest =
        serde_json::from_str(&fixture("apigw_v1_proxy.json", &vars)).expect("v1 event");
    let again: ApiGatewayProxyRequest =
        serde_json::from_value(serde_json::to_value(&v1).expect("to json")).expect("from json");
    assert_eq!(again.path.as_deref(), Some("/v1/me"));
    let v2: ApiGatewayV2httpRequest =
        serde_json::from_str(&fixture("apigw_v2_proxy.json", &vars)).expect("v2 event");
    let again: ApiGatewayV2httpRequest =
        serde_json::from_value(serde_json::to_value(&v2).expect("to json")).expect("from json");
    assert_eq!(again.raw_path.as_deref(), Some("/v1/me"));
}

/// An S3 event as moto sends it: no `userIdentity`, no `eTag`.
fn moto_s3_event(key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2026-11-27T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "portico-documents"}, "object": {"key": key, "size": 10}}
    }]})
    .to_string()
}

#[tokio::test]
async fn sqs_batches_fail_only_the_records_that_can_succeed_later() {
    let app = portico_testkit::spawn_app_with(&[("PORTICO_WORKER_ENABLED", "false")]).await;
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let mut keys = Vec::new();
    for name in ["ready.csv", "broken.csv"] {
        let body = b"a,b\n1,2\n";
        let (_, ticket) = app
            .post(
                "/v1/documents/uploads",
                &carol,
                json!({"filename": name, "content_type": "text/csv", "size": body.len()}),
            )
            .await;
        let url = ticket["upload_url"].as_str().expect("url");
        let put = app
            .client
            .put(url)
            .header("content-type", "text/csv")
            .body(body.to_vec())
            .send()
            .await
            .expect("sent");
        assert_eq!(put.status(), reqwest::StatusCode::OK);
        keys.push((
            ticket["document_id"].as_str().expect("id").to_string(),
            format!("documents/{}/{}", id(&acme), ticket["document_id"].as_str().expect("id")),
        ));
    }
    // The second object becomes unreadable (a symlink loop): a failure a retry might fix.
    let broken = app.data_dir.join("objects").join(&keys[1].1);
    std::fs::remove_file(&broken).expect("remove");
    std::os::unix::fs::symlink(&broken, &broken).expect("symlink");

    let escaped =
        |s: String| serde_json::to_string(&s).expect("json").trim_matches('"').to_string();
    let text = fixture(
        "sqs_s3_batch.json",
        &[
            ("BODY_READY", &escaped(moto_s3_event(&keys[0].1))),
            ("BODY_BROKEN", &escaped(moto_s3_event(&keys[1].1))),
        ],
    );
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&text).expect("an SQS event");
    let response = portico_lambda::sqs::handle(&app.composition.context, event).await;
    let failed: Vec<&str> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["msg-broken"]);
    let (_, doc) = app.get(&format!("/v1/documents/{}", keys[0].0), &carol).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let wire = serde_json::to_value(&response).expect("json");
    assert_eq!(wire, json!({"batchItemFailures": [{"itemIdentifier": "msg-broken"}]}));
}

#[tokio::test]
async fn the_iot_rule_action_runs_the_named_function() {
    let app = spawn_app().await;
    let acme = app.create_account("Acme").await;
    let bob = app.add_user(&acme, "bob@acme.example", &["lab_manager"]).await;
    app.register_instrument(&acme, "SN-IOT").await;
    // What IoT Core hands the Lambda: the rule's SELECT output.
    let payload = json!({"severity": "critical", "message": "Door open", "serial": "SN-IOT", "event_id": "e-1"});
    portico_lambda::iot::handle(&app.composition.context, "instrument_alert", payload.clone())
        .await
        .expect("handled");
    portico_lambda::iot::handle(&app.composition.context, "instrument_alert", payload)
        .await
        .expect("idempotent");
    let (_, notes) = app.get("/v1/notifications", &bob).await;
    assert_eq!(notes["items"].as_array().map(Vec::len), Some(1));
    let err = portico_lambda::iot::handle(&app.composition.context, "format_disk", json!({})).await;
    assert!(err.is_err());
}

fn fixture_json(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

#[tokio::test]
async fn kinesis_batches_skip_undecodable_records_and_report_the_first_failure() {
    let event = fixture_json("kinesis_batch.json");
    let seen = std::sync::Mutex::new(Vec::new());
    let outcome = portico_lambda::kinesis::handle(&event, |record| {
        seen.lock()
            .expect("lock")
            .push(record.data["event_id"].as_str().unwrap_or("?").to_string());
        async { Ok(()) }
    })
    .await;
    assert_eq!(outcome.processed, 3);
    assert_eq!(*seen.lock().expect("lock"), vec!["e-1", "e-2", "e-3"]);
    // Bad base64 and a JSON array are skipped, each with its reason; nothing is reported.
    assert_eq!(outcome.skipped.len(), 2, "{:?}", outcome.skipped);
    assert!(outcome.skipped[0].1.contains("base64"), "{:?}", outcome.skipped);
    assert!(outcome.skipped[1].1.contains("JSON object"), "{:?}", outcome.skipped);
    assert_eq!(outcome.response(), json!({"batchItemFailures": []}));

    // A record that fails is reported, and nothing after it runs: Lambda retries from it.
    let mut calls = 0;
    let outcome = portico_lambda::kinesis::handle(&event, |record| {
        calls += 1;
        let fail = record.data["event_id"] == "e-2";
        async move { if fail { Err("warehouse unavailable".to_string()) } else { Ok(()) } }
    })
    .await;
    assert_eq!(calls, 2);
    assert_eq!(
        outcome.response(),
        json!({"batchItemFailures": [
            {"itemIdentifier": "49590338271490256608559692538361571095921575989136588804"}
        ]})
    );

    // Not a Kinesis event at all: nothing to do, nothing reported.
    let outcome = portico_lambda::kinesis::handle(&json!({"hello": 1}), |_| async { Ok(()) }).await;
    assert_eq!(outcome, portico_lambda::kinesis::BatchOutcome::default());
}

#[test]
fn cloudwatch_logs_payloads_decode_and_control_messages_are_skipped() {
    let batch = portico_lambda::logs::decode(&fixture_json("cloudwatch_logs_data.json"))
        .expect("decodes")
        .expect("a data message");
    assert_eq!(batch.log_group, "/aws/lambda/portico-http");
    assert_eq!(batch.log_events.len(), 2);
    assert_eq!(batch.log_events[1].message, "plain text line");
    assert_eq!(batch.log_events[0].id, "38123456789012345678901234567890123456789012345678901234");

    let control = portico_lambda::logs::decode(&fixture_json("cloudwatch_logs_control.json"));
    assert_eq!(control, Ok(None));

    for (payload, expect) in [
        (json!({}), "no awslogs.data"),
        (json!({"awslogs": {"data": "%%%"}}), "not base64"),
        (json!({"awslogs": {"data": "aGVsbG8="}}), "not gzip"),
    ] {
        let err = portico_lambda::logs::decode(&payload).expect_err("refused");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

#[tokio::test]
async fn dead_lettered_upload_events_mark_their_documents_failed() {
    let app = portico_testkit::spawn_app_with(&[("PORTICO_WORKER_ENABLED", "false")]).await;
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let (_, ticket) = app
        .post(
            "/v1/documents/uploads",
            &carol,
            json!({"filename": "lost.csv", "content_type": "text/csv", "size": 4}),
        )
        .await;
    let document_id = ticket["document_id"].as_str().expect("id").to_string();
    let key = format!("documents/{}/{document_id}", id(&acme));
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some("dead-1".into());
    record.body = Some(moto_s3_event(&key));
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![record];
    let response = portico_lambda::sqs::handle_dead_letters(&app.composition.context, event).await;
    assert!(response.batch_item_failures.is_empty());
    let (_, doc) = app.get(&format!("/v1/documents/{document_id}"), &carol).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["failure_reason"].as_str().is_some_and(|r| r.contains("too many attempts")),
        "{doc}"
    );
}

#[tokio::test]
async fn a_token_without_a_required_scope_gets_a_deny_policy() {
    let app =
        portico_testkit::spawn_app_with(&[("PORTICO_AUTH_REQUIRED_SCOPES", "portico.api")]).await;
    // Minted by the dev issuer with the required scope: allowed.
    let good = app.admin_token();
    // Genuine, signed by the same issuer, but without the scope.
    let scopeless = app.issuer.sign(&app.claims("admin@portico.example")).expect("signed");
    for fixture_name in ["authorizer_token.json", "authorizer_request.json"] {
        let allowed = authorize(&app, fixture_name, &good).await.expect("answered");
        assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow");
        let denied =
            authorize(&app, fixture_name, &scopeless).await.expect("answered with a policy");
        assert_eq!(denied["principalId"], "admin@portico.example");
        statement(&denied, "Deny");
        assert_eq!(denied["context"]["reason"], "insufficient_scope");
        assert_eq!(denied["context"]["scope"], "portico.api");
    }
    let v2 = authorize(&app, "authorizer_v2.json", &scopeless).await.expect("answered");
    assert_eq!(v2["isAuthorized"], false);

    // The gateway says the same thing in HTTP terms: 403 insufficient_scope, not 401.
    let response =
        app.client.get(app.url("/v1/me")).bearer_auth(&scopeless).send().await.expect("sent");
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(header(&response, "www-authenticate"), Some(r#"Bearer error="insufficient_scope""#));
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:portico:problem:insufficient_scope");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("portico.api")), "{problem}");
    let (status, _) = app.get("/v1/me", &good).await;
    assert_eq!(status, reqwest::StatusCode::OK);
}

#[test]
fn log_events_become_documents_with_their_fields_and_lambda_reports_parsed() {
    let mut batch = portico_lambda::logs::decode(&fixture_json("cloudwatch_logs_data.json"))
        .expect("decodes")
        .expect("a data message");
    batch.log_events.push(portico_lambda::logs::LogEvent {
        id: "38123456789012345678901234567890123456789012345678901236".into(),
        timestamp: 1_764_244_800_010,
        message: "REPORT RequestId: 6f7f0961-1234-4d5e-9f00-aabbccddeeff\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\tMax Memory Used: 38 MB\tInit Duration: 3.21 ms\t\n".into(),
    });
    let docs = portico_lambda::logs::documents(&batch, "portico-logs");
    assert_eq!(docs.len(), 3);
    assert!(docs.iter().all(|d| d.index == "portico-logs-2025.11.27"), "{docs:?}");
    assert_eq!(docs[0].id, batch.log_events[0].id);
    // A JSON line's fields are the document's.
    assert_eq!(docs[0].source["status"], 200);
    assert_eq!(docs[0].source["level"], "INFO");
    assert_eq!(docs[0].source["message"], "request");
    assert_eq!(docs[0].source["log_group"], "/aws/lambda/portico-http");
    assert_eq!(docs[0].source["@timestamp"], "2025-11-27T12:00:00Z");
    assert_eq!(docs[1].source["message"], "plain text line");
    let report = &docs[2].source;
    assert_eq!(report["lambda_event"], "REPORT");
    assert_eq!(report["request_id"], "6f7f0961-1234-4d5e-9f00-aabbccddeeff");
    assert_eq!(report["duration_ms"], 12.34);
    assert_eq!(report["billed_duration_ms"], 13.0);
    assert_eq!(report["max_memory_used_mb"], 38.0);
    assert_eq!(report["init_duration_ms"], 3.21);
}

#[tokio::test]
async fn shipped_log_batches_dead_letter_what_the_cluster_refuses() {
    let app = spawn_app().await;
    let batch = portico_lambda::logs::decode(&fixture_json("cloudwatch_logs_data.json"))
        .expect("decodes")
        .expect("a data message");
    // The cluster refuses the documents whose id ends in `5` (a mapping error).
    let cluster = portico_testkit::opensearch::OpenSearchStandIn::start().await;
    cluster.refuse_ids_ending_with("5");
    let sink = portico_logs::opensearch::BulkSink::new(
        &cluster.url,
        portico_logs::opensearch::Auth::None,
        std::time::Duration::from_secs(5),
    )
    .expect("sink");
    let queue = app.composition.context.queue.as_ref();
    let shipped =
        portico_lambda::logs::ship(&sink, queue, &batch, "portico-logs").await.expect("shipped");
    assert_eq!((shipped.created, shipped.refused.len()), (1, 1));
    let dead = queue
        .receive(
            portico_lambda::logs::DEAD_LETTERS,
            portico_core::Receive {
                max: 10,
                visibility: std::time::Duration::from_secs(30),
                wait: std::time::Duration::ZERO,
            },
        )
        .await
        .expect("receive");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let body: Value = serde_json::from_str(&dead[0].body).expect("JSON");
    assert_eq!(body["id"], "38123456789012345678901234567890123456789012345678901235");
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("failed to parse")), "{body}");
    assert_eq!(body["document"]["message"], "plain text line");
}
