//! `_bulk` requests to Amazon OpenSearch Service are SigV4-signed with the process's credentials,
//! the body's hash included (checked against a loopback stand-in that records what it got).

use std::sync::{Arc, Mutex};

use portico_logs::opensearch::{Auth, BulkDoc, BulkSink};
use serde_json::json;

#[tokio::test]
async fn bulk_requests_are_signed_for_the_service() {
    let seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/_bulk",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                axum::Json(json!({"errors": false, "items": [{"create": {"status": 201}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = portico_aws::AwsSettings {
        region: "eu-central-1".into(),
        endpoint_url: None,
        iot_endpoint: None,
        table: String::new(),
        bucket: String::new(),
        queue_prefix: String::new(),
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    let signer = portico_aws::opensearch::OpenSearchSigner::new(&sdk, "eu-central-1", &url)
        .expect("credentials (cargo gives the tests dummy ones)");
    let sink =
        BulkSink::new(&url, Auth::Signed(Arc::new(signer)), std::time::Duration::from_secs(5))
            .unwrap();
    let doc = BulkDoc {
        index: "portico-logs-2026.12.01".into(),
        id: "e-1".into(),
        source: json!({"message": "hi"}),
    };
    let shipped = sink.ship(vec![doc]).await.unwrap();
    assert_eq!(shipped.created, 1);

    let seen = seen.lock().unwrap();
    let (headers, body) = &seen[0];
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential="), "{authorization}");
    assert!(authorization.contains("/eu-central-1/es/aws4_request"), "{authorization}");
    assert!(
        authorization.contains("SignedHeaders=") && authorization.contains("x-amz-content-sha256"),
        "{authorization}"
    );
    assert!(headers.contains_key("x-amz-date"));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(headers["x-amz-content-sha256"].to_str().unwrap(), hex);
}
