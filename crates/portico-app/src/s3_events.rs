//! The wire shape of upload events: S3's `ObjectCreated` notification. On AWS, S3 sends it to SQS
//! itself; the local host writes the same record onto its queue when an upload is stored, so one
//! worker reads both. Only the hosts know this shape: functions see `UploadCompleted` and keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use portico_core::{Queue, Result, UploadCompleted, UploadEvents};
use portico_functions::documents::UPLOADS_QUEUE;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The bucket name local events carry (locally it names the object store).
const BUCKET: &str = "portico-documents";

/// The object keys an upload event names, decoded. Lenient: records without a key are skipped,
/// and a body that is not an S3 event names none.
pub fn keys(body: &str) -> Vec<String> {
    let Ok(event) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    event["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["s3"]["object"]["key"].as_str().map(decode_key))
        .collect()
}

/// S3 event notifications carry object keys URL-encoded (`+` for a space, `%XX` for a byte;
/// moto encodes `/` too). Keys Portico writes itself are plain, and decode to themselves.
fn decode_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `ObjectCreated:Put` record S3 would send for `upload`.
pub fn encode(upload: &UploadCompleted, region: &str, now: OffsetDateTime) -> String {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": now.format(&Rfc3339).unwrap_or_default(),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": upload.uploaded_by},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "portico-document-uploads",
            "bucket": {"name": BUCKET, "arn": format!("arn:aws:s3:::{BUCKET}")},
            "object": {
                "key": upload.key,
                "size": upload.size,
                "eTag": upload.sha256,
                "sequencer": format!("{:016X}", now.unix_timestamp_nanos()),
            }
        }
    }]})
    .to_string()
}

/// `UploadEvents` on the local queue: the S3-shaped record, onto `document-uploads`.
pub struct QueuedUploadEvents {
    queue: Arc<dyn Queue>,
    region: String,
}

impl QueuedUploadEvents {
    pub fn new(queue: Arc<dyn Queue>, region: &str) -> Self {
        QueuedUploadEvents { queue, region: region.to_string() }
    }
}

#[async_trait]
impl UploadEvents for QueuedUploadEvents {
    async fn stored(&self, upload: &UploadCompleted) -> Result<()> {
        let body = encode(upload, &self.region, OffsetDateTime::now_utc());
        let id = upload.key.rsplit('/').next().unwrap_or_default().to_string();
        let attributes = BTreeMap::from([("document_id".to_string(), id)]);
        self.queue.send(UPLOADS_QUEUE, &body, &attributes).await?;
        Ok(())
    }
}

/// On AWS, S3 notifies SQS of every stored upload itself: nothing to send.
pub struct S3SendsUploadEvents;

#[async_trait]
impl UploadEvents for S3SendsUploadEvents {
    async fn stored(&self, _upload: &UploadCompleted) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_leniently_and_decoded() {
        let body = r#"{"Records":[{"s3":{"object":{"key":"documents/a/d1","size":3}}},{"s3":{}}]}"#;
        assert_eq!(keys(body), vec!["documents/a/d1".to_string()]);
        assert!(keys("not json").is_empty());
        // S3 (and moto) URL-encode keys in events.
        let body = r#"{"Records":[{"s3":{"object":{"key":"documents%2Fa%2Fd1"}}},{"s3":{"object":{"key":"a+b%20c%zz%4"}}}]}"#;
        assert_eq!(keys(body), vec!["documents/a/d1", "a b c%zz%4"]);
    }

    #[test]
    fn what_is_written_reads_back() {
        let upload = UploadCompleted {
            key: "documents/acc-1/d-1".into(),
            size: 12,
            sha256: "ab".repeat(32),
            uploaded_by: "u-1".into(),
        };
        let body = encode(&upload, "local", OffsetDateTime::UNIX_EPOCH);
        assert_eq!(keys(&body), vec![upload.key.clone()]);
        let event: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(event["Records"][0]["eventName"], "ObjectCreated:Put");
        assert_eq!(event["Records"][0]["s3"]["object"]["size"], 12);
    }
}
