//! Adapters on fresh resources in moto.

use std::sync::Arc;

use portico_aws::AwsSettings;
use portico_contract::moto::endpoint;

/// Settings naming fresh resources in `region`.
pub fn settings(region: &str) -> AwsSettings {
    let run = uuid::Uuid::new_v4().simple().to_string();
    AwsSettings {
        region: region.to_string(),
        endpoint_url: Some(endpoint()),
        iot_endpoint: None,
        table: format!("portico-{run}"),
        bucket: format!("portico-{}", &run[..20]),
        queue_prefix: format!("p{}-", &run[..12]),
    }
}

/// SDK clients on `settings`, with the table and the contract's queues created.
pub struct Env {
    pub settings: AwsSettings,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sdk: aws_config::SdkConfig,
}

pub async fn env(region: &str) -> Env {
    let settings = settings(region);
    let sdk = portico_aws::sdk_config(&settings).await;
    let dynamodb = portico_aws::dynamodb(&sdk);
    let sqs = portico_aws::sqs(&sdk);
    portico_aws::provision::table(&dynamodb, &settings.table).await.unwrap();
    Env { settings, dynamodb, sqs, sdk }
}

impl Env {
    pub fn sequence(
        &self,
        range: portico_core::ports::SequenceRange,
        block: u64,
    ) -> Arc<portico_aws::DynamoSequence> {
        Arc::new(portico_aws::DynamoSequence::new(
            self.dynamodb.clone(),
            &self.settings.table,
            &self.settings.region,
            range,
            block,
        ))
    }

    /// A bucket, made with a plain S3 `CreateBucket` call (moto does not check signatures).
    pub async fn bucket(&self) -> Arc<object_store::aws::AmazonS3> {
        let url = format!("{}/{}", endpoint(), self.settings.bucket);
        let response = reqwest::Client::new().put(&url).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        portico_aws::s3::bucket(
            &self.settings.bucket,
            &self.settings.region,
            self.settings.endpoint_url.as_deref(),
        )
        .unwrap()
    }
}
