//! Objects in S3 through `object_store` (the same multipart, exact-size writer as local files),
//! and presigned S3 URLs for clients' uploads and downloads.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use portico_core::domain::Document;
use portico_core::{Error, FileUrls, Result};

/// S3 refuses presigned URLs valid for longer than seven days.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Opens `bucket`. Credentials come from the environment as on Lambda, ECS and EC2 (environment
/// variables, container credentials, instance metadata); `endpoint` points at an S3-compatible
/// service such as moto (path-style requests, plain HTTP allowed there only).
pub fn bucket(bucket: &str, region: &str, endpoint: Option<&str>) -> Result<Arc<AmazonS3>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(region);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    let store = builder
        .build()
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("configuring S3 bucket {bucket}: {e}")))?;
    Ok(Arc::new(store))
}

/// `FileUrls` as S3 presigned URLs for the document's object key.
pub struct PresignedUrls {
    s3: Arc<AmazonS3>,
}

impl PresignedUrls {
    pub fn new(s3: Arc<AmazonS3>) -> PresignedUrls {
        PresignedUrls { s3 }
    }

    async fn sign(
        &self,
        method: http::Method,
        document: &Document,
        expires_at: i64,
    ) -> Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let valid_for = Duration::from_secs(expires_at.saturating_sub(now).max(1) as u64);
        let path = Path::parse(document.object_key())
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("object key: {e}")))?;
        let url = self
            .s3
            .signed_url(method, &path, valid_for.min(MAX_PRESIGN))
            .await
            .map_err(|e| Error::Unavailable(format!("presigning S3 URL: {e}")))?;
        Ok(url.to_string())
    }
}

#[async_trait]
impl FileUrls for PresignedUrls {
    async fn upload_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        self.sign(http::Method::PUT, document, expires_at).await
    }

    async fn download_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        self.sign(http::Method::GET, document, expires_at).await
    }
}
