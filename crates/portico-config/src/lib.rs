//! Portico's configuration, layered: built-in defaults, then an optional TOML file, then
//! `PORTICO_*` environment variables. Every key has a default, so no file is needed; every value is
//! checked at startup so a typo is an error message, not a surprise later.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where all local state lives: SQLite files, objects, the dev issuer key.
    pub data_dir: PathBuf,
    /// The name of this deployment's region; it is recorded on every account number it issues.
    pub region: String,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub metrics: MetricsConfig,
    pub auth: AuthConfig,
    pub sequence: SequenceConfig,
    pub documents: DocumentsConfig,
    pub worker: WorkerConfig,
    pub sendgrid: SendgridConfig,
    pub log: LogConfig,
    /// Which adapters stand behind the ports: `local` (SQLite, files, the embedded broker) or
    /// `aws` (DynamoDB, S3, SQS, IoT Core; needs a build with the `aws` feature).
    pub backend: Backend,
    pub aws: AwsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Local,
    Aws,
}

/// Where the AWS resources are (used with `backend = "aws"`). Credentials come from the usual
/// AWS chain (environment, container, instance metadata), never from this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// The AWS region (`AWS_REGION`, which Lambda sets).
    pub region: Option<String>,
    /// Endpoint for every AWS service (`AWS_ENDPOINT_URL`), e.g. a local moto; unset = AWS.
    pub endpoint_url: Option<String>,
    /// AWS IoT's data endpoint for this account (`aws iot describe-endpoint --endpoint-type
    /// iot:Data-ATS`); unset = the SDK's default for the region.
    pub iot_endpoint: Option<String>,
    /// The DynamoDB table (global table when several regions run).
    pub table: String,
    /// The S3 bucket for uploaded documents.
    pub bucket: String,
    /// Prefix of SQS queue names: queue `document-uploads` is `<prefix>document-uploads`.
    pub queue_prefix: String,
    /// Account numbers claimed per DynamoDB write. 1 keeps numbers ascending across every
    /// instance of a region; larger blocks save writes, ascending per instance only.
    pub sequence_block: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsConfig {
    /// How long upload and download links stay valid, in seconds.
    pub upload_url_ttl_secs: u64,
    /// The largest file accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The manufacturer's name printed on Certificates of Analysis.
    pub certificate_issuer: String,
}

/// The queue workers (upload events); `portico serve` runs them unless disabled, and
/// `portico worker` runs only them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Whether `portico serve` runs the workers too.
    pub enabled: bool,
    /// Messages processed at once.
    pub concurrency: usize,
    /// How long a received message stays hidden while a worker holds it (extended while work
    /// goes on); after that another worker gets it.
    pub visibility_timeout_secs: u64,
    /// Receives before a message goes to the dead-letter queue.
    pub max_receives: u32,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        DocumentsConfig {
            upload_url_ttl_secs: 900,
            max_upload_bytes: 1024 * 1024 * 1024,
            certificate_issuer: "Portico Life Sciences".into(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            enabled: true,
            concurrency: 2,
            visibility_timeout_secs: 30,
            max_receives: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A request that takes longer is answered 503 and its work cancelled.
    pub request_timeout_secs: u64,
    /// The external base URL (behind a proxy or load balancer) that every absolute link uses,
    /// e.g. `https://portal.example.com`; unset, links use the Host a loopback caller sent.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the API (CORS), e.g. `https://portal.example.com`; `*`
    /// allows any origin (never with credentials). Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub addr: String,
    /// WebSocket listener; clients connect on the path `/mqtt`.
    pub ws_addr: String,
    /// A TOML or JSON rules file replacing the built-in rules.
    pub rules_file: Option<PathBuf>,
    /// A TOML policy file replacing the built-in policy.
    pub policy_file: Option<PathBuf>,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_bytes: u32,
    /// Unacknowledged QoS 1/2 messages per client.
    pub max_inflight: u16,
    /// Deepest topic accepted, in levels.
    pub max_topic_levels: usize,
    /// Publishes per second one client may sustain; more are dropped.
    pub publish_rate_per_sec: u32,
    /// Publishes one client may send in a burst.
    pub publish_burst: u32,
    /// Retained messages one identity (a user or an instrument) may hold.
    pub retained_per_identity: usize,
    /// Bytes of retained payload one identity may hold.
    pub retained_bytes_per_identity: usize,
    /// Retained messages the broker holds in all.
    pub retained_max: usize,
    /// Bytes of retained payload the broker holds in all.
    pub retained_max_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus text exposition at `/metrics`.
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// An Okta custom authorization server issuer; unset means Portico's own dev issuer.
    pub issuer: Option<String>,
    pub audience: String,
    pub admin_group: String,
    pub support_group: String,
    /// Accepted signature algorithms: `RS256` always; `ES256` only when listed here.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 120).
    pub leeway_secs: u64,
    /// Scopes every access token must carry (`scp`); a valid token without them is refused as
    /// `insufficient_scope` (HTTP 403, MQTT "not authorized", a Deny policy at API Gateway).
    pub required_scopes: Vec<String>,
}

/// The account-number range this region may issue. Regions that share accounts must be given
/// disjoint ranges; see the sequence generator's contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceConfig {
    pub account_number_start: u64,
    /// Exclusive end of the range.
    pub account_number_end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendgridConfig {
    /// Unset: emails stay in the local outbox.
    pub api_key: Option<Secret>,
    pub base_url: String,
    pub from_email: String,
    pub from_name: String,
    /// First retry delay after a 5xx or no answer; doubles per attempt (with jitter).
    pub retry_base_ms: u64,
    /// Attempts before an e-mail is given up as failed.
    pub max_attempts: u32,
    /// How long one send may take.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `portico_http=debug,info`.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./portico-data"),
            region: "local".into(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            metrics: MetricsConfig::default(),
            auth: AuthConfig::default(),
            sequence: SequenceConfig::default(),
            documents: DocumentsConfig::default(),
            worker: WorkerConfig::default(),
            sendgrid: SendgridConfig::default(),
            log: LogConfig::default(),
            backend: Backend::Local,
            aws: AwsConfig::default(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint_url: None,
            iot_endpoint: None,
            table: "portico".into(),
            bucket: "portico-documents".into(),
            queue_prefix: "portico-".into(),
            sequence_block: 1,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8080".into(),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            public_url: None,
            cors_origins: Vec::new(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            addr: "127.0.0.1:1883".into(),
            ws_addr: "127.0.0.1:8083".into(),
            rules_file: None,
            policy_file: None,
            max_packet_bytes: 128 * 1024,
            max_inflight: 32,
            max_topic_levels: 8,
            publish_rate_per_sec: 100,
            publish_burst: 200,
            retained_per_identity: 100,
            retained_bytes_per_identity: 1024 * 1024,
            retained_max: 100_000,
            retained_max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: "127.0.0.1:9464".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: None,
            audience: "api://default".into(),
            admin_group: "portico-admins".into(),
            support_group: "portico-support".into(),
            algorithms: vec!["RS256".into()],
            leeway_secs: 60,
            required_scopes: Vec::new(),
        }
    }
}

impl Default for SequenceConfig {
    fn default() -> Self {
        SequenceConfig {
            account_number_start: 100_000,
            account_number_end: 1_000_000_000_000,
        }
    }
}

impl Default for SendgridConfig {
    fn default() -> Self {
        SendgridConfig {
            api_key: None,
            base_url: "https://api.sendgrid.com".into(),
            from_email: "no-reply@portico.example".into(),
            from_name: "Portico".into(),
            retry_base_ms: 2000,
            max_attempts: 8,
            timeout_secs: 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
        }
    }
}

/// The environment variables Portico reads, and the key each one sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("PORTICO_DATA_DIR", "data_dir"),
    ("PORTICO_REGION", "region"),
    ("PORTICO_HTTP_ADDR", "http.addr"),
    ("PORTICO_HTTP_PUBLIC_URL", "http.public_url"),
    ("PORTICO_HTTP_CORS_ORIGINS", "http.cors_origins"),
    ("PORTICO_HTTP_BODY_LIMIT_BYTES", "http.body_limit_bytes"),
    (
        "PORTICO_HTTP_REQUEST_TIMEOUT_SECS",
        "http.request_timeout_secs",
    ),
    ("PORTICO_MQTT_ADDR", "mqtt.addr"),
    ("PORTICO_MQTT_WS_ADDR", "mqtt.ws_addr"),
    ("PORTICO_MQTT_RULES_FILE", "mqtt.rules_file"),
    ("PORTICO_MQTT_POLICY_FILE", "mqtt.policy_file"),
    ("PORTICO_MQTT_MAX_PACKET_BYTES", "mqtt.max_packet_bytes"),
    ("PORTICO_MQTT_MAX_INFLIGHT", "mqtt.max_inflight"),
    ("PORTICO_MQTT_MAX_TOPIC_LEVELS", "mqtt.max_topic_levels"),
    (
        "PORTICO_MQTT_PUBLISH_RATE_PER_SEC",
        "mqtt.publish_rate_per_sec",
    ),
    ("PORTICO_MQTT_PUBLISH_BURST", "mqtt.publish_burst"),
    (
        "PORTICO_MQTT_RETAINED_PER_IDENTITY",
        "mqtt.retained_per_identity",
    ),
    (
        "PORTICO_MQTT_RETAINED_BYTES_PER_IDENTITY",
        "mqtt.retained_bytes_per_identity",
    ),
    ("PORTICO_MQTT_RETAINED_MAX", "mqtt.retained_max"),
    ("PORTICO_MQTT_RETAINED_MAX_BYTES", "mqtt.retained_max_bytes"),
    ("PORTICO_METRICS_ADDR", "metrics.addr"),
    ("PORTICO_AUTH_ISSUER", "auth.issuer"),
    ("PORTICO_AUTH_AUDIENCE", "auth.audience"),
    ("PORTICO_AUTH_ADMIN_GROUP", "auth.admin_group"),
    ("PORTICO_AUTH_SUPPORT_GROUP", "auth.support_group"),
    ("PORTICO_AUTH_ALGORITHMS", "auth.algorithms"),
    ("PORTICO_AUTH_LEEWAY_SECS", "auth.leeway_secs"),
    ("PORTICO_AUTH_REQUIRED_SCOPES", "auth.required_scopes"),
    (
        "PORTICO_SEQUENCE_ACCOUNT_NUMBER_START",
        "sequence.account_number_start",
    ),
    (
        "PORTICO_SEQUENCE_ACCOUNT_NUMBER_END",
        "sequence.account_number_end",
    ),
    (
        "PORTICO_DOCUMENTS_UPLOAD_URL_TTL_SECS",
        "documents.upload_url_ttl_secs",
    ),
    (
        "PORTICO_DOCUMENTS_MAX_UPLOAD_BYTES",
        "documents.max_upload_bytes",
    ),
    ("PORTICO_WORKER_ENABLED", "worker.enabled"),
    ("PORTICO_WORKER_CONCURRENCY", "worker.concurrency"),
    (
        "PORTICO_WORKER_VISIBILITY_TIMEOUT_SECS",
        "worker.visibility_timeout_secs",
    ),
    ("PORTICO_WORKER_MAX_RECEIVES", "worker.max_receives"),
    ("PORTICO_SENDGRID_API_KEY", "sendgrid.api_key"),
    ("PORTICO_SENDGRID_BASE_URL", "sendgrid.base_url"),
    ("PORTICO_SENDGRID_FROM_EMAIL", "sendgrid.from_email"),
    ("PORTICO_SENDGRID_FROM_NAME", "sendgrid.from_name"),
    ("PORTICO_SENDGRID_RETRY_BASE_MS", "sendgrid.retry_base_ms"),
    ("PORTICO_SENDGRID_MAX_ATTEMPTS", "sendgrid.max_attempts"),
    ("PORTICO_SENDGRID_TIMEOUT_SECS", "sendgrid.timeout_secs"),
    ("PORTICO_LOG", "log.filter"),
    ("PORTICO_BACKEND", "backend"),
    // The AWS SDKs' own names, so a Lambda's standard environment is enough.
    ("AWS_REGION", "aws.region"),
    ("AWS_ENDPOINT_URL", "aws.endpoint_url"),
    ("PORTICO_AWS_REGION", "aws.region"),
    ("PORTICO_AWS_ENDPOINT_URL", "aws.endpoint_url"),
    ("PORTICO_AWS_IOT_ENDPOINT", "aws.iot_endpoint"),
    ("PORTICO_AWS_TABLE", "aws.table"),
    ("PORTICO_AWS_BUCKET", "aws.bucket"),
    ("PORTICO_AWS_QUEUE_PREFIX", "aws.queue_prefix"),
    ("PORTICO_AWS_SEQUENCE_BLOCK", "aws.sequence_block"),
];

impl Config {
    /// Loads defaults, then `file` (if any), then the given environment, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the process environment: `PORTICO_CONFIG` names the optional file unless
    /// `file` is given.
    pub fn from_process_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| ENV_KEYS.iter().any(|(var, _)| var == k) || k == "PORTICO_CONFIG")
            .collect();
        let from_env = env.get("PORTICO_CONFIG").map(PathBuf::from);
        Self::load(file.or(from_env.as_deref()), &env)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (var, key) in ENV_KEYS {
            let Some(value) = env.get(*var) else { continue };
            self.set(key, value).map_err(|message| ConfigError::Env {
                var: (*var).to_string(),
                message,
            })?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        let empty_is_none = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "data_dir" => self.data_dir = PathBuf::from(value),
            "region" => self.region = value.into(),
            "http.addr" => self.http.addr = value.into(),
            "http.body_limit_bytes" => self.http.body_limit_bytes = parse_number(value)?,
            "http.request_timeout_secs" => self.http.request_timeout_secs = parse_number(value)?,
            "http.public_url" => {
                self.http.public_url = empty_is_none(value).map(|u| u.trim_end_matches('/').into())
            }
            "http.cors_origins" => {
                self.http.cors_origins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_end_matches('/').to_string())
                    .collect()
            }
            "mqtt.addr" => self.mqtt.addr = value.into(),
            "mqtt.ws_addr" => self.mqtt.ws_addr = value.into(),
            "mqtt.rules_file" => self.mqtt.rules_file = empty_is_none(value).map(PathBuf::from),
            "mqtt.policy_file" => self.mqtt.policy_file = empty_is_none(value).map(PathBuf::from),
            "mqtt.max_packet_bytes" => self.mqtt.max_packet_bytes = parse_number(value)?,
            "mqtt.max_inflight" => self.mqtt.max_inflight = parse_number(value)?,
            "mqtt.max_topic_levels" => self.mqtt.max_topic_levels = parse_number(value)?,
            "mqtt.publish_rate_per_sec" => self.mqtt.publish_rate_per_sec = parse_number(value)?,
            "mqtt.publish_burst" => self.mqtt.publish_burst = parse_number(value)?,
            "mqtt.retained_per_identity" => self.mqtt.retained_per_identity = parse_number(value)?,
            "mqtt.retained_bytes_per_identity" => {
                self.mqtt.retained_bytes_per_identity = parse_number(value)?
            }
            "mqtt.retained_max" => self.mqtt.retained_max = parse_number(value)?,
            "mqtt.retained_max_bytes" => self.mqtt.retained_max_bytes = parse_number(value)?,
            "metrics.addr" => self.metrics.addr = value.into(),
            "auth.issuer" => self.auth.issuer = empty_is_none(value),
            "auth.audience" => self.auth.audience = value.into(),
            "auth.admin_group" => self.auth.admin_group = value.into(),
            "auth.support_group" => self.auth.support_group = value.into(),
            "auth.algorithms" => {
                self.auth.algorithms = value
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect()
            }
            "auth.leeway_secs" => self.auth.leeway_secs = parse_number(value)?,
            "auth.required_scopes" => {
                self.auth.required_scopes = value
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "sequence.account_number_start" => {
                self.sequence.account_number_start = parse_number(value)?
            }
            "sequence.account_number_end" => {
                self.sequence.account_number_end = parse_number(value)?
            }
            "documents.upload_url_ttl_secs" => {
                self.documents.upload_url_ttl_secs = parse_number(value)?
            }
            "documents.max_upload_bytes" => self.documents.max_upload_bytes = parse_number(value)?,
            "documents.certificate_issuer" => self.documents.certificate_issuer = value.into(),
            "worker.enabled" => {
                self.worker.enabled = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => return Err(format!("{other:?} is not true or false")),
                }
            }
            "worker.concurrency" => self.worker.concurrency = parse_number(value)?,
            "worker.visibility_timeout_secs" => {
                self.worker.visibility_timeout_secs = parse_number(value)?
            }
            "worker.max_receives" => self.worker.max_receives = parse_number(value)?,
            "sendgrid.api_key" => self.sendgrid.api_key = empty_is_none(value).map(Secret),
            "sendgrid.base_url" => self.sendgrid.base_url = value.into(),
            "sendgrid.from_email" => self.sendgrid.from_email = value.into(),
            "sendgrid.from_name" => self.sendgrid.from_name = value.into(),
            "sendgrid.retry_base_ms" => self.sendgrid.retry_base_ms = parse_number(value)?,
            "sendgrid.max_attempts" => self.sendgrid.max_attempts = parse_number(value)?,
            "sendgrid.timeout_secs" => self.sendgrid.timeout_secs = parse_number(value)?,
            "log.filter" => self.log.filter = value.into(),
            "backend" => {
                self.backend = match value {
                    "local" => Backend::Local,
                    "aws" => Backend::Aws,
                    other => return Err(format!("{other:?} is not `local` or `aws`")),
                }
            }
            "aws.region" => self.aws.region = empty_is_none(value),
            "aws.endpoint_url" => self.aws.endpoint_url = empty_is_none(value),
            "aws.iot_endpoint" => self.aws.iot_endpoint = empty_is_none(value),
            "aws.table" => self.aws.table = value.into(),
            "aws.bucket" => self.aws.bucket = value.into(),
            "aws.queue_prefix" => self.aws.queue_prefix = value.into(),
            "aws.sequence_block" => self.aws.sequence_block = parse_number(value)?,
            other => return Err(format!("unknown key `{other}`")),
        }
        Ok(())
    }

    /// Checks every value that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (name, addr) in [
            ("http.addr", &self.http.addr),
            ("mqtt.addr", &self.mqtt.addr),
            ("mqtt.ws_addr", &self.mqtt.ws_addr),
            ("metrics.addr", &self.metrics.addr),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                return invalid(format!(
                    "{name} = {addr:?} is not an IP address with a port, e.g. 127.0.0.1:8080"
                ));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must not be empty".into());
        }
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(format!(
                "region = {:?} must be letters, digits, '-' or '_'",
                self.region
            ));
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
        if let Some(a) = self
            .auth
            .algorithms
            .iter()
            .find(|a| !matches!(a.as_str(), "RS256" | "ES256"))
        {
            return invalid(format!(
                "auth.algorithms: {a:?} is not supported (RS256, ES256)"
            ));
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
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// `http(s)://host[:port][/path]`, without query or fragment.
fn is_base_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
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
    is_base_url(origin)
        && origin
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains('/'))
}

fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
        std::fs::write(
            &path,
            "[http]\naddr = \"127.0.0.1:9000\"\n[auth]\nadmin_group = \"ops\"\n",
        )
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
        assert_eq!(
            (c.aws.table.as_str(), c.aws.sequence_block),
            ("portico-prod", 10)
        );
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

        let err = Config::load(
            None,
            &env(&[("PORTICO_AUTH_ISSUER", "http://example.okta.com")]),
        )
        .expect_err("plain http issuer");
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load(None, &env(&[("PORTICO_SENDGRID_API_KEY", "SG.topsecret")]))
            .expect("valid");
        assert_eq!(
            c.sendgrid.api_key.as_ref().map(Secret::expose),
            Some("SG.topsecret")
        );
        assert!(!c.to_toml().contains("topsecret"));
        assert!(!format!("{c:?}").contains("topsecret"));
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
            (
                "PORTICO_HTTP_CORS_ORIGINS",
                "https://portal.example.com/app",
            ),
            ("PORTICO_HTTP_CORS_ORIGINS", "*, https://portal.example.com"),
            ("PORTICO_HTTP_CORS_ORIGINS", "portal.example.com"),
        ] {
            assert!(load(key, value).is_err(), "{key}={value}");
        }
        let c = load("PORTICO_HTTP_PUBLIC_URL", "https://portal.example.com/api/").expect("ok");
        assert_eq!(
            c.http.public_url.as_deref(),
            Some("https://portal.example.com/api")
        );
        let c = load(
            "PORTICO_HTTP_CORS_ORIGINS",
            "https://portal.example.com, http://localhost:3000/",
        )
        .expect("ok");
        assert_eq!(
            c.http.cors_origins,
            vec!["https://portal.example.com", "http://localhost:3000"]
        );
        assert!(load("PORTICO_HTTP_CORS_ORIGINS", "*").is_ok());
    }
}
