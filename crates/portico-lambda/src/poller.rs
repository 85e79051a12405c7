//! `stream-poller` (AWS builds, on a schedule): one run of `portico_aws::warehouse::StreamPoller`
//! per invocation, for as long as the invocation may last (less a margin), under a lease named
//! after the invocation so that overlapping schedules never both move the checkpoint.

use std::time::Duration;

use portico_aws::StreamLease;
use portico_aws::neptune::stream::NeptuneStream;
use portico_aws::warehouse::{KinesisWriter, StreamPoller};
use serde_json::{Value, json};

/// Left of an invocation's time for releasing the lease and answering.
const MARGIN: Duration = Duration::from_secs(5);
/// Records read per page of the stream.
const PAGE: i64 = 1_000;

/// The clients a run needs, made once per container.
pub struct Parts {
    sdk: portico_aws::SdkConfig,
    endpoint: String,
    table: String,
    stream: String,
}

impl Parts {
    pub async fn new(config: &portico_config::Config) -> anyhow::Result<Parts> {
        let aws = &config.aws;
        let endpoint = aws.neptune_endpoint.clone().ok_or_else(|| {
            anyhow::anyhow!("the stream-poller reads Neptune Streams: set aws.neptune_endpoint (PORTICO_AWS_NEPTUNE_ENDPOINT)")
        })?;
        let settings = portico_app::aws_settings(config)?;
        Ok(Parts {
            sdk: portico_aws::sdk_config(&settings).await,
            endpoint,
            table: aws.table.clone(),
            stream: aws.warehouse_stream.clone(),
        })
    }

    /// One run, as long as the invocation allows; answers what it did.
    pub async fn run(
        &self,
        context: &lambda_runtime::Context,
    ) -> Result<Value, lambda_runtime::Error> {
        let left = context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(MARGIN);
        let poller = StreamPoller {
            stream: NeptuneStream::new(&self.sdk, &self.endpoint),
            kinesis: KinesisWriter::new(&self.sdk, &self.stream),
            lease: StreamLease::new(
                portico_aws::dynamodb(&self.sdk),
                &self.table,
                &context.request_id,
                left + MARGIN * 2,
            ),
            page_size: PAGE,
        };
        let polled =
            poller.run(left).await.map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
        tracing::info!(pages = polled.pages, elements = polled.elements, ended = ?polled.ended, "stream polled");
        Ok(json!({
            "pages": polled.pages,
            "elements": polled.elements,
            "ended": format!("{:?}", polled.ended),
            "checkpoint": polled.checkpoint,
        }))
    }
}
