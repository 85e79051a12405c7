//! The token verifier: Okta's access-token rules, applied the same way at every door.
//!
//! Checks, in order: size; header (`alg` in the configured set, `kid` present, no `crit`); the
//! signature with the issuer's key for that `kid` (which must be meant for that `alg`); `iss`
//! exactly; `aud`; `exp`, `nbf` and `iat` with a small leeway. Tokens that pass are cached until
//! they expire, so a hot path does not verify the same RSA signature again.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::jwks::{JwksSettings, KeyMap, Lookup, RemoteKeys, parse_jwks};
use crate::now_secs;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Verified tokens remembered at most; past that the cache is pruned.
const TOKEN_CACHE_CAPACITY: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("token header has no `kid`")]
    MissingKid,
    #[error("token header marks {0:?} critical, which is not understood")]
    Critical(String),
    #[error("token is signed with an unknown key `{0}`")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token issuer is not the configured issuer")]
    Issuer,
    #[error("token audience is not the configured audience")]
    Audience,
    #[error("token is missing the claim `{0}`")]
    MissingClaim(String),
    /// The issuer's keys cannot be had and none are cached: not the caller's fault.
    #[error("signing keys are unavailable: {0}")]
    KeysUnavailable(String),
    /// A valid token without a scope this API requires: the caller is known but not allowed
    /// (OAuth's `insufficient_scope`: 403, not 401).
    #[error("token lacks the required scope `{scope}`")]
    InsufficientScope { sub: String, scope: String },
}

impl AuthError {
    /// True when the caller can do nothing about it and should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthError::KeysUnavailable(_))
    }

    pub fn is_insufficient_scope(&self) -> bool {
        matches!(self, AuthError::InsufficientScope { .. })
    }
}

/// What a verified access token says. Field names follow Okta's access tokens; a missing
/// optional claim is `None` (serde's rule for `Option`), a missing list is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub exp: u64,
    pub iat: Option<u64>,
    pub nbf: Option<u64>,
    pub jti: Option<String>,
    /// Okta's user id.
    pub uid: Option<String>,
    /// The OAuth client the token was issued to.
    pub cid: Option<String>,
    #[serde(default)]
    pub scp: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub email: Option<String>,
}

impl Claims {
    /// When the token was issued (its expiry, for a token without `iat`): what names the one
    /// sign-in a token stands for, however many requests and hosts see it.
    pub fn issued(&self) -> u64 {
        self.iat.unwrap_or(self.exp)
    }
}

/// What the verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: String,
    /// Always contains RS256; ES256 only when configured.
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    /// Scopes every token must carry in `scp` (none by default).
    pub required_scopes: Vec<String>,
}

impl VerifierSettings {
    /// Settings from configuration names; unknown algorithm names are ignored (config validation
    /// has already rejected them), and RS256 is always accepted.
    pub fn new(issuer: &str, audience: &str, algorithms: &[String], leeway_secs: u64) -> Self {
        let mut algs = vec![Algorithm::RS256];
        if algorithms.iter().any(|a| a == "ES256") {
            algs.push(Algorithm::ES256);
        }
        VerifierSettings {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            algorithms: algs,
            leeway_secs: leeway_secs.min(120),
            required_scopes: Vec::new(),
        }
    }

    /// Requires every token to carry `scopes`.
    pub fn require_scopes(mut self, scopes: &[String]) -> Self {
        self.required_scopes = scopes.to_vec();
        self
    }
}

enum KeySource {
    /// Keys known up front: the local dev issuer's.
    Static(KeyMap),
    /// Keys of a remote issuer, found by discovery.
    Remote(Box<RemoteKeys>),
}

pub struct Verifier {
    settings: VerifierSettings,
    keys: KeySource,
    validation: HashMap<Algorithm, Validation>,
    cache: Mutex<HashMap<[u8; 32], Claims>>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl Verifier {
    /// A verifier for tokens signed by keys in `jwks` (a JWK set document).
    pub fn with_jwks(settings: VerifierSettings, jwks: &[u8]) -> Result<Self, String> {
        let keys = parse_jwks(jwks)?;
        Ok(Self::new(settings, KeySource::Static(keys)))
    }

    /// A verifier that finds the issuer's keys by discovery, lazily, on first use.
    pub fn with_discovery(settings: VerifierSettings, jwks: JwksSettings) -> Self {
        let keys = KeySource::Remote(Box::new(RemoteKeys::new(settings.issuer.clone(), jwks)));
        Self::new(settings, keys)
    }

    fn new(settings: VerifierSettings, keys: KeySource) -> Self {
        let validation = settings
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = settings.leeway_secs;
                v.validate_nbf = true;
                v.set_issuer(&[&settings.issuer]);
                v.set_audience(&[&settings.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                (*alg, v)
            })
            .collect();
        Verifier { settings, keys, validation, cache: Mutex::new(HashMap::new()) }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_seen(token).await.map(|(claims, _)| claims)
    }

    /// As `verify`, and whether this verifier checked the token now rather than remembering it
    /// (the first use of a token here: what the hosts count as a sign-in).
    pub async fn verify_seen(&self, token: &str) -> Result<(Claims, bool), AuthError> {
        let (claims, fresh) = self.verify_token(token).await?;
        if let Some(missing) =
            self.settings.required_scopes.iter().find(|scope| !claims.scp.contains(scope))
        {
            return Err(AuthError::InsufficientScope { sub: claims.sub, scope: missing.clone() });
        }
        Ok((claims, fresh))
    }

    /// The token's claims if it is genuine and current, whatever its scopes.
    async fn verify_token(&self, token: &str) -> Result<(Claims, bool), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let fingerprint = fingerprint(token);
        let now = now_secs();
        if let Some(claims) = self.cached(&fingerprint, now) {
            return Ok((claims, false));
        }

        let (alg, kid) = self.check_header(token)?;
        let key = match &self.keys {
            KeySource::Static(keys) => {
                keys.get(&kid).cloned().ok_or_else(|| AuthError::UnknownKey(kid.clone()))?
            }
            KeySource::Remote(remote) => match remote.lookup(&kid).await {
                Lookup::Found(key) => key,
                Lookup::UnknownKid => return Err(AuthError::UnknownKey(kid)),
                Lookup::Unavailable(why) => return Err(AuthError::KeysUnavailable(why)),
            },
        };
        // A key is bound to one algorithm: an RSA key never verifies an ES256 or HS256 token.
        if key.alg != alg {
            return Err(AuthError::Algorithm(format!("{alg:?} with a {:?} key", key.alg)));
        }
        let validation =
            self.validation.get(&alg).ok_or_else(|| AuthError::Algorithm(format!("{alg:?}")))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, validation).map_err(map_jwt_error)?;
        let claims = data.claims;
        if claims.iat.is_some_and(|iat| iat > now + self.settings.leeway_secs) {
            return Err(AuthError::IssuedInFuture);
        }
        if claims.sub.trim().is_empty() {
            return Err(AuthError::MissingClaim("sub".into()));
        }
        self.remember(fingerprint, &claims, now);
        Ok((claims, true))
    }

    fn check_header(&self, token: &str) -> Result<(Algorithm, String), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts".into()));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
        let header: Header = serde_json::from_slice(&bytes)
            .map_err(|_| AuthError::Malformed("header is not a JSON object".into()))?;
        if let Some(crit) = header.crit {
            return Err(AuthError::Critical(crit.to_string()));
        }
        let alg_name =
            header.alg.ok_or_else(|| AuthError::Malformed("header has no `alg`".into()))?;
        let alg = match alg_name.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => return Err(AuthError::Algorithm(alg_name)),
        };
        if !self.settings.algorithms.contains(&alg) {
            return Err(AuthError::Algorithm(alg_name));
        }
        let kid = header.kid.filter(|k| !k.is_empty()).ok_or(AuthError::MissingKid)?;
        Ok((alg, kid))
    }

    fn cached(&self, fingerprint: &[u8; 32], now: u64) -> Option<Claims> {
        let cache = self.cache.lock().ok()?;
        let claims = cache.get(fingerprint)?;
        (now <= claims.exp + self.settings.leeway_secs).then(|| claims.clone())
    }

    fn remember(&self, fingerprint: [u8; 32], claims: &Claims, now: u64) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= TOKEN_CACHE_CAPACITY {
            let leeway = self.settings.leeway_secs;
            cache.retain(|_, c| now <= c.exp + leeway);
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                // Still full of live tokens: start over rather than grow without bound.
                cache.clear();
            }
        }
        cache.insert(fingerprint, claims.clone());
    }
}

fn fingerprint(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm => AuthError::Algorithm("mismatch".into()),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const ISSUER: &str = "https://id.example/oauth2/default";

    /// An ES256 key, its JWK set, and a signed token with `claims`.
    fn es256() -> (Vec<u8>, String) {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
        let point = key.public_key().as_ref().to_vec(); // 0x04 || x || y
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let now = crate::now_secs();
        let claims = json!({"iss": ISSUER, "aud": "api://default", "sub": "ec-user", "iat": now, "exp": now + 300});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "ec1"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            key.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).expect("signature");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        (jwks.to_string().into_bytes(), token)
    }

    #[tokio::test]
    async fn es256_only_when_configured() {
        let (jwks, token) = es256();
        let rs_only = Verifier::with_jwks(
            VerifierSettings::new(ISSUER, "api://default", &["RS256".into()], 60),
            &jwks,
        )
        .expect("verifier");
        assert!(matches!(rs_only.verify(&token).await, Err(AuthError::Algorithm(_))));
        let with_es = Verifier::with_jwks(
            VerifierSettings::new(ISSUER, "api://default", &["RS256".into(), "ES256".into()], 60),
            &jwks,
        )
        .expect("verifier");
        let claims = with_es.verify(&token).await.expect("ES256 verifies");
        assert_eq!(claims.sub, "ec-user");
    }

    #[tokio::test]
    async fn cached_tokens_still_expire() {
        let (jwks, _) = es256();
        let verifier = Verifier::with_jwks(
            VerifierSettings::new(ISSUER, "api://default", &["ES256".into()], 0),
            &jwks,
        )
        .expect("verifier");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "s".into(),
            exp: crate::now_secs() - 1,
            iat: None,
            nbf: None,
            jti: None,
            uid: None,
            cid: None,
            scp: vec![],
            groups: vec![],
            email: None,
        };
        let fp = fingerprint("some.token.value");
        verifier.remember(fp, &claims, 0);
        assert!(verifier.cached(&fp, crate::now_secs()).is_none());
    }
}
