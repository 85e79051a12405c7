//! Signed, expiring URLs for document bytes served by the local host: an HMAC-SHA256 over the
//! method, the document id, the expiry and (for uploads) the exact size and content type, so a
//! URL works for one document, one purpose, until it expires, and cannot be edited.

use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use portico_core::{Document, Error, FileUrls, Result};

pub struct SignedUrls {
    key: hmac::Key,
}

/// The query of a signed upload URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub expires: i64,
    pub size: u64,
    pub content_type: String,
}

impl SignedUrls {
    /// The signing key kept in `dir` (made on first use, readable by the owner only).
    pub fn load_or_create(dir: &Path) -> Result<SignedUrls> {
        let path = dir.join("url-signing.key");
        let secret = portico_auth::secret_file::load_or_create(&path, || {
            let mut secret = [0u8; 32];
            SystemRandom::new()
                .fill(&mut secret)
                .map(|()| secret.to_vec())
                .map_err(|_| anyhow::anyhow!("the system random generator failed"))
        })
        .map_err(|e| match e {
            portico_auth::secret_file::LoadError::Io(e) => {
                anyhow::anyhow!("{}: {e}", path.display())
            }
            portico_auth::secret_file::LoadError::Make(e) => e,
        })?;
        if secret.len() != 32 {
            return Err(Error::Unexpected(anyhow::anyhow!(
                "{} is not a 32-byte key; delete it to make a new one",
                path.display()
            )));
        }
        Ok(SignedUrls { key: hmac::Key::new(hmac::HMAC_SHA256, &secret) })
    }

    fn sign(&self, message: &str) -> String {
        crate::hex(hmac::sign(&self.key, message.as_bytes()).as_ref())
    }

    fn verify(&self, message: &str, signature: &str) -> bool {
        let Some(bytes) = unhex(signature) else {
            return false;
        };
        hmac::verify(&self.key, message.as_bytes(), &bytes).is_ok()
    }

    fn upload_message(id: &str, grant: &UploadGrant) -> String {
        format!("PUT\n{id}\n{}\n{}\n{}", grant.expires, grant.size, grant.content_type)
    }

    fn download_message(id: &str, expires: i64) -> String {
        format!("GET\n{id}\n{expires}")
    }

    /// Checks an upload URL's grant and signature for document `id`.
    pub fn check_upload(
        &self,
        id: &str,
        grant: &UploadGrant,
        signature: &str,
        now: i64,
    ) -> Result<()> {
        if !self.verify(&Self::upload_message(id, grant), signature) {
            return Err(Error::Forbidden("the upload link is not valid for this document".into()));
        }
        if now > grant.expires {
            return Err(Error::Forbidden("the upload link has expired; ask for a new one".into()));
        }
        Ok(())
    }

    /// Checks a download URL's signature for document `id`.
    pub fn check_download(&self, id: &str, expires: i64, signature: &str, now: i64) -> Result<()> {
        if !self.verify(&Self::download_message(id, expires), signature) {
            return Err(Error::Forbidden(
                "the download link is not valid for this document".into(),
            ));
        }
        if now > expires {
            return Err(Error::Forbidden("the download link has expired".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl FileUrls for SignedUrls {
    async fn upload_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        let grant = UploadGrant {
            expires: expires_at,
            size: document.size,
            content_type: document.content_type.clone(),
        };
        let signature = self.sign(&Self::upload_message(&document.id, &grant));
        Ok(format!(
            "/v1/documents/{}/content?expires={}&size={}&type={}&sig={signature}",
            document.id,
            grant.expires,
            grant.size,
            encode(&grant.content_type)
        ))
    }

    async fn download_url(&self, document: &Document, expires_at: i64) -> Result<String> {
        let signature = self.sign(&Self::download_message(&document.id, expires_at));
        Ok(format!("/v1/documents/{}/content?expires={expires_at}&sig={signature}", document.id))
    }
}

/// Percent-encodes everything but unreserved characters (content types carry `/`, `+`, `;`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let urls = SignedUrls::load_or_create(dir.path()).expect("signer");
        let grant = UploadGrant { expires: 1000, size: 10, content_type: "text/csv".into() };
        let sig = urls.sign(&SignedUrls::upload_message("doc1", &grant));
        assert!(urls.check_upload("doc1", &grant, &sig, 999).is_ok());
        assert!(urls.check_upload("doc1", &grant, &sig, 1001).is_err(), "expired");
        assert!(urls.check_upload("doc2", &grant, &sig, 999).is_err(), "another document");
        for tampered in [
            UploadGrant { size: 11, ..grant.clone() },
            UploadGrant { expires: 2000, ..grant.clone() },
            UploadGrant { content_type: "text/html".into(), ..grant.clone() },
        ] {
            assert!(urls.check_upload("doc1", &tampered, &sig, 999).is_err());
        }
        assert!(urls.check_upload("doc1", &grant, "zz", 999).is_err());
        let again = SignedUrls::load_or_create(dir.path()).expect("same key");
        assert!(again.check_upload("doc1", &grant, &sig, 999).is_ok());
        assert_eq!(encode("text/csv; charset=utf-8"), "text%2Fcsv%3B%20charset%3Dutf-8");
    }
}
