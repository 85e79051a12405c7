//! The `Queue` port on SQS. Queue names map to `<prefix><name>`; a queue's dead-letter queue is
//! `<prefix><name>-dead`, attached with a redrive policy (the deploy templates and
//! `provision::ensure` set it up), so SQS itself moves a message received too often.
//!
//! SQS counts visibility and waits in whole seconds (waits up to 20 s, at most 10 messages per
//! receive); values are rounded up and capped accordingly.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use portico_core::ports::{Attributes, QueueMessage, QueueStats, Receive};
use portico_core::{Error, Queue, Result};
use tokio::sync::RwLock;

use crate::error::sdk_error;

const MAX_WAIT_SECS: u64 = 20;
const MAX_BATCH: u32 = 10;
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECS: u64 = 43_200;

pub struct SqsQueue {
    client: Client,
    prefix: String,
    /// Queue URLs by name, looked up once.
    urls: RwLock<HashMap<String, String>>,
}

impl SqsQueue {
    pub fn new(client: Client, prefix: &str) -> SqsQueue {
        SqsQueue { client, prefix: prefix.to_string(), urls: RwLock::new(HashMap::new()) }
    }

    async fn url(&self, queue: &str) -> Result<String> {
        if let Some(url) = self.urls.read().await.get(queue) {
            return Ok(url.clone());
        }
        let name = format!("{}{queue}", self.prefix);
        let answer = self.client.get_queue_url().queue_name(&name).send().await;
        let url = match answer {
            Ok(output) => output.queue_url().unwrap_or_default().to_string(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => {
                return Err(Error::Unavailable(format!(
                    "SQS queue `{name}` does not exist; create it (see deploy/) or fix the prefix"
                )));
            }
            Err(e) => return Err(sdk_error("looking up queue", e)),
        };
        self.urls.write().await.insert(queue.to_string(), url.clone());
        Ok(url)
    }

    async fn count(&self, url: &str) -> Result<(u64, u64)> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("reading queue attributes", e))?;
        let get = |name: QueueAttributeName| {
            output
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

fn whole_seconds(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(max) as i32
}

/// Whether SQS refused a receipt: stale, malformed, or the message is no longer in flight.
fn is_receipt_refusal(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ReceiptHandleIsInvalid"
                | "InvalidParameterValue"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
                | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
        )
    )
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, body: &str, attributes: &Attributes) -> Result<String> {
        let url = self.url(queue).await?;
        let mut request = self.client.send_message().queue_url(url).message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("message attribute {name}: {e}")))?;
            request = request.message_attributes(name, value);
        }
        let output = request.send().await.map_err(|e| sdk_error("sending message", e))?;
        Ok(output.message_id().unwrap_or_default().to_string())
    }

    async fn receive(&self, queue: &str, how: Receive) -> Result<Vec<QueueMessage>> {
        let url = self.url(queue).await?;
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(how.max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(whole_seconds(how.visibility, MAX_VISIBILITY_SECS))
            .wait_time_seconds(whole_seconds(how.wait, MAX_WAIT_SECS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error("receiving messages", e))?;
        let mut messages = Vec::new();
        for m in output.messages() {
            let system = |name: MessageSystemAttributeName| {
                m.attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let attributes = m
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            messages.push(QueueMessage {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                attributes,
                receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount).max(1)
                    as u32,
                sent_at_ms: system(MessageSystemAttributeName::SentTimestamp),
            });
        }
        Ok(messages)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<bool> {
        let url = self.url(queue).await?;
        match self.client.delete_message().queue_url(url).receipt_handle(receipt).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_receipt_refusal(e.as_service_error().and_then(|s| s.meta().code())) => {
                Ok(false)
            }
            Err(e) => Err(sdk_error("deleting message", e)),
        }
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, lease: Duration) -> Result<bool> {
        let url = self.url(queue).await?;
        match self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(lease, MAX_VISIBILITY_SECS))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_receipt_refusal(e.as_service_error().and_then(|s| s.meta().code())) => {
                Ok(false)
            }
            Err(e) => Err(sdk_error("changing message visibility", e)),
        }
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let url = self.url(queue).await?;
        let (visible, in_flight) = self.count(&url).await?;
        let dead = match self.url(&format!("{queue}-dead")).await {
            Ok(dead_url) => self.count(&dead_url).await?.0,
            Err(Error::Unavailable(_)) => 0, // no dead-letter queue configured
            Err(e) => return Err(e),
        };
        Ok(QueueStats {
            visible,
            in_flight,
            // SQS publishes the oldest message's age as a CloudWatch metric
            // (ApproximateAgeOfOldestMessage), not as a queue attribute.
            oldest_age_ms: 0,
            dead,
        })
    }
}
