//! Objects in S3 through `object_store` (the same multipart, exact-size writer as local files),
//! and presigned S3 URLs for clients' uploads and downloads.
//!
//! An upload URL must hold the client to what was declared and work once: it signs the declared
//! `Content-Type` and `Content-Length`, and `If-None-Match: *`, a conditional write S3 refuses
//! (412) once the object exists. So the link stores one file, of the declared size and type, and
//! can never replace a file the worker has checked. object_store's signer signs only method and
//! path, so uploads are presigned with `aws-sigv4` (AWS's own SigV4 code) instead.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
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
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_region(region);
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
    region: String,
}

impl PresignedUrls {
    pub fn new(s3: Arc<AmazonS3>, region: &str) -> PresignedUrls {
        PresignedUrls { s3, region: region.to_string() }
    }

    /// object_store's presigned URL for `method`: path and method signed, nothing else.
    async fn sign(
        &self,
        method: http::Method,
        document: &Document,
        expires_at: i64,
    ) -> Result<url::Url> {
        let path = Path::parse(document.object_key())
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("object key: {e}")))?;
        self.s3
            .signed_url(method, &path, valid_for(expires_at))
            .await
            .map_err(|e| Error::Unavailable(format!("presigning S3 URL: {e}")))
    }

    /// A PUT presigned with the document's type, size and the create-only condition signed in.
    async fn sign_upload(&self, document: &Document, expires_at: i64) -> Result<String> {
        // object_store knows the bucket's URL form (virtual-hosted or path-style, the endpoint);
        // its URL without the query is the request to sign.
        let mut url = self.sign(http::Method::PUT, document, expires_at).await?;
        url.set_query(None);
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| Error::Unavailable(format!("AWS credentials for presigning: {e}")))?;
        let identity = aws_credential_types::Credentials::new(
            credential.key_id.clone(),
            credential.secret_key.clone(),
            credential.token.clone(),
            None,
            "portico",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(valid_for(expires_at));
        // S3's rules: keys are encoded once and never normalized.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("presigning parameters: {e}")))?
            .into();
        let size = document.size.to_string();
        let headers = [
            ("content-type", document.content_type.as_str()),
            ("content-length", size.as_str()),
            portico_core::ports::UPLOAD_CONDITION,
        ];
        let request = SignableRequest::new(
            "PUT",
            url.as_str(),
            headers.into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("presigning {url}: {e}")))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("presigning {url}: {e}")))?
            .into_parts();
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in instructions.params() {
                query.append_pair(name, value);
            }
        }
        Ok(url.to_string())
    }
}

/// How long a URL is valid to be good until `expires_at` (S3 caps it at seven days).
fn valid_for(expires_at: i64) -> Duration {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Duration::from_secs(expires_at.saturating_sub(now).max(1) as u64).min(MAX_PRESIGN)
}

#[async_trait]
impl FileUrls for PresignedUrls {
    async fn upload_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        self.sign_upload(document, expires_at).await
    }

    async fn download_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        Ok(self.sign(http::Method::GET, document, expires_at).await?.to_string())
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
                    urls: PresignedUrls::new(s3, &self.region),
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
