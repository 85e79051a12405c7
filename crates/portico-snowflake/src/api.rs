//! Snowflake's SQL API v2: `POST /api/v2/statements` with a key-pair JWT, and `GET
//! /api/v2/statements/{handle}` while a statement runs (202).
//!
//! Every request carries a `requestId` the caller derives from what it sends, with
//! `retry=true`: Snowflake runs a repeated request id once, so resending after a lost answer
//! (a timeout, a 5xx, a dropped connection) cannot apply a statement twice. 429, 503 and 504
//! are retried with backoff and jitter; a 401 makes a fresh token once; 422 is the statement's
//! own error and final.

use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where and as whom statements run.
#[derive(Clone)]
pub struct Settings {
    /// The account identifier, e.g. `MYORG-MYACCOUNT`.
    pub account: String,
    pub user: String,
    /// The user's RSA private key, PKCS#8 PEM (`openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt`).
    pub private_key_pem: String,
    /// `https://<account>.snowflakecomputing.com` unless given (a stand-in, a private link).
    pub base_url: Option<String>,
    pub database: String,
    pub schema: String,
    pub warehouse: Option<String>,
    pub role: Option<String>,
}

impl Settings {
    /// The settings `snowflake.*` names; `None` when `snowflake.account` is unset, an error
    /// naming the key when one it needs is missing.
    pub fn from_config(
        config: &portico_config::SnowflakeConfig,
    ) -> Result<Option<Settings>, SqlError> {
        let Some(account) = config.account.clone() else {
            return Ok(None);
        };
        let missing = |key: &str| {
            SqlError::Key(format!(
                "snowflake.{key} (PORTICO_SNOWFLAKE_{}) is needed with snowflake.account",
                key.to_uppercase()
            ))
        };
        Ok(Some(Settings {
            account,
            user: config.user.clone().ok_or_else(|| missing("user"))?,
            private_key_pem: config
                .private_key
                .as_ref()
                .ok_or_else(|| missing("private_key"))?
                .expose()
                .to_string(),
            base_url: config.base_url.clone(),
            database: config.database.clone(),
            schema: config.schema.clone(),
            warehouse: config.warehouse.clone(),
            role: config.role.clone(),
        }))
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("account", &self.account)
            .field("user", &self.user)
            .field("private_key_pem", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("the Snowflake key is not usable: {0}")]
    Key(String),
    /// The statement failed (422): retrying sends the same error.
    #[error("Snowflake refused the statement: {0}")]
    Statement(String),
    /// Snowflake did not answer, or answered "later" past the retries: try the batch again.
    #[error("Snowflake is unavailable: {0}")]
    Unavailable(String),
    #[error("Snowflake answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// A statement's answer: its rows, each value as text (`None` for SQL NULL).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default, rename = "statementHandle")]
    handle: Option<String>,
    #[serde(default)]
    data: Option<Vec<Vec<Option<String>>>>,
    #[serde(default, rename = "resultSetMetaData")]
    meta: Option<Meta>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default, rename = "rowType")]
    row_type: Vec<RowType>,
}

#[derive(Deserialize)]
struct RowType {
    name: String,
}

/// Tries per request before it is "unavailable".
const ATTEMPTS: u32 = 6;
/// How long a running statement is waited for.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// A token lives this long (Snowflake allows at most an hour); it is renewed a minute early.
const TOKEN_TTL_SECS: u64 = 3_000;

pub struct SqlApi {
    http: reqwest::Client,
    settings: Settings,
    base_url: String,
    key: aws_lc_rs::rsa::KeyPair,
    /// `ACCOUNT.USER.SHA256:<fingerprint>`.
    issuer: String,
    token: Mutex<Option<(String, u64)>>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The RSA key pair of a PKCS#8 PEM.
fn key_pair(private_key_pem: &str) -> Result<aws_lc_rs::rsa::KeyPair, SqlError> {
    let body: String = private_key_pem.trim().lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| SqlError::Key(format!("the PEM does not decode: {e}")))?;
    aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
        .map_err(|e| SqlError::Key(format!("not an RSA PKCS#8 key: {e}")))
}

/// SHA-256 of the key's public half (X.509 SubjectPublicKeyInfo DER), base64: how Snowflake
/// names a key (`DESC USER` shows it as `RSA_PUBLIC_KEY_FP`).
pub fn fingerprint(private_key_pem: &str) -> Result<String, SqlError> {
    let pair = key_pair(private_key_pem)?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| SqlError::Key("cannot encode the public key".into()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

impl SqlApi {
    pub fn new(settings: Settings) -> Result<SqlApi, SqlError> {
        let key = key_pair(&settings.private_key_pem)?;
        let account = settings.account.to_uppercase();
        let issuer = format!(
            "{account}.{}.SHA256:{}",
            settings.user.to_uppercase(),
            fingerprint(&settings.private_key_pem)?
        );
        let base_url = settings
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}.snowflakecomputing.com", settings.account))
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SqlError::Unavailable(e.to_string()))?;
        Ok(SqlApi { http, settings, base_url, key, issuer, token: Mutex::new(None) })
    }

    /// The key-pair token: the cached one while it has a minute left (unless `fresh`), else a
    /// new one.
    fn jwt(&self, fresh: bool) -> Result<String, SqlError> {
        let now = now_secs();
        let mut cached =
            self.token.lock().map_err(|_| SqlError::Key("the token cache is poisoned".into()))?;
        if !fresh && let Some((token, _)) = cached.as_ref().filter(|(_, exp)| *exp > now + 60) {
            return Ok(token.clone());
        }
        let exp = now + TOKEN_TTL_SECS;
        let claims = json!({
            "iss": self.issuer,
            "sub": format!("{}.{}", self.settings.account.to_uppercase(), self.settings.user.to_uppercase()),
            "iat": now,
            "exp": exp,
        });
        let token = self.sign(&claims)?;
        *cached = Some((token.clone(), exp));
        Ok(token)
    }

    /// An RS256 JWT of `claims`.
    fn sign(&self, claims: &Value) -> Result<String, SqlError> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SqlError::Key("signing the token failed".into()))?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    /// Runs one statement with text bindings (`?` in order), as request `request_id`.
    pub async fn execute(
        &self,
        statement: &str,
        bindings: &[String],
        request_id: uuid::Uuid,
    ) -> Result<Answer, SqlError> {
        let bindings: serde_json::Map<String, Value> = bindings
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1).to_string(), json!({"type": "TEXT", "value": v})))
            .collect();
        let mut body = json!({
            "statement": statement,
            "timeout": STATEMENT_TIMEOUT.as_secs(),
            "database": self.settings.database,
            "schema": self.settings.schema,
            "bindings": bindings,
        });
        if let Some(w) = &self.settings.warehouse {
            body["warehouse"] = json!(w);
        }
        if let Some(r) = &self.settings.role {
            body["role"] = json!(r);
        }
        // The request id is a UUID: nothing in the query needs escaping.
        let url = format!("{}/api/v2/statements?requestId={request_id}&retry=true", self.base_url);
        let mut fresh_token = false;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let request = self.http.post(&url).json(&body);
            let sent = self.authorized(request, fresh_token)?.send().await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            match status {
                200 => return parse(&text),
                202 => return self.wait(&text).await,
                401 if !fresh_token => {
                    fresh_token = true;
                    last = text;
                }
                422 => return Err(SqlError::Statement(message(&text))),
                408 | 429 | 500 | 502 | 503 | 504 => last = format!("{status}: {}", message(&text)),
                _ => return Err(SqlError::Refused { status, body: message(&text) }),
            }
        }
        Err(SqlError::Unavailable(last))
    }

    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        fresh: bool,
    ) -> Result<reqwest::RequestBuilder, SqlError> {
        Ok(request
            .bearer_auth(self.jwt(fresh)?)
            .header("X-Snowflake-Authorization-Token-Type", "KEYPAIR_JWT")
            .header("Accept", "application/json"))
    }

    /// Polls a running statement until it ends.
    async fn wait(&self, accepted: &str) -> Result<Answer, SqlError> {
        let body: Body = serde_json::from_str(accepted)
            .map_err(|e| SqlError::Unavailable(format!("a 202 without a handle: {e}")))?;
        let handle =
            body.handle.ok_or_else(|| SqlError::Unavailable("a 202 without a handle".into()))?;
        let url = format!("{}/api/v2/statements/{handle}", self.base_url);
        let deadline = tokio::time::Instant::now() + STATEMENT_TIMEOUT;
        let mut delay = Duration::from_millis(100);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let Ok(response) = self.authorized(self.http.get(&url), false)?.send().await else {
                continue;
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            match status {
                200 => return parse(&text),
                202 | 429 | 503 | 504 => {}
                422 => return Err(SqlError::Statement(message(&text))),
                _ => return Err(SqlError::Refused { status, body: message(&text) }),
            }
        }
        Err(SqlError::Unavailable(format!("statement {handle} still running")))
    }
}

fn parse(text: &str) -> Result<Answer, SqlError> {
    let body: Body = serde_json::from_str(text)
        .map_err(|e| SqlError::Unavailable(format!("an answer that does not decode: {e}")))?;
    Ok(Answer {
        columns: body
            .meta
            .map(|m| m.row_type.into_iter().map(|r| r.name).collect())
            .unwrap_or_default(),
        rows: body.data.unwrap_or_default(),
    })
}

fn message(text: &str) -> String {
    serde_json::from_str::<Body>(text)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| text.chars().take(500).collect())
}

/// 200 ms doubling, at most 5 s, with up to half of it added at random.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200) * 2u32.saturating_pow(attempt - 1);
    let base = base.min(Duration::from_secs(5));
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}
