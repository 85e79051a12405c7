//! The Lambda host: API Gateway events (JSON fixtures beside the tests) through the same Router
//! give the same answers as the local gateway; the authorizer answers every event shape.

use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, id, spawn_app};

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
    let (status, local) = app
        .call(
            method.clone(),
            path,
            Some(token).filter(|t| !t.is_empty()),
            body.clone(),
        )
        .await;
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
    let app = spawn_app().await;
    let acme = app.create_account("Acme").await;
    let carol = app
        .add_user(&id(&acme), "carol@acme.example", &["scientist"])
        .await;
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
                both_ways(&app, fixture_name, Method::GET, &path, token, None).await;
            assert_eq!(local, lambda, "{fixture_name} GET {path}");
        }
        // Writes: same status and same shape of answer (each creates its own account).
        let body = json!({"name": "Via Lambda", "kind": "distributor"});
        let ((local_status, local), (lambda_status, lambda)) = both_ways(
            &app,
            fixture_name,
            Method::POST,
            "/v1/accounts",
            &admin,
            Some(body),
        )
        .await;
        assert_eq!((local_status, lambda_status), (201, 201), "{lambda}");
        assert_eq!(local["kind"], lambda["kind"]);
        assert_ne!(local["account_number"], lambda["account_number"]);
        // Validation problems are identical.
        let bad = json!({"name": "", "kind": "customer"});
        let (local, lambda) = both_ways(
            &app,
            fixture_name,
            Method::POST,
            "/v1/accounts",
            &admin,
            Some(bad),
        )
        .await;
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

#[tokio::test]
async fn the_authorizer_answers_token_request_and_http_api_events() {
    let app = spawn_app().await;
    let token = app.admin_token();
    for fixture_name in ["authorizer_token.json", "authorizer_request.json"] {
        let answer = authorize(&app, fixture_name, &token)
            .await
            .expect("allowed");
        assert_eq!(answer["principalId"], "admin@portico.example");
        let statement = &answer["policyDocument"]["Statement"][0];
        assert_eq!(statement["Effect"], "Allow", "{answer}");
        // One cached policy must serve every method of the API.
        assert_eq!(
            json!(statement["Resource"]),
            json!(["arn:aws:execute-api:eu-west-1:123456789012:abc123defg/prod/*/*"])
        );
        assert_eq!(answer["context"]["groups"], "portico-admins");
        assert!(
            answer["context"]
                .as_object()
                .expect("context")
                .values()
                .all(Value::is_string)
        );

        let err = authorize(&app, fixture_name, "forged.token.here")
            .await
            .expect_err("refused");
        assert_eq!(err.to_string(), "Unauthorized");
    }
    let answer = authorize(&app, "authorizer_v2.json", &token)
        .await
        .expect("answered");
    assert_eq!(answer["isAuthorized"], true);
    assert_eq!(answer["context"]["sub"], "admin@portico.example");
    let answer = authorize(&app, "authorizer_v2.json", "forged")
        .await
        .expect("answered");
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
