//! The local dev issuer: when no Okta issuer is configured, Portico signs its own access tokens.
//!
//! The RSA key lives in the data dir (`auth/dev-issuer.pk8`), so tokens minted by
//! `portico token` are accepted by `portico serve` on the same data dir. Tokens carry the claims
//! an Okta custom authorization server puts in access tokens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::now_secs;
use crate::verifier::{Verifier, VerifierSettings};

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("dev issuer key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("dev issuer key {path} is not a usable RSA key; delete it to make a new one")]
    BadKey { path: PathBuf },
    #[error("cannot generate an RSA key")]
    Generate,
    #[error("cannot sign the token")]
    Sign,
}

/// What to put in a minted token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub sub: String,
    pub groups: Vec<String>,
    pub ttl: Duration,
}

pub struct DevIssuer {
    issuer: String,
    audience: String,
    /// Scopes the API requires: minted tokens carry them, and the verifier asks for them.
    required_scopes: Vec<String>,
    kid: String,
    key: KeyPair,
    jwks: Value,
}

impl DevIssuer {
    /// Loads the key kept under `dir`, or makes one. Safe when several processes start at once on
    /// an empty data dir: exactly one key wins and every process uses it.
    pub fn load_or_create(
        dir: &Path,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, DevIssuerError> {
        let path = dir.join("dev-issuer.pk8");
        let der = crate::secret_file::load_or_create(&path, || {
            let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| DevIssuerError::Generate)?;
            let der = key.as_der().map_err(|_| DevIssuerError::Generate)?;
            Ok(der.as_ref().to_vec())
        })
        .map_err(|e| match e {
            crate::secret_file::LoadError::Io(source) => {
                DevIssuerError::Io { path: path.clone(), source }
            }
            crate::secret_file::LoadError::Make(e) => e,
        })?;
        let key =
            KeyPair::from_pkcs8(&der).map_err(|_| DevIssuerError::BadKey { path: path.clone() })?;
        Ok(Self::from_key(key, issuer, audience))
    }

    fn from_key(key: KeyPair, issuer: &str, audience: &str) -> Self {
        let public = key.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&n, &e);
        let jwks = json!({
            "keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e}]
        });
        DevIssuer {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            required_scopes: Vec::new(),
            kid,
            key,
            jwks,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set, as served at the JWKS endpoint.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// Authorization server metadata, as Okta serves it; `jwks_uri` is where this server answers.
    pub fn metadata(&self, jwks_uri: &str) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["token"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
        })
    }

    /// A verifier that accepts this issuer's tokens, with no network access.
    /// The same issuer, with tokens that carry `scopes` and a verifier that requires them.
    pub fn with_required_scopes(mut self, scopes: &[String]) -> Self {
        self.required_scopes = scopes.to_vec();
        self
    }

    pub fn verifier(&self, algorithms: &[String], leeway_secs: u64) -> Verifier {
        let settings = VerifierSettings::new(&self.issuer, &self.audience, algorithms, leeway_secs)
            .require_scopes(&self.required_scopes);
        let jwks = self.jwks.to_string();
        match Verifier::with_jwks(settings, jwks.as_bytes()) {
            Ok(v) => v,
            // Our own JWKS always parses; this arm exists only to avoid a panic path.
            Err(e) => unreachable!("dev issuer JWKS does not parse: {e}"),
        }
    }

    /// Mints an access token shaped like Okta's.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, DevIssuerError> {
        let now = now_secs();
        let scopes: Vec<&str> = ["openid", "profile", "email"]
            .into_iter()
            .chain(self.required_scopes.iter().map(String::as_str))
            .collect();
        let claims = json!({
            "ver": 1,
            "jti": format!("AT.{}", uuid::Uuid::new_v4().simple()),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + request.ttl.as_secs(),
            "cid": "portico-cli",
            "uid": format!("00u{}", &thumbprint(&request.sub.to_lowercase(), "uid")[..17]),
            "scp": scopes,
            "sub": request.sub,
            "groups": request.groups,
        });
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the standard header (`RS256`, this key's `kid`).
    pub fn sign(&self, claims: &Value) -> Result<String, DevIssuerError> {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        self.sign_with_header(&header, claims)
    }

    /// Signs with RS256 under any header: for tests that need tokens a real issuer would not make.
    pub fn sign_with_header(
        &self,
        header: &Value,
        claims: &Value,
    ) -> Result<String, DevIssuerError> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DevIssuerError::Sign)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The RFC 7638 JWK thumbprint of an RSA key, used as its `kid`.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn minted_tokens_verify_and_the_key_persists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let issuer = DevIssuer::load_or_create(
            dir.path(),
            "http://127.0.0.1:8080/oauth2/default",
            "api://default",
        )
        .expect("issuer");
        let token = issuer
            .mint(&TokenRequest {
                sub: "ada@example.com".into(),
                groups: vec!["portico-admins".into()],
                ttl: Duration::from_secs(600),
            })
            .expect("token");
        let again = DevIssuer::load_or_create(
            dir.path(),
            "http://127.0.0.1:8080/oauth2/default",
            "api://default",
        )
        .expect("same key");
        assert_eq!(issuer.kid(), again.kid());
        let claims = again.verifier(&["RS256".into()], 60).verify(&token).await.expect("verifies");
        assert_eq!(claims.sub, "ada@example.com");
        assert_eq!(claims.groups, vec!["portico-admins".to_string()]);
        assert!(claims.uid.is_some_and(|u| u.starts_with("00u")));
    }
}
