//! SigV4 for Amazon OpenSearch Service (`es`) and OpenSearch Serverless (`aoss`): the `logs`
//! function's `_bulk` requests signed with its role's credentials, body hash included.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use portico_logs::opensearch::{BulkError, Sign};

pub struct OpenSearchSigner {
    credentials: SharedCredentialsProvider,
    region: String,
    service: &'static str,
}

impl OpenSearchSigner {
    /// A signer for the cluster at `url` (`*.aoss.amazonaws.com` is Serverless, anything else
    /// the managed service), with the SDK configuration's credentials; `None` without any.
    pub fn new(sdk: &aws_config::SdkConfig, region: &str, url: &str) -> Option<OpenSearchSigner> {
        let service = if url.contains(".aoss.") { "aoss" } else { "es" };
        Some(OpenSearchSigner {
            credentials: sdk.credentials_provider()?,
            region: region.to_string(),
            service,
        })
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[async_trait]
impl Sign for OpenSearchSigner {
    async fn sign(&self, request: &mut reqwest::Request) -> Result<(), BulkError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| BulkError(format!("AWS credentials for OpenSearch: {e}")))?;
        let identity = credentials.into();
        let body = request.body().and_then(|b| b.as_bytes()).unwrap_or_default().to_vec();
        let hash = hex_sha256(&body);
        let hash_value = reqwest::header::HeaderValue::from_str(&hash)
            .map_err(|e| BulkError(format!("body hash header: {e}")))?;
        request.headers_mut().insert("x-amz-content-sha256", hash_value);
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| BulkError(format!("signing parameters: {e}")))?
            .into();
        let url = request.url().to_string();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &url,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| BulkError(format!("signing {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| BulkError(format!("signing {url}: {e}")))?
            .into_parts();
        for (name, value) in instructions.headers() {
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| BulkError(format!("signature header: {e}")))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| BulkError(format!("signature header: {e}")))?;
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }
}
