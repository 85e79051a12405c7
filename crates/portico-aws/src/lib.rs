//! Portico's AWS adapters: every port on an AWS service, for the Lambda host and for workers on
//! EC2 / ECS. Compiled only with the `aws` feature (the AWS SDK is a long build; see Cargo.toml).
//!
//! | port | adapter |
//! |---|---|
//! | `Accounts`, `Users`, `Instruments`, `Notifications`, `Documents`, `Catalogue`, `Outbox` | [`DynamoStore`]: one DynamoDB table |
//! | `SequenceGenerator` | [`DynamoSequence`]: region-owned items, conditional block claims |
//! | `ObjectStore`, `FileUrls` | S3 through `object_store` ([`s3::bucket`]), [`PresignedUrls`]; both as [`LazyBucket`] |
//! | `Queue` | [`SqsQueue`]: SQS with redrive to `<queue>-dead` |
//! | `Publisher` | [`IotPublisher`]: AWS IoT Data Plane |
//! | `GraphStore` | [`neptune::NeptuneGraph`]: Gremlin on Amazon Neptune |
//! | the warehouse's stream | [`warehouse::StreamPoller`]: Neptune Streams -> Kinesis, under a DynamoDB lease |
//!
//! Clients are built without any network call (credentials are fetched on the first request), so
//! a Lambda's init stays short; they are meant to be built once and reused across invocations.
#![cfg(feature = "aws")]

mod dynamo;
mod error;
mod iot;
pub mod neptune;
pub mod opensearch;
pub mod provision;
pub mod s3;
mod sequence;
mod sqs;
pub mod warehouse;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The SDK configuration every client is made from (`sdk_config`).
pub use aws_config::SdkConfig;
pub use dynamo::DynamoStore;
pub use dynamo::lease::StreamLease;
pub use dynamo::stream::change_record;
pub use iot::IotPublisher;
pub use s3::{LazyBucket, PresignedUrls};
pub use sequence::DynamoSequence;
pub use sqs::SqsQueue;

/// Attempts per AWS call, first included: throttling (`ProvisionedThroughputExceededException`,
/// SQS `RequestThrottled`, ...) and transient errors are retried with exponential backoff and
/// jitter by the SDK's standard retry mode.
pub const MAX_ATTEMPTS: u32 = 8;

/// Where the AWS resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    /// Endpoint for every service (`AWS_ENDPOINT_URL`), e.g. moto; `None` = AWS itself.
    pub endpoint_url: Option<String>,
    /// AWS IoT's account-specific data endpoint (`https://<id>-ats.iot.<region>.amazonaws.com`).
    pub iot_endpoint: Option<String>,
    pub table: String,
    pub bucket: String,
    /// Prefix of queue names: queue `document-uploads` is SQS queue `<prefix>document-uploads`.
    pub queue_prefix: String,
}

/// The SDK configuration: region, endpoint and retry policy; credentials from the default chain
/// (environment, profile, container, instance metadata), resolved lazily.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .http_client(SharedHttpClient::new(LazyHttpClient::default()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(5)),
        );
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The SDK's HTTPS client (rustls on aws-lc, as the SDK's default), made on the first request.
/// Every SDK client checks its HTTP client when it is constructed, and the default one answers
/// by setting up TLS, which reads the system's root certificates: ~2 ms of a Lambda's init for
/// nothing an invocation may ever need.
#[derive(Debug, Default)]
struct LazyHttpClient(std::sync::OnceLock<SharedHttpClient>);

impl HttpClient for LazyHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0
            .get_or_init(|| {
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
                    .build_https()
            })
            .http_connector(settings, components)
    }
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// The IoT Data Plane client, on the account's data endpoint when one is configured.
pub fn iot_data(config: &SdkConfig, settings: &AwsSettings) -> aws_sdk_iotdataplane::Client {
    let mut builder = aws_sdk_iotdataplane::config::Builder::from(config);
    if let Some(endpoint) = &settings.iot_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_iotdataplane::Client::from_conf(builder.build())
}
