//! Signing keys: parsing JWK sets, and the remote key source that finds an issuer's JWKS by
//! discovery, caches it per `Cache-Control`, refetches on an unknown `kid` at most once per
//! `refetch_interval`, and keeps serving cached keys through an outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// A verification key and the one algorithm it may be used with.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub key: Arc<DecodingKey>,
    pub alg: Algorithm,
}

pub(crate) type KeyMap = HashMap<String, VerificationKey>;

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct JwkDoc {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWK set, keeping the signature keys Portico can use and skipping the rest (a JWKS may
/// legitimately carry encryption keys or key types we do not accept).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeyMap, String> {
    let doc: JwkSetDoc = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = KeyMap::new();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<JwkDoc>(value) else {
            continue;
        };
        let Some(kid) = jwk.kid.clone() else { continue };
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        if let Some(key) = verification_key(&jwk) {
            keys.insert(kid, key);
        }
    }
    Ok(keys)
}

fn verification_key(jwk: &JwkDoc) -> Option<VerificationKey> {
    match (jwk.kty.as_str(), jwk.alg.as_deref()) {
        ("RSA", None | Some("RS256")) => {
            let key =
                DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?;
            Some(VerificationKey { key: Arc::new(key), alg: Algorithm::RS256 })
        }
        ("EC", None | Some("ES256")) if jwk.crv.as_deref() == Some("P-256") => {
            let key = DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?;
            Some(VerificationKey { key: Arc::new(key), alg: Algorithm::ES256 })
        }
        _ => None,
    }
}

/// How the remote key source talks to the issuer.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// Per-request timeout for discovery and JWKS fetches.
    pub timeout: Duration,
    /// An unknown `kid` triggers at most one refetch per this interval.
    pub refetch_interval: Duration,
    /// Used when the JWKS response has no usable `Cache-Control: max-age`.
    pub default_max_age: Duration,
    /// Keys are cached at least this long, whatever the issuer says (`no-cache` included), so a
    /// misconfigured issuer cannot turn every request into a fetch.
    pub min_max_age: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            timeout: Duration::from_secs(5),
            refetch_interval: Duration::from_secs(30),
            default_max_age: Duration::from_secs(300),
            min_max_age: Duration::from_secs(30),
        }
    }
}

/// Keys are never cached longer than this, whatever the issuer says.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

struct KeyState {
    keys: KeyMap,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

pub(crate) enum Lookup {
    Found(VerificationKey),
    UnknownKid,
    /// No key could be obtained at all: the issuer is unreachable and nothing is cached.
    Unavailable(String),
}

/// Keys of a remote issuer, found through its discovery metadata.
pub(crate) struct RemoteKeys {
    issuer: String,
    /// Built on first use: making a client loads the system's root certificates, a cost that
    /// belongs to the first fetch, not to a Lambda's init.
    http: std::sync::OnceLock<reqwest::Client>,
    settings: JwksSettings,
    state: RwLock<KeyState>,
    /// Held while refreshing, so a burst of unknown `kid`s costs one fetch, not one each.
    refresh: Mutex<()>,
}

impl RemoteKeys {
    pub fn new(issuer: String, settings: JwksSettings) -> Self {
        RemoteKeys {
            issuer,
            http: std::sync::OnceLock::new(),
            settings,
            state: RwLock::new(KeyState {
                keys: KeyMap::new(),
                fresh_until: None,
                last_attempt: None,
                jwks_uri: None,
            }),
            refresh: Mutex::new(()),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder().timeout(self.settings.timeout).build().unwrap_or_default()
        })
    }

    pub async fn lookup(&self, kid: &str) -> Lookup {
        let stale = {
            let state = self.state.read().await;
            match state.keys.get(kid) {
                Some(key) if state.fresh_until.is_some_and(|t| Instant::now() < t) => {
                    return Lookup::Found(key.clone());
                }
                Some(key) => Some(key.clone()),
                None => None,
            }
        };
        let refresh_error = match stale {
            // A stale key still verifies: one caller refreshes, the others go on with it.
            Some(key) => match self.refresh.try_lock() {
                Ok(guard) => self.refresh_if_due(guard).await.err(),
                Err(_) => return Lookup::Found(key),
            },
            None => {
                let guard = self.refresh.lock().await;
                self.refresh_if_due(guard).await.err()
            }
        };
        let state = self.state.read().await;
        match state.keys.get(kid) {
            Some(key) => Lookup::Found(key.clone()),
            None if state.keys.is_empty() => Lookup::Unavailable(
                refresh_error.unwrap_or_else(|| "the issuer's key set is empty".into()),
            ),
            None => Lookup::UnknownKid,
        }
    }

    /// Refetches the key set unless that was tried within the refetch interval. The caller holds
    /// the refresh lock, so a burst of lookups costs one fetch.
    async fn refresh_if_due(&self, _guard: tokio::sync::MutexGuard<'_, ()>) -> Result<(), String> {
        let jwks_uri = {
            let state = self.state.read().await;
            // Whether keys are stale or a `kid` is unknown, the issuer is asked at most once per
            // interval: a flood of forged `kid`s must not become a flood of fetches.
            if state.last_attempt.is_some_and(|t| t.elapsed() < self.settings.refetch_interval) {
                return Ok(());
            }
            state.jwks_uri.clone()
        };
        self.state.write().await.last_attempt = Some(Instant::now());
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => self.discover().await?,
        };
        match self.fetch(&jwks_uri).await {
            Ok((keys, max_age)) => {
                let mut state = self.state.write().await;
                state.keys = keys;
                state.fresh_until = Some(Instant::now() + max_age);
                state.jwks_uri = Some(jwks_uri);
                Ok(())
            }
            Err(e) => {
                // Forget the URI so the next attempt rediscovers it: the issuer may have moved it.
                self.state.write().await.jwks_uri = None;
                tracing::warn!(issuer = %self.issuer, error = %e, "JWKS fetch failed; serving cached keys");
                Err(e)
            }
        }
    }

    /// Finds `jwks_uri` from the issuer's metadata: OAuth authorization server metadata first
    /// (what Okta custom authorization servers publish), then OpenID Connect discovery.
    async fn discover(&self) -> Result<String, String> {
        let mut last_error = String::new();
        for suffix in
            ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
        {
            let url = format!("{}{}", self.issuer, suffix);
            match self.fetch_metadata(&url).await {
                Ok(uri) => return Ok(uri),
                Err(e) => last_error = e,
            }
        }
        tracing::warn!(issuer = %self.issuer, error = %last_error, "issuer discovery failed");
        Err(last_error)
    }

    async fn fetch_metadata(&self, url: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let response = self.http().get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let metadata: Metadata =
            response.json().await.map_err(|e| format!("{url}: bad metadata: {e}"))?;
        if metadata.issuer != self.issuer {
            return Err(format!(
                "{url}: metadata names issuer {:?}, expected exactly {:?}",
                metadata.issuer, self.issuer
            ));
        }
        Ok(metadata.jwks_uri)
    }

    async fn fetch(&self, jwks_uri: &str) -> Result<(KeyMap, Duration), String> {
        let response =
            self.http().get(jwks_uri).send().await.map_err(|e| format!("{jwks_uri}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{jwks_uri}: HTTP {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.settings.default_max_age)
            .min(MAX_MAX_AGE)
            .max(self.settings.min_max_age);
        let body = response.bytes().await.map_err(|e| format!("{jwks_uri}: {e}"))?;
        let keys = parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))?;
        Ok((keys, max_age))
    }
}

/// `max-age` from a `Cache-Control` value; `no-store`/`no-cache` mean "as short as allowed".
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut result = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            result = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=3600, must-revalidate"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn jwks_keeps_only_usable_signature_keys() {
        let body = br#"{"keys":[
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"RSA","use":"sig","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"ok","use":"sig","alg":"RS256","n":"sXchDH1a","e":"AQAB"}
        ]}"#;
        let keys = parse_jwks(body).expect("a JWK set");
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert!(parse_jwks(b"{}").is_err());
    }
}
