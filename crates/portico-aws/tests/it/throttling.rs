//! Throttling answers from AWS are retried with backoff; what still fails is `Unavailable`.
//! A local HTTP server speaks the services' JSON protocol and throttles the first requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use portico_core::SequenceGenerator;
use portico_core::ports::SequenceRange;

/// A stand-in speaking AWS's JSON protocol. `answer(call number, X-Amz-Target)` gives the status
/// and body of each call; returns the endpoint and the number of calls so far.
async fn stand_in(
    answer: fn(usize, &str) -> (StatusCode, &'static str),
) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let target =
                headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let (status, body) = answer(n, &target);
            async move { (status, [("content-type", "application/x-amz-json-1.0")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#;

/// DynamoDB: the first `N` requests are throttled, then `UpdateItem` answers `next = 43`.
fn dynamodb<const N: usize>(n: usize, target: &str) -> (StatusCode, &'static str) {
    assert_eq!(target, "DynamoDB_20120810.UpdateItem");
    if n < N {
        (StatusCode::BAD_REQUEST, THROTTLED)
    } else {
        (StatusCode::OK, r#"{"Attributes":{"next":{"N":"43"}}}"#)
    }
}

async fn sequence_against(endpoint: String) -> portico_aws::DynamoSequence {
    let settings = portico_aws::AwsSettings {
        region: "eu-central-1".into(),
        endpoint_url: Some(endpoint),
        iot_endpoint: None,
        table: "portico".into(),
        bucket: "unused".into(),
        queue_prefix: String::new(),
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    portico_aws::DynamoSequence::new(
        portico_aws::dynamodb(&sdk),
        "portico",
        "eu-central-1",
        SequenceRange { start: 0, end: 100 },
        1,
    )
}

#[tokio::test]
async fn throttled_requests_are_retried_with_backoff() {
    let (endpoint, calls) = stand_in(dynamodb::<3>).await;
    let seq = sequence_against(endpoint).await;
    assert_eq!(seq.next("s").await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn throttling_that_does_not_end_is_unavailable() {
    let (endpoint, calls) = stand_in(dynamodb::<{ usize::MAX }>).await;
    let seq = sequence_against(endpoint).await;
    let err = seq.next("s").await.unwrap_err();
    assert!(
        matches!(&err, portico_core::Error::Unavailable(m) if m.contains("ProvisionedThroughputExceeded")),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), portico_aws::MAX_ATTEMPTS as usize);
}

/// SQS: `GetQueueUrl` is throttled twice, then every call succeeds.
fn sqs(n: usize, target: &str) -> (StatusCode, &'static str) {
    match target {
        "AmazonSQS.GetQueueUrl" if n < 2 => (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Request is throttled."}"#,
        ),
        "AmazonSQS.GetQueueUrl" => (
            StatusCode::OK,
            r#"{"QueueUrl":"http://127.0.0.1/123456789012/portico-document-uploads"}"#,
        ),
        "AmazonSQS.SendMessage" => (StatusCode::OK, r#"{"MessageId":"m-1"}"#),
        other => panic!("unexpected call {other}"),
    }
}

#[tokio::test]
async fn throttled_queue_calls_are_retried_too() {
    use portico_core::Queue;
    let (endpoint, calls) = stand_in(sqs).await;
    let settings = portico_aws::AwsSettings {
        region: "eu-central-1".into(),
        endpoint_url: Some(endpoint),
        iot_endpoint: None,
        table: "unused".into(),
        bucket: "unused".into(),
        queue_prefix: "portico-".into(),
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    let queue = portico_aws::SqsQueue::new(portico_aws::sqs(&sdk), "portico-");
    let id = queue.send("document-uploads", "{}", &Default::default()).await.unwrap();
    assert_eq!(id, "m-1");
    // Two throttled lookups, the lookup that worked, the send.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}
