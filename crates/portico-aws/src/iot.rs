//! The `Publisher` port on AWS IoT Core: server-side publishes through the IoT Data Plane API.

use async_trait::async_trait;
use aws_sdk_iotdataplane::Client;
use aws_sdk_iotdataplane::primitives::Blob;
use portico_core::{Publisher, Result};

use crate::error::sdk_error;

pub struct IotPublisher {
    client: Client,
}

impl IotPublisher {
    pub fn new(client: Client) -> IotPublisher {
        IotPublisher { client }
    }
}

#[async_trait]
impl Publisher for IotPublisher {
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8) -> Result<()> {
        self.client
            .publish()
            .topic(topic)
            // IoT Core knows QoS 0 and 1 only.
            .qos(i32::from(qos.min(1)))
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| sdk_error("publishing to AWS IoT", e))?;
        Ok(())
    }
}
