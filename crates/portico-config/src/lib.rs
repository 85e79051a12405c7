//! Portico's configuration, layered: built-in defaults, then an optional TOML file, then
//! `PORTICO_*` environment variables. Every key has a default, so no file is needed; every value is
//! checked at startup so a typo is an error message, not a surprise later.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use smart_default::SmartDefault;

mod layers;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A value that must never be printed or logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// Every setting Portico has, declared once: each field carries its default; its TOML key is its
/// path (`http.addr`) and its environment variable is derived from that path
/// (`PORTICO_HTTP_ADDR`; see `layers`). Secrets are `Secret`s, which never print.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where all local state lives: SQLite files, objects, the dev issuer key.
    #[default(_code = "PathBuf::from(\"./portico-data\")")]
    pub data_dir: PathBuf,
    /// The name of this deployment's region; it is recorded on every account number it issues.
    #[default = "local"]
    pub region: String,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub tls: TlsConfig,
    pub https: HttpsConfig,
    pub mqtts: MqttsConfig,
    pub wss: WssConfig,
    pub metrics: MetricsConfig,
    pub auth: AuthConfig,
    pub sequence: SequenceConfig,
    pub documents: DocumentsConfig,
    pub worker: WorkerConfig,
    pub sendgrid: SendgridConfig,
    pub log: LogConfig,
    pub logs: LogsConfig,
    pub snowflake: SnowflakeConfig,
    /// Which adapters stand behind the ports: `local` (SQLite, files, the embedded broker) or
    /// `aws` (DynamoDB, S3, SQS, IoT Core; needs a build with the `aws` feature).
    pub backend: Backend,
    pub aws: AwsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SmartDefault)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Local,
    Aws,
}

/// Where the AWS resources are (used with `backend = "aws"`). Credentials come from the usual
/// AWS chain (environment, container, instance metadata), never from this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// The AWS region (`AWS_REGION`, which Lambda sets).
    pub region: Option<String>,
    /// Endpoint for every AWS service (`AWS_ENDPOINT_URL`), e.g. a local moto; unset = AWS.
    pub endpoint_url: Option<String>,
    /// AWS IoT's data endpoint for this account (`aws iot describe-endpoint --endpoint-type
    /// iot:Data-ATS`); unset = the SDK's default for the region.
    pub iot_endpoint: Option<String>,
    /// The Neptune cluster endpoint of the traceability graph
    /// (`https://<cluster>.cluster-<id>.<region>.neptune.amazonaws.com:8182`); unset = no graph,
    /// and lot traces answer 503.
    pub neptune_endpoint: Option<String>,
    /// The DynamoDB table (global table when several regions run).
    #[default = "portico"]
    pub table: String,
    /// The Kinesis stream the `stream-poller` puts the graph's elements on, and the `kinesis`
    /// handler loads into the warehouse.
    #[default = "portico-warehouse"]
    pub warehouse_stream: String,
    /// The S3 bucket for uploaded documents.
    #[default = "portico-documents"]
    pub bucket: String,
    /// Prefix of SQS queue names: queue `document-uploads` is `<prefix>document-uploads`.
    #[default = "portico-"]
    pub queue_prefix: String,
    /// Account numbers claimed per DynamoDB write. 1 keeps numbers ascending across every
    /// instance of a region; larger blocks save writes, ascending per instance only.
    #[default = 1]
    pub sequence_block: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsConfig {
    /// How long upload and download links stay valid, in seconds.
    #[default = 900]
    pub upload_url_ttl_secs: u64,
    /// The largest file accepted, in bytes.
    #[default(1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// The manufacturer's name printed on Certificates of Analysis.
    #[default = "Portico Life Sciences"]
    pub certificate_issuer: String,
}

/// The queue workers (upload events); `portico serve` runs them unless disabled, and
/// `portico worker` runs only them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Whether `portico serve` runs the workers too.
    #[default = true]
    pub enabled: bool,
    /// Messages processed at once.
    #[default = 2]
    pub concurrency: usize,
    /// How long a received message stays hidden while a worker holds it (extended while work
    /// goes on); after that another worker gets it.
    #[default = 30]
    pub visibility_timeout_secs: u64,
    /// Receives before a message goes to the dead-letter queue.
    #[default = 5]
    pub max_receives: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    #[default = "127.0.0.1:8080"]
    pub addr: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[default(64 * 1024)]
    pub body_limit_bytes: usize,
    /// A request that takes longer is answered 503 and its work cancelled.
    #[default = 30]
    pub request_timeout_secs: u64,
    /// The external base URL (behind a proxy or load balancer) that every absolute link uses,
    /// e.g. `https://portal.example.com`; unset, links use the Host a loopback caller sent.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the API (CORS), e.g. `https://portal.example.com`; `*`
    /// allows any origin (never with credentials). Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    #[default = "127.0.0.1:1883"]
    pub addr: String,
    /// WebSocket listener; clients connect on the path `/mqtt`.
    #[default = "127.0.0.1:8083"]
    pub ws_addr: String,
    /// A TOML or JSON rules file replacing the built-in rules.
    pub rules_file: Option<PathBuf>,
    /// A TOML policy file replacing the built-in policy.
    pub policy_file: Option<PathBuf>,
    /// Largest MQTT packet accepted, in bytes.
    #[default(128 * 1024)]
    pub max_packet_bytes: u32,
    /// Unacknowledged QoS 1/2 messages per client.
    #[default = 32]
    pub max_inflight: u16,
    /// Deepest topic accepted, in levels.
    #[default = 8]
    pub max_topic_levels: usize,
    /// Publishes per second one identity may sustain (all its connections together); more are
    /// dropped.
    #[default = 100]
    pub publish_rate_per_sec: u32,
    /// Publishes one identity may send in a burst.
    #[default = 200]
    pub publish_burst: u32,
    /// Retained messages one identity (a user or an instrument) may hold.
    #[default = 100]
    pub retained_per_identity: usize,
    /// Bytes of retained payload one identity may hold.
    #[default(1024 * 1024)]
    pub retained_bytes_per_identity: usize,
    /// Retained messages the broker holds in all.
    #[default = 100_000]
    pub retained_max: usize,
    /// Bytes of retained payload the broker holds in all.
    #[default(256 * 1024 * 1024)]
    pub retained_max_bytes: usize,
}

/// TLS on the local host's listeners (HTTPS, MQTTS, MQTT over secure WebSocket). With `cert` and
/// `key` set, the TLS listeners run beside the plaintext ones, or alone with `plaintext = false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then its chain (an ACME client's `fullchain.pem`).
    pub cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: Option<PathBuf>,
    /// Whether the plaintext listeners (`http.addr`, `mqtt.addr`, `mqtt.ws_addr`) run too.
    #[default = true]
    pub plaintext: bool,
    /// How often the certificate and key files are read again; a changed pair is used from then
    /// on, without a restart.
    #[default = 10]
    pub reload_secs: u64,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is configured.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// The HTTPS listener (used when TLS is configured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    #[default = "127.0.0.1:8443"]
    pub addr: String,
}

/// The MQTT over TLS listener (used when TLS is configured); 8883 is MQTT's TLS port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct MqttsConfig {
    #[default = "127.0.0.1:8883"]
    pub addr: String,
}

/// The MQTT over secure WebSocket listener (used when TLS is configured); clients connect on
/// the path `/mqtt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct WssConfig {
    #[default = "127.0.0.1:8084"]
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus text exposition at `/metrics`.
    #[default = "127.0.0.1:9464"]
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// An Okta custom authorization server issuer; unset means Portico's own dev issuer.
    pub issuer: Option<String>,
    #[default = "api://default"]
    pub audience: String,
    #[default = "portico-admins"]
    pub admin_group: String,
    #[default = "portico-support"]
    pub support_group: String,
    /// Accepted signature algorithms: `RS256` always; `ES256` only when listed here.
    #[default(_code = "vec![\"RS256\".to_string()]")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 120).
    #[default = 60]
    pub leeway_secs: u64,
    /// Scopes every access token must carry (`scp`); a valid token without them is refused as
    /// `insufficient_scope` (HTTP 403, MQTT "not authorized", a Deny policy at API Gateway).
    pub required_scopes: Vec<String>,
}

/// The account-number range this region may issue. Regions that share accounts must be given
/// disjoint ranges; see the sequence generator's contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceConfig {
    #[default = 100_000]
    pub account_number_start: u64,
    /// Exclusive end of the range.
    #[default = 1_000_000_000_000]
    pub account_number_end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct SendgridConfig {
    /// Unset: emails stay in the local outbox.
    pub api_key: Option<Secret>,
    #[default = "https://api.sendgrid.com"]
    pub base_url: String,
    #[default = "no-reply@portico.example"]
    pub from_email: String,
    #[default = "Portico"]
    pub from_name: String,
    /// First retry delay after a 5xx or no answer; doubles per attempt (with jitter).
    #[default = 2000]
    pub retry_base_ms: u64,
    /// Attempts before an e-mail is given up as failed.
    #[default = 8]
    pub max_attempts: u32,
    /// How long one send may take.
    #[default = 10]
    pub timeout_secs: u64,
}

/// The local log store: every line `serve` and `worker` log, kept in `<data_dir>/logs` and
/// searched with `portico logs` and `GET /v1/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Keep the lines (stdout has them either way).
    #[default = true]
    pub store: bool,
    /// How long and how much: an age and a size, e.g. `7d,1GiB` (`12h`, `,500MB`).
    #[default = "7d,1GiB"]
    pub retention: String,
    /// OpenSearch (or Elasticsearch) the `logs` Lambda handler ships CloudWatch Logs to, e.g.
    /// `https://search-portico.eu-central-1.es.amazonaws.com`; unset = not shipped.
    pub opensearch_url: Option<String>,
    /// A self-managed cluster's user (basic auth).
    pub opensearch_username: Option<String>,
    pub opensearch_password: Option<Secret>,
    /// Daily indexes are `<prefix>-YYYY.MM.DD`.
    #[default = "portico-logs"]
    pub opensearch_index_prefix: String,
}

/// The warehouse on Snowflake, which the `kinesis` Lambda handler loads (the AWS host; the local
/// host keeps `<data_dir>/warehouse.db`). Unset `account` = not loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct SnowflakeConfig {
    /// The account identifier, e.g. `MYORG-MYACCOUNT`.
    pub account: Option<String>,
    /// The user the loader signs in as, with key-pair authentication.
    pub user: Option<String>,
    /// That user's RSA private key, PKCS#8 PEM (in production from Secrets Manager).
    pub private_key: Option<Secret>,
    #[default = "PORTICO"]
    pub database: String,
    #[default = "WAREHOUSE"]
    pub schema: String,
    /// The virtual warehouse statements run on (the user's default when unset).
    pub warehouse: Option<String>,
    pub role: Option<String>,
    /// `https://<account>.snowflakecomputing.com` when unset.
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SmartDefault)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `portico_http=debug,info`.
    #[default = "info"]
    pub filter: String,
    /// `auto` (readable lines at a terminal, JSON lines otherwise), `json` or `text`.
    #[default = "auto"]
    pub format: String,
}

impl Config {
    /// Loads defaults, then `file` (if any), then the given environment, and validates the result.
    /// An unknown key in the file, or an unknown `PORTICO_*` variable, is an error that names the
    /// closest known one.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut layers = layers::Layers::new()?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            layers
                .merge_file(&text)
                .map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        }
        layers.merge_env(env)?;
        let mut config = layers.finish()?;
        config.normalize();
        config.validate()?;
        Ok(config)
    }

    /// Loads from the process environment: `PORTICO_CONFIG` names the optional file unless
    /// `file` is given.
    pub fn from_process_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| layers::is_read(k)).collect();
        let from_env = env.get("PORTICO_CONFIG").map(PathBuf::from);
        Self::load(file.or(from_env.as_deref()), &env)
    }

    /// One spelling for values that have several: base URLs and origins without a trailing `/`.
    fn normalize(&mut self) {
        if let Some(url) = &mut self.http.public_url {
            *url = url.trim_end_matches('/').to_string();
        }
        for origin in &mut self.http.cors_origins {
            *origin = origin.trim_end_matches('/').to_string();
        }
    }

    /// Checks every value that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (name, addr) in [
            ("http.addr", &self.http.addr),
            ("mqtt.addr", &self.mqtt.addr),
            ("mqtt.ws_addr", &self.mqtt.ws_addr),
            ("metrics.addr", &self.metrics.addr),
            ("https.addr", &self.https.addr),
            ("mqtts.addr", &self.mqtts.addr),
            ("wss.addr", &self.wss.addr),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                return invalid(format!(
                    "{name} = {addr:?} is not an IP address with a port, e.g. 127.0.0.1:8080"
                ));
            }
        }
        if !["auto", "json", "text"].contains(&self.log.format.as_str()) {
            return invalid(format!(
                "log.format = {:?} must be auto, json or text",
                self.log.format
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must not be empty".into());
        }
        if self.region.is_empty()
            || !self.region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(format!(
                "region = {:?} must be letters, digits, '-' or '_'",
                self.region
            ));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) | (None, Some(_)) => {
                return invalid("tls.cert and tls.key go together: set both, or neither".into());
            }
            (None, None) if !self.tls.plaintext => {
                return invalid(
                    "tls.plaintext = false needs tls.cert and tls.key: there would be no listener"
                        .into(),
                );
            }
            _ => {}
        }
        if self.tls.reload_secs == 0 {
            return invalid("tls.reload_secs must be at least 1".into());
        }
        if let Some(url) = &self.http.public_url
            && !is_base_url(url)
        {
            return invalid(format!(
                "http.public_url = {url:?} must be an http(s) URL with a host, and no query or fragment"
            ));
        }
        for origin in &self.http.cors_origins {
            let wildcard_alone = origin == "*" && self.http.cors_origins.len() == 1;
            if !(wildcard_alone || is_origin(origin)) {
                return invalid(format!(
                    "http.cors_origins: {origin:?} must be an origin (scheme://host[:port], no path), or `*` alone"
                ));
            }
        }
        if self.mqtt.max_packet_bytes < 1024
            || self.mqtt.max_inflight == 0
            || self.mqtt.max_topic_levels == 0
            || self.mqtt.publish_rate_per_sec == 0
            || self.mqtt.publish_burst == 0
        {
            return invalid("mqtt limits must be positive (max_packet_bytes at least 1024)".into());
        }
        if self.backend == Backend::Aws {
            if self.aws.region.is_none() {
                return invalid("backend = \"aws\" needs aws.region (or AWS_REGION)".into());
            }
            if self.aws.table.is_empty() || self.aws.bucket.is_empty() {
                return invalid("backend = \"aws\" needs aws.table and aws.bucket".into());
            }
            if self.aws.sequence_block == 0 {
                return invalid("aws.sequence_block must be at least 1".into());
            }
        }
        if self.documents.upload_url_ttl_secs == 0 || self.documents.max_upload_bytes == 0 {
            return invalid(
                "documents: upload_url_ttl_secs and max_upload_bytes must be positive".into(),
            );
        }
        if self.worker.concurrency == 0
            || self.worker.visibility_timeout_secs == 0
            || self.worker.max_receives == 0
        {
            return invalid(
                "worker: concurrency, visibility_timeout_secs and max_receives must be positive"
                    .into(),
            );
        }
        if self.http.body_limit_bytes == 0 {
            return invalid("http.body_limit_bytes must be positive".into());
        }
        if self.http.request_timeout_secs == 0 {
            return invalid("http.request_timeout_secs must be positive".into());
        }
        if let Some(issuer) = &self.auth.issuer {
            let local = issuer.starts_with("http://127.0.0.1")
                || issuer.starts_with("http://localhost")
                || issuer.starts_with("http://[::1]");
            if !(issuer.starts_with("https://") || local) {
                return invalid(format!(
                    "auth.issuer = {issuer:?} must be an https:// URL (http:// only on loopback)"
                ));
            }
            if issuer.ends_with('/') {
                return invalid(format!(
                    "auth.issuer = {issuer:?} must not end with '/': it is compared exactly with the token's `iss`"
                ));
            }
        }
        if self.auth.audience.is_empty() {
            return invalid("auth.audience must not be empty".into());
        }
        if !self.auth.algorithms.iter().any(|a| a == "RS256") {
            return invalid("auth.algorithms must include RS256".into());
        }
        if let Some(a) =
            self.auth.algorithms.iter().find(|a| !matches!(a.as_str(), "RS256" | "ES256"))
        {
            return invalid(format!("auth.algorithms: {a:?} is not supported (RS256, ES256)"));
        }
        if self.auth.leeway_secs > 120 {
            return invalid("auth.leeway_secs must be at most 120".into());
        }
        if self.sequence.account_number_start == 0
            || self.sequence.account_number_start >= self.sequence.account_number_end
        {
            return invalid(
                "sequence: account_number_start must be positive and below account_number_end"
                    .into(),
            );
        }
        if self.sendgrid.max_attempts == 0 || self.sendgrid.timeout_secs == 0 {
            return invalid("sendgrid: max_attempts and timeout_secs must be positive".into());
        }
        if !self.sendgrid.from_email.contains('@')
            || self.sendgrid.from_email.contains(['\r', '\n'])
        {
            return invalid("sendgrid.from_email must be an e-mail address".into());
        }
        if !self.sendgrid.base_url.starts_with("http://")
            && !self.sendgrid.base_url.starts_with("https://")
        {
            return invalid("sendgrid.base_url must be an http(s) URL".into());
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        let json = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) | Err(_) => return "# cannot print configuration\n".into(),
        };
        let mut out = String::new();
        let mut sections = Vec::new();
        for (key, value) in &json {
            match value {
                serde_json::Value::Object(section) => sections.push((key, section)),
                value => out.push_str(&toml_line(key, value)),
            }
        }
        for (name, section) in sections {
            out.push_str(&format!("\n[{name}]\n"));
            for (key, value) in section {
                out.push_str(&toml_line(key, value));
            }
        }
        out
    }
}

/// `key = value`, or for a key without a value `# key =` (unset), so every key is listed.
fn toml_line(key: &str, value: &serde_json::Value) -> String {
    if value.is_null() {
        return format!("# {key} =  (unset)\n");
    }
    match toml::Value::try_from(value) {
        Ok(v) => format!("{key} = {v}\n"),
        Err(_) => format!("# {key} = (cannot print)\n"),
    }
}

/// `http(s)://host[:port][/path]`, without query or fragment.
fn is_base_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !url.contains(['?', '#', ' ', '\\'])
        && !url.chars().any(|c| c.is_control())
        && !host.contains('@')
}

/// `http(s)://host[:port]`: a base URL with no path.
fn is_origin(origin: &str) -> bool {
    is_base_url(origin) && origin.split_once("://").is_some_and(|(_, rest)| !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(None, &BTreeMap::new()).expect("defaults are valid");
        assert_eq!(c.http.addr, "127.0.0.1:8080");
        assert_eq!(c.auth.audience, "api://default");
        assert!(c.auth.issuer.is_none());
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, "[http]\naddr = \"127.0.0.1:9000\"\n[auth]\nadmin_group = \"ops\"\n")
            .expect("write");
        let c = Config::load(Some(&path), &env(&[("PORTICO_HTTP_ADDR", "127.0.0.1:0")]))
            .expect("valid");
        assert_eq!(c.http.addr, "127.0.0.1:0");
        assert_eq!(c.auth.admin_group, "ops");
    }

    #[test]
    fn the_aws_backend_reads_the_standard_aws_variables() {
        let c = Config::load(
            None,
            &env(&[
                ("PORTICO_BACKEND", "aws"),
                ("AWS_REGION", "eu-central-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("PORTICO_AWS_TABLE", "portico-prod"),
                ("PORTICO_AWS_SEQUENCE_BLOCK", "10"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.backend, Backend::Aws);
        assert_eq!(c.aws.region.as_deref(), Some("eu-central-1"));
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!((c.aws.table.as_str(), c.aws.sequence_block), ("portico-prod", 10));
        assert_eq!(c.aws.bucket, "portico-documents");
        let c = Config::load(
            None,
            &env(&[("PORTICO_AUTH_REQUIRED_SCOPES", "portico.api, portico.admin")]),
        )
        .expect("valid");
        assert_eq!(c.auth.required_scopes, vec!["portico.api", "portico.admin"]);
        // PORTICO_AWS_REGION wins over AWS_REGION.
        let c = Config::load(
            None,
            &env(&[
                ("PORTICO_BACKEND", "aws"),
                ("AWS_REGION", "eu-central-1"),
                ("PORTICO_AWS_REGION", "us-east-1"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.aws.region.as_deref(), Some("us-east-1"));
        let err = Config::load(None, &env(&[("PORTICO_BACKEND", "aws")])).expect_err("no region");
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        let err = Config::load(None, &env(&[("PORTICO_BACKEND", "cloud")])).expect_err("bad");
        assert!(err.to_string().contains("PORTICO_BACKEND"), "{err}");
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, "[http]\nadress = \"x\"\n").expect("write");
        let err = Config::load(Some(&path), &BTreeMap::new()).expect_err("unknown key");
        assert!(err.to_string().contains("adress"), "{err}");

        let err = Config::load(None, &env(&[("PORTICO_HTTP_ADDR", "localhost")]))
            .expect_err("not an address");
        assert!(err.to_string().contains("http.addr"), "{err}");

        let err = Config::load(None, &env(&[("PORTICO_AUTH_LEEWAY_SECS", "300")]))
            .expect_err("too much leeway");
        assert!(err.to_string().contains("leeway"), "{err}");

        let err = Config::load(None, &env(&[("PORTICO_AUTH_ISSUER", "http://example.okta.com")]))
            .expect_err("plain http issuer");
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load(None, &env(&[("PORTICO_SENDGRID_API_KEY", "SG.topsecret")]))
            .expect("valid");
        assert_eq!(c.sendgrid.api_key.as_ref().map(Secret::expose), Some("SG.topsecret"));
        assert!(!c.to_toml().contains("topsecret"));
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    /// The service recipes' settings are ones Portico knows, with valid values.
    #[test]
    fn the_service_recipes_settings_load() {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local");
        let docker = std::fs::read_to_string(deploy.join("Dockerfile")).expect("Dockerfile");
        let unit = std::fs::read_to_string(deploy.join("portico.service")).expect("unit");
        let mut settings = Vec::new();
        for word in docker
            .split_whitespace()
            .chain(unit.lines().filter_map(|l| l.strip_prefix("Environment=")))
        {
            if let Some((name, value)) = word.split_once('=')
                && name.starts_with("PORTICO_")
            {
                settings.push((name, value));
            }
        }
        assert!(settings.len() >= 10, "{settings:?}");
        Config::load(None, &env(&settings)).expect("the recipes' settings load");
    }

    #[test]
    fn tls_needs_both_files_and_a_listener() {
        let err = Config::load(None, &env(&[("PORTICO_TLS_CERT", "/etc/portico/cert.pem")]))
            .expect_err("cert without key");
        assert!(err.to_string().contains("tls.cert and tls.key go together"), "{err}");
        let err = Config::load(None, &env(&[("PORTICO_TLS_PLAINTEXT", "false")]))
            .expect_err("no listener");
        assert!(err.to_string().contains("tls.plaintext = false needs"), "{err}");
        let c = Config::load(
            None,
            &env(&[
                ("PORTICO_TLS_CERT", "/etc/portico/cert.pem"),
                ("PORTICO_TLS_KEY", "/etc/portico/key.pem"),
                ("PORTICO_TLS_PLAINTEXT", "false"),
                ("PORTICO_MQTTS_ADDR", "0.0.0.0:8883"),
            ]),
        )
        .expect("valid");
        assert!(c.tls.files().is_some());
        assert_eq!(
            (c.https.addr.as_str(), c.mqtts.addr.as_str()),
            ("127.0.0.1:8443", "0.0.0.0:8883")
        );
        assert_eq!(c.wss.addr, "127.0.0.1:8084");
    }

    #[test]
    fn public_url_and_cors_origins_are_checked() {
        let load = |key: &str, value: &str| {
            let env: BTreeMap<String, String> =
                [(key.to_string(), value.to_string())].into_iter().collect();
            Config::load(None, &env)
        };
        for (key, value) in [
            ("PORTICO_HTTP_PUBLIC_URL", "portal.example.com"),
            ("PORTICO_HTTP_PUBLIC_URL", "https://portal.example.com/?x=1"),
            ("PORTICO_HTTP_PUBLIC_URL", "https://user@portal.example.com"),
            ("PORTICO_HTTP_CORS_ORIGINS", "https://portal.example.com/app"),
            ("PORTICO_HTTP_CORS_ORIGINS", "*, https://portal.example.com"),
            ("PORTICO_HTTP_CORS_ORIGINS", "portal.example.com"),
        ] {
            assert!(load(key, value).is_err(), "{key}={value}");
        }
        let c = load("PORTICO_HTTP_PUBLIC_URL", "https://portal.example.com/api/").expect("ok");
        assert_eq!(c.http.public_url.as_deref(), Some("https://portal.example.com/api"));
        let c =
            load("PORTICO_HTTP_CORS_ORIGINS", "https://portal.example.com, http://localhost:3000/")
                .expect("ok");
        assert_eq!(
            c.http.cors_origins,
            vec!["https://portal.example.com", "http://localhost:3000"]
        );
        assert!(load("PORTICO_HTTP_CORS_ORIGINS", "*").is_ok());
    }

    #[test]
    fn every_documented_variable_is_read_and_typos_name_the_closest() {
        let c = Config::load(
            None,
            &env(&[
                ("PORTICO_DOCUMENTS_CERTIFICATE_ISSUER", "Acme Reagents GmbH"),
                ("PORTICO_LAMBDA_HANDLER", "sqs"),
                ("HOME", "/root"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.documents.certificate_issuer, "Acme Reagents GmbH");

        let err = Config::load(None, &env(&[("PORTICO_HTTP_ADRR", "127.0.0.1:9000")]))
            .expect_err("a typo is not ignored");
        let message = err.to_string();
        assert!(message.contains("PORTICO_HTTP_ADRR"), "{message}");
        assert!(message.contains("did you mean `PORTICO_HTTP_ADDR`"), "{message}");

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, "[http]\nadrr = \"127.0.0.1:9000\"\n").expect("write");
        let message =
            Config::load(Some(&path), &BTreeMap::new()).expect_err("unknown key").to_string();
        assert!(message.contains("did you mean `http.addr`"), "{message}");
        std::fs::write(&path, "[htpt]\naddr = \"127.0.0.1:9000\"\n").expect("write");
        let message =
            Config::load(Some(&path), &BTreeMap::new()).expect_err("unknown section").to_string();
        assert!(message.contains("did you mean `http.addr`"), "{message}");
    }

    #[test]
    fn seconds_and_milliseconds_take_durations_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, "[worker]\nvisibility_timeout_secs = \"2m\"\n").expect("write");
        let c = Config::load(
            Some(&path),
            &env(&[
                ("PORTICO_HTTP_REQUEST_TIMEOUT_SECS", "1m 30s"),
                ("PORTICO_SENDGRID_RETRY_BASE_MS", "1.5s"),
                ("PORTICO_DOCUMENTS_UPLOAD_URL_TTL_SECS", "600"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.worker.visibility_timeout_secs, 120);
        assert_eq!(c.http.request_timeout_secs, 90);
        assert_eq!(c.sendgrid.retry_base_ms, 1500);
        assert_eq!(c.documents.upload_url_ttl_secs, 600);
        // Printed as before: numbers in the key's unit.
        assert!(c.to_toml().contains("request_timeout_secs = 90"));
        // Keys without a value are listed too, as comments, and the output reads back.
        let printed = c.to_toml();
        assert!(printed.contains("# issuer =  (unset)"), "{printed}");
        assert!(printed.contains("# neptune_endpoint =  (unset)"), "{printed}");
        let back: toml::Value =
            toml::from_str(&printed).expect("the printed configuration is TOML");
        assert_eq!(back["http"]["request_timeout_secs"].as_integer(), Some(90));
        let err = Config::load(None, &env(&[("PORTICO_WORKER_CONCURRENCY", "2s")]))
            .expect_err("not a duration key");
        assert!(err.to_string().contains("PORTICO_WORKER_CONCURRENCY"), "{err}");
    }
}
