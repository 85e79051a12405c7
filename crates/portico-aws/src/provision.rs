//! Creates the table and queues Portico expects, when they are missing: for development and tests
//! against moto or a fresh account. Production stacks get the same resources from `deploy/`.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use portico_core::Result;

use crate::error::sdk_error;

/// The DynamoDB table: `pk`/`sk` and the three listing indexes, on-demand billing.
pub async fn table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| anyhow::anyhow!("key schema: {e}"))
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| anyhow::anyhow!("attribute: {e}"))
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?);
    for index in crate::dynamo::keys::INDEXES {
        let (pk, sk) = (index.pk, index.sk);
        request = request
            .attribute_definitions(attribute(pk)?)
            .attribute_definitions(attribute(sk)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .key_schema(key(pk, KeyType::Hash)?)
                    .key_schema(key(sk, KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(|e| anyhow::anyhow!("index: {e}"))?,
            );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
        Err(e) => Err(sdk_error("creating table", e)),
    }
}

/// Queue `<prefix><name>` with its dead-letter queue `<prefix><name>-dead`, which takes a
/// message once it has been received `max_receives` times. Returns the queue's ARN (for S3
/// event notifications).
pub async fn queue(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    name: &str,
    max_receives: u32,
) -> Result<String> {
    let dead = client
        .create_queue()
        .queue_name(format!("{prefix}{name}-dead"))
        .send()
        .await
        .map_err(|e| sdk_error("creating dead-letter queue", e))?;
    let dead_arn = arn(client, dead.queue_url().unwrap_or_default()).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dead_arn, "maxReceiveCount": max_receives});
    let queue = client
        .create_queue()
        .queue_name(format!("{prefix}{name}"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("creating queue", e))?;
    arn(client, queue.queue_url().unwrap_or_default()).await
}

async fn arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    Ok(client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("reading queue attributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default())
}

/// A Kinesis stream of one shard (the warehouse's), waited for until it is active.
pub async fn kinesis_stream(sdk: &crate::SdkConfig, name: &str) -> Result<()> {
    let client = aws_sdk_kinesis::Client::new(sdk);
    client
        .create_stream()
        .stream_name(name)
        .shard_count(1)
        .send()
        .await
        .map_err(|e| sdk_error("creating a Kinesis stream", e))?;
    for _ in 0..100 {
        let described = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("describing a Kinesis stream", e))?;
        let active = described
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(portico_core::Error::Unavailable(format!("Kinesis stream {name} never became active")))
}

/// One record read back from a stream: its sequence number, partition key and data.
pub type StreamedRecord = (String, String, Vec<u8>);

/// Every record of a one-shard stream from its start (what a Lambda event source would deliver).
pub async fn kinesis_records(sdk: &crate::SdkConfig, name: &str) -> Result<Vec<StreamedRecord>> {
    let client = aws_sdk_kinesis::Client::new(sdk);
    let shards = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .map_err(|e| sdk_error("listing Kinesis shards", e))?;
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| sdk_error("reading a Kinesis shard", e))?
            .shard_iterator;
        while let Some(at) = iterator {
            let page = client
                .get_records()
                .shard_iterator(at)
                .send()
                .await
                .map_err(|e| sdk_error("reading Kinesis records", e))?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                out.push((
                    r.sequence_number().to_string(),
                    r.partition_key().unwrap_or_default().to_string(),
                    r.data().as_ref().to_vec(),
                ));
            }
            iterator = page.next_shard_iterator;
        }
    }
    Ok(out)
}
