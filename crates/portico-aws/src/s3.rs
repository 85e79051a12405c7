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

/// The documents bucket as both ports (`ObjectStore` and `FileUrls`), opened on first use: making
/// the S3 client loads the system's root certificates, which is the first request's business, not
/// a Lambda's init.
pub struct LazyBucket {
    name: String,
    region: String,
    endpoint: Option<String>,
    opened: std::sync::OnceLock<std::result::Result<Opened, String>>,
}

struct Opened {
    objects: portico_objects::Objects,
    urls: PresignedUrls,
}

impl LazyBucket {
    pub fn new(name: &str, region: &str, endpoint: Option<&str>) -> LazyBucket {
        LazyBucket {
            name: name.to_string(),
            region: region.to_string(),
            endpoint: endpoint.map(str::to_owned),
            opened: std::sync::OnceLock::new(),
        }
    }

    fn opened(&self) -> Result<&Opened> {
        self.opened
            .get_or_init(|| {
                let s3 = bucket(&self.name, &self.region, self.endpoint.as_deref())
                    .map_err(|e| e.to_string())?;
                Ok(Opened {
                    objects: portico_objects::Objects::from_store(s3.clone()),
                    urls: PresignedUrls::new(s3),
                })
            })
            .as_ref()
            .map_err(|e| Error::Unavailable(e.clone()))
    }
}

#[async_trait]
impl portico_core::ObjectStore for LazyBucket {
    async fn put(
        &self,
        key: &str,
        body: portico_core::ports::ByteStream,
        size: u64,
    ) -> Result<portico_core::StoredObject> {
        self.opened()?.objects.put(key, body, size).await
    }

    async fn get(&self, key: &str) -> Result<portico_core::ports::ByteStream> {
        self.opened()?.objects.get(key).await
    }
}

#[async_trait]
impl FileUrls for LazyBucket {
    async fn upload_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        self.opened()?.urls.upload_url(document, expires_at).await
    }

    async fn download_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        self.opened()?.urls.download_url(document, expires_at).await
    }
}
