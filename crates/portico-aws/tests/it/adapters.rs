//! The contract suite every local adapter passes, on the AWS adapters.

use std::sync::Arc;

use portico_aws::{DynamoStore, SqsQueue};
use portico_contract as suite;
use portico_core::ports::SequenceRange;
use portico_core::{Queue, SequenceGenerator};

use crate::harness::{Env, env};

const REGION: &str = "eu-central-1";

fn store(env: &Env) -> DynamoStore {
    let numbers = env.sequence(SequenceRange { start: 500, end: 1000 }, 1);
    DynamoStore::new(env.dynamodb.clone(), &env.settings.table, numbers)
}

#[tokio::test]
async fn sequence() {
    let env = env(REGION).await;
    suite::sequence::values_stay_in_range_and_increase(|range| {
        env.sequence(range, 1) as Arc<dyn SequenceGenerator>
    })
    .await;
    // Several instances of one region sharing the table, some claiming blocks.
    let range = SequenceRange { start: 1_000, end: 1_000_000 };
    let generators: Vec<Arc<dyn SequenceGenerator>> =
        vec![env.sequence(range, 1), env.sequence(range, 1), env.sequence(range, 7)];
    suite::sequence::concurrent_callers_never_share_a_value(generators, range, 60).await;
}

#[tokio::test]
async fn sequence_blocks_end_exactly_at_the_range_end() {
    let env = env(REGION).await;
    // Blocks of 4 in a range of 10: 4 + 4 + the last 2, then nothing.
    let seq = env.sequence(SequenceRange { start: 0, end: 10 }, 4);
    let mut values = Vec::new();
    for _ in 0..10 {
        values.push(seq.next("s").await.unwrap());
    }
    assert_eq!(values, (0..10).collect::<Vec<_>>());
    assert!(matches!(seq.next("s").await, Err(portico_core::Error::Unavailable(_))));
}

#[tokio::test]
async fn racing_claims_at_the_end_of_the_range_hand_out_every_value_once() {
    let env = env(REGION).await;
    let range = SequenceRange { start: 0, end: 50 };
    // Blocks of 8 in a range of 50: the last claims are compare-and-set races between instances.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let generator = env.sequence(range, 8);
        for _ in 0..2 {
            let generator = generator.clone();
            tasks.push(tokio::spawn(async move {
                let mut values = Vec::new();
                loop {
                    match generator.next("race").await {
                        Ok(v) => values.push(v),
                        Err(portico_core::Error::Unavailable(_)) => return values,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn queue() {
    let env = env(REGION).await;
    for name in ["contract-a", "contract-b"] {
        portico_aws::provision::queue(&env.sqs, &env.settings.queue_prefix, name, 3).await.unwrap();
    }
    let q: Arc<dyn Queue> = Arc::new(SqsQueue::new(env.sqs.clone(), &env.settings.queue_prefix));
    suite::queue::visibility_receipts_and_dead_letters(q.as_ref(), "contract-a").await;
    suite::queue::long_polling_visibility_changes_and_deletes(q, "contract-b").await;
}

#[tokio::test]
async fn a_missing_queue_is_a_clear_unavailable_error() {
    let env = env(REGION).await;
    let q = SqsQueue::new(env.sqs.clone(), &env.settings.queue_prefix);
    let err = q.send("nowhere", "x", &Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, portico_core::Error::Unavailable(m) if m.contains("does not exist")),
        "{err:?}"
    );
}

#[tokio::test]
async fn objects() {
    let env = env(REGION).await;
    let bucket = env.bucket().await;
    let objects = portico_objects::Objects::from_store(bucket);
    suite::objects::exact_sizes_and_nothing_half_written(&objects, "run-1").await;
}

#[tokio::test]
async fn every_record_port() {
    suite::records::every_port(|| async { store(&env(REGION).await) }).await;
}

#[tokio::test]
async fn notifications_are_published_through_the_iot_data_plane() {
    use portico_core::Publisher;
    let env = env(REGION).await;
    let publisher = portico_aws::IotPublisher::new(portico_aws::iot_data(&env.sdk, &env.settings));
    publisher
        .publish("users/u-1/notifications", br#"{"kind":"instrument_alert"}"#.to_vec(), 1)
        .await
        .unwrap();
    // QoS 2 (the local broker's) is published as QoS 1, the most IoT Core offers.
    publisher.publish("users/u-1/notifications", b"{}".to_vec(), 2).await.unwrap();
}

#[tokio::test]
async fn presigned_urls_take_an_upload_and_give_it_back() {
    use portico_core::{FileUrls, ObjectStore};
    let env = env(REGION).await;
    let bucket = env.bucket().await;
    let urls = portico_aws::PresignedUrls::new(bucket.clone(), REGION);
    let objects = portico_objects::Objects::from_store(bucket);
    let now = time::OffsetDateTime::now_utc();
    let document = portico_core::domain::Document {
        id: "d-1".into(),
        account_id: "acc-1".into(),
        uploaded_by: "u-1".into(),
        filename: "run.csv".into(),
        content_type: "text/csv".into(),
        size: 8,
        status: portico_core::domain::DocumentStatus::Pending,
        failure_reason: None,
        metadata: None,
        instrument_serial: None,
        created_at: now,
        updated_at: now,
    };
    let expires = now.unix_timestamp() + 600;
    let upload = urls.upload_url(&document, expires).await.unwrap();
    assert!(upload.contains("X-Amz-Signature="), "{upload}");
    assert!(upload.contains("documents/acc-1/d-1"), "{upload}");
    // S3 checks every signed header: the declared type and size, and create-only.
    assert!(
        upload.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"),
        "{upload}"
    );
    let client = reqwest::Client::new();
    let put = |body: &'static str| {
        client
            .put(&upload)
            .header("content-type", "text/csv")
            .header("if-none-match", "*")
            .body(body)
            .send()
    };
    let first = put("a,b\n1,2\n").await.unwrap();
    assert!(first.status().is_success(), "{}", first.status());
    // A second PUT on the link cannot replace the object (the worker may have checked it).
    let second = put("x,y\n9,9\n").await.unwrap();
    assert_eq!(second.status(), reqwest::StatusCode::PRECONDITION_FAILED);
    // The object is where the worker will look for it.
    let body: Vec<bytes::Bytes> =
        futures_util::TryStreamExt::try_collect(objects.get(&document.object_key()).await.unwrap())
            .await
            .unwrap();
    assert_eq!(body.concat(), b"a,b\n1,2\n");
    let download = urls.download_url(&document, expires).await.unwrap();
    let got = client.get(&download).send().await.unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.text().await.unwrap(), "a,b\n1,2\n");
}
