//! Composition: which adapter stands behind each port. `compose_local` wires the local adapters
//! around the publisher it is given (the local host's embedded broker); `compose_backend` follows
//! `backend` in the configuration, and with the `aws` feature can wire the AWS adapters instead
//! (for the Lambda host and `portico worker` on EC2 / ECS).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portico_auth::{DevIssuer, JwksSettings, Verifier, VerifierSettings};
use portico_config::{Backend, Config};
use portico_core::logs::{LogHit, LogSearch, LogStore};
use portico_core::ports::SequenceRange;
use portico_core::{
    Accounts, Catalogue, Documents, Error, FileUrls, GraphStore, Instruments, Mailer,
    Notifications, ObjectStore, Outbox, Publisher, Queue, UploadEvents, Users,
};
use portico_functions::{Context, Settings};
use portico_http::{AppParts, AppState, Edge, Limits};
use portico_mail::{LocalSink, SendGrid};
use portico_objects::{Objects, SignedUrls};
use portico_pdf::Pdf;
use portico_sqlite::{
    ChangeFeed, Database, SqliteGraph, SqliteQueue, SqliteStore, SqliteWarehouse,
};

use crate::s3_events::QueuedUploadEvents;

/// The composed backend: the state the HTTP functions run on, and the parts hosts and tests need.
#[derive(Clone)]
pub struct Composition {
    pub state: AppState,
    pub context: Arc<Context>,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    pub verifier: Arc<Verifier>,
    /// The change table the local graph projector reads (the local backend only; on AWS the
    /// DynamoDB stream feeds the `graph-projector` function).
    pub changes: Option<ChangeFeed>,
    /// The audit trail's daily export (the local backend only).
    pub audit_export: Option<crate::audit_export::AuditExport>,
    /// The local warehouse and where its CSV snapshots go, for its loader (the local backend
    /// only; on AWS the `stream-poller` and `kinesis` functions load Snowflake).
    pub warehouse: Option<crate::warehouse::Loader>,
    /// The local database, for readiness (the local backend only).
    pub database: Option<Database>,
}

/// The publisher of a process without a broker (`portico worker`, a Lambda on the local
/// backend): notifications are stored, and their publish fails as "unavailable", as it would
/// with the broker down.
struct NoBroker;

#[async_trait::async_trait]
impl Publisher for NoBroker {
    async fn publish(&self, topic: &str, _payload: Vec<u8>, _qos: u8) -> portico_core::Result<()> {
        Err(Error::Unavailable(format!("no MQTT broker in this process; not published to {topic}")))
    }
}

/// The issuer the local dev issuer signs as: derived from the configured HTTP address, so that
/// `portico token` and `portico serve` on the same configuration agree without talking.
pub fn dev_issuer_url(config: &Config) -> String {
    format!("http://{}/oauth2/default", config.http.addr)
}

/// Wires every port to the adapters `config.backend` names.
pub async fn compose_backend(config: &Config) -> anyhow::Result<Composition> {
    match config.backend {
        Backend::Local => compose_local(config, Arc::new(NoBroker)),
        #[cfg(feature = "aws")]
        Backend::Aws => compose_aws(config).await,
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!(
            "backend = \"aws\" needs a build with the `aws` feature (cargo build --features aws)"
        ),
    }
}

/// Opens the data dir and wires every port to its local adapter.
pub fn compose_local(
    config: &Config,
    publisher: Arc<dyn Publisher>,
) -> anyhow::Result<Composition> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let database = Database::open(&config.data_dir.join("portico.db"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let auth = verifier(config)?;
    let range = account_numbers(config);
    let store = Arc::new(SqliteStore::new(database.clone(), range));
    let database_handle = database.clone();
    let signed_urls = Arc::new(SignedUrls::load_or_create(&config.data_dir.join("auth"))?);
    let graph = Arc::new(SqliteGraph::new(database.clone()));
    let changes = ChangeFeed::new(database.clone());
    let warehouse =
        SqliteWarehouse::open(&config.data_dir.join("warehouse.db"), Some(changes.clone()))
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::new(database, config.worker.max_receives));
    let audit_store = store.clone();
    let context = Arc::new(context(
        config,
        store.clone(),
        Services {
            audit: store,
            publisher,
            objects: Arc::new(Objects::local(&config.data_dir.join("objects"))?),
            file_urls: signed_urls.clone(),
            queue: queue.clone(),
            upload_events: Arc::new(QueuedUploadEvents::new(queue, &config.region)),
            graph,
            logs: local_logs(config)?,
            warehouse: Arc::new(warehouse.clone()),
        },
    ));
    let mut composition = assemble(config, context, auth, Some(signed_urls));
    composition.warehouse = Some(crate::warehouse::Loader::new(
        warehouse,
        changes.clone(),
        config.data_dir.join("warehouse"),
    ));
    composition.changes = Some(changes);
    composition.database = Some(database_handle);
    composition.audit_export =
        Some(crate::audit_export::AuditExport::new(audit_store, &config.data_dir));
    Ok(composition)
}

/// Wires every port to its AWS adapter. No network call happens here: the SDK fetches
/// credentials on the first request, so a Lambda's init stays short.
#[cfg(feature = "aws")]
async fn compose_aws(config: &Config) -> anyhow::Result<Composition> {
    let aws = &config.aws;
    let settings_aws = aws_settings(config)?;
    let sdk = portico_aws::sdk_config(&settings_aws).await;
    let dynamodb = portico_aws::dynamodb(&sdk);
    // Each AWS region owns its sequence items and its configured range (see DynamoSequence).
    let sequence = Arc::new(portico_aws::DynamoSequence::new(
        dynamodb.clone(),
        &aws.table,
        &settings_aws.region,
        account_numbers(config),
        aws.sequence_block,
    ));
    let store = Arc::new(portico_aws::DynamoStore::new(dynamodb, &aws.table, sequence));
    let bucket = Arc::new(portico_aws::LazyBucket::new(
        &aws.bucket,
        &settings_aws.region,
        aws.endpoint_url.as_deref(),
    ));
    let auth = verifier(config)?;
    let context = Arc::new(context(
        config,
        store,
        Services {
            publisher: Arc::new(portico_aws::IotPublisher::new(portico_aws::iot_data(
                &sdk,
                &settings_aws,
            ))),
            objects: bucket.clone(),
            file_urls: bucket,
            queue: Arc::new(portico_aws::SqsQueue::new(portico_aws::sqs(&sdk), &aws.queue_prefix)),
            upload_events: Arc::new(crate::s3_events::S3SendsUploadEvents),
            graph: match &aws.neptune_endpoint {
                Some(endpoint) => {
                    let server = portico_aws::neptune::NeptuneData::new(&sdk, endpoint);
                    Arc::new(portico_aws::neptune::NeptuneGraph::new(server)) as Arc<dyn GraphStore>
                }
                None => Arc::new(NoGraph),
            },
            audit: Arc::new(NoAudit),
            warehouse: snowflake(config)?,
            logs: match opensearch_cluster(config).await? {
                Some(cluster) => Arc::new(portico_logs::opensearch::OpenSearchLogs::new(
                    cluster,
                    &config.logs.opensearch_index_prefix,
                )) as Arc<dyn LogStore>,
                None => Arc::new(NoLogs(
                    "the logs are in CloudWatch Logs; set logs.opensearch_url (PORTICO_LOGS_OPENSEARCH_URL) to search them here",
                )),
            },
        },
    ));
    // Clients upload to and download from S3 itself, so no signed routes are served here; the
    // embedded broker does not exist here either.
    Ok(assemble(config, context, auth, None))
}

/// What differs between the backends besides the records.
struct Services {
    publisher: Arc<dyn Publisher>,
    objects: Arc<dyn ObjectStore>,
    file_urls: Arc<dyn FileUrls>,
    queue: Arc<dyn Queue>,
    upload_events: Arc<dyn UploadEvents>,
    graph: Arc<dyn GraphStore>,
    logs: Arc<dyn LogStore>,
    audit: Arc<dyn portico_core::audit::AuditTrail>,
    warehouse: Arc<dyn portico_core::warehouse::Warehouse>,
}

/// The log search where no log store is kept: unavailable (503), never an empty answer that
/// would look like "nothing happened".
struct NoLogs(&'static str);

#[async_trait::async_trait]
impl LogStore for NoLogs {
    async fn search(
        &self,
        _search: &LogSearch,
        _page: &portico_core::PageRequest,
    ) -> portico_core::Result<portico_core::Page<LogHit>> {
        Err(Error::Unavailable(self.0.into()))
    }
    async fn after(
        &self,
        _search: &LogSearch,
        _after: Option<&str>,
        _limit: u32,
    ) -> portico_core::Result<Vec<LogHit>> {
        Err(Error::Unavailable(self.0.into()))
    }
}

/// The audit trail where the records are DynamoDB's: not kept yet, so unavailable (503), never
/// an empty answer that would look like "nobody changed anything".
#[cfg(feature = "aws")]
struct NoAudit;

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl portico_core::audit::AuditTrail for NoAudit {
    async fn list(
        &self,
        _query: &portico_core::audit::AuditQuery,
        _page: &portico_core::PageRequest,
    ) -> portico_core::Result<portico_core::Page<portico_core::audit::AuditRecord>> {
        Err(Error::Unavailable("the audit trail is kept by the local backend only, so far".into()))
    }
    async fn verify(
        &self,
    ) -> portico_core::Result<Result<portico_core::audit::Verified, portico_core::audit::Broken>>
    {
        Err(Error::Unavailable("the audit trail is kept by the local backend only, so far".into()))
    }
}

/// The warehouse on Snowflake when `snowflake.account` is set; otherwise reports are unavailable
/// (503), never an empty answer that would look like "nothing happened".
#[cfg(feature = "aws")]
fn snowflake(config: &Config) -> anyhow::Result<Arc<dyn portico_core::warehouse::Warehouse>> {
    Ok(match portico_snowflake::Settings::from_config(&config.snowflake)? {
        Some(settings) => Arc::new(portico_snowflake::SnowflakeWarehouse::new(settings)?),
        None => Arc::new(NoWarehouse),
    })
}

/// The reports when no Snowflake is configured on the AWS backend.
#[cfg(feature = "aws")]
struct NoWarehouse;

#[cfg(feature = "aws")]
const NO_WAREHOUSE: &str = "no warehouse: set snowflake.account (PORTICO_SNOWFLAKE_ACCOUNT)";

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl portico_core::warehouse::Warehouse for NoWarehouse {
    async fn report(
        &self,
        _query: &portico_core::warehouse::ReportQuery,
    ) -> portico_core::Result<portico_core::warehouse::ReportTable> {
        Err(Error::Unavailable(NO_WAREHOUSE.into()))
    }
    async fn status(&self) -> portico_core::Result<portico_core::warehouse::WarehouseStatus> {
        Err(Error::Unavailable(NO_WAREHOUSE.into()))
    }
}

/// The local log store of the data dir (written by the process's logging; see the CLI).
fn local_logs(config: &Config) -> anyhow::Result<Arc<dyn LogStore>> {
    if !config.logs.store {
        return Ok(Arc::new(NoLogs("the log store is off (logs.store = false)")));
    }
    let store = portico_logs::SqliteLogs::open(&config.data_dir.join("logs"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(Arc::new(store))
}

/// The AWS backend's graph when no Neptune endpoint is configured: every trace is "unavailable"
/// (503), never an empty answer that would look like "the lot reached nobody".
#[cfg(feature = "aws")]
struct NoGraph;

#[cfg(feature = "aws")]
impl NoGraph {
    fn refused<T>() -> portico_core::Result<T> {
        Err(Error::Unavailable(
            "no graph store: set aws.neptune_endpoint (PORTICO_AWS_NEPTUNE_ENDPOINT)".into(),
        ))
    }
}

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl GraphStore for NoGraph {
    async fn upsert(&self, _batch: &portico_core::graph::Batch) -> portico_core::Result<()> {
        Self::refused()
    }
    async fn trace(&self, _lot_number: &str) -> portico_core::Result<portico_core::graph::Trace> {
        Self::refused()
    }
    async fn clear(&self) -> portico_core::Result<()> {
        Self::refused()
    }
}

/// The functions' context with every record port served by `records` (the SQLite store, or the
/// DynamoDB table), around `services`.
fn context<R>(config: &Config, records: Arc<R>, services: Services) -> Context
where
    R: Accounts + Users + Instruments + Notifications + Documents + Catalogue + Outbox,
{
    Context {
        accounts: records.clone(),
        users: records.clone(),
        instruments: records.clone(),
        notifications: records.clone(),
        documents: records.clone(),
        catalogue: records.clone(),
        outbox: records,
        publisher: services.publisher,
        objects: services.objects,
        file_urls: services.file_urls,
        queue: services.queue,
        upload_events: services.upload_events,
        graph: services.graph,
        logs: services.logs,
        audit: services.audit,
        warehouse: services.warehouse,
        mailer: mailer(config),
        renderer: Arc::new(Pdf::new()),
        settings: settings(config),
    }
}

/// The OpenSearch cluster of `logs.opensearch_url`, if set: basic auth with a username and
/// password (a self-managed cluster), else SigV4 with the process's AWS credentials when built
/// with the `aws` feature (Amazon OpenSearch Service), else none.
pub async fn opensearch_cluster(
    config: &Config,
) -> anyhow::Result<Option<portico_logs::opensearch::Cluster>> {
    use portico_logs::opensearch::{Auth, Cluster};
    let logs = &config.logs;
    let Some(url) = &logs.opensearch_url else {
        return Ok(None);
    };
    let auth = match (&logs.opensearch_username, &logs.opensearch_password) {
        (Some(username), Some(password)) => {
            Auth::Basic { username: username.clone(), password: password.expose().to_string() }
        }
        _ => signed(config, url).await,
    };
    let cluster =
        Cluster::new(url, auth, Duration::from_secs(20)).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(cluster))
}

/// The `_bulk` sink into `opensearch_cluster`, which installs Portico's index template first.
pub async fn opensearch_sink(
    config: &Config,
) -> anyhow::Result<Option<portico_logs::opensearch::BulkSink>> {
    Ok(opensearch_cluster(config).await?.map(|cluster| {
        portico_logs::opensearch::BulkSink::on(cluster)
            .with_index_template(&config.logs.opensearch_index_prefix)
    }))
}

/// The AWS adapters' settings that `aws.*` names; `aws.region` is required.
#[cfg(feature = "aws")]
pub fn aws_settings(config: &Config) -> anyhow::Result<portico_aws::AwsSettings> {
    let aws = &config.aws;
    Ok(portico_aws::AwsSettings {
        region: aws.region.clone().context("backend = \"aws\" needs aws.region (AWS_REGION)")?,
        endpoint_url: aws.endpoint_url.clone(),
        iot_endpoint: aws.iot_endpoint.clone(),
        table: aws.table.clone(),
        bucket: aws.bucket.clone(),
        queue_prefix: aws.queue_prefix.clone(),
    })
}

#[cfg(feature = "aws")]
async fn signed(config: &Config, url: &str) -> portico_logs::opensearch::Auth {
    let Ok(settings) = aws_settings(config) else {
        return portico_logs::opensearch::Auth::None;
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    match portico_aws::opensearch::OpenSearchSigner::new(&sdk, &settings.region, url) {
        Some(signer) => portico_logs::opensearch::Auth::Signed(Arc::new(signer)),
        None => portico_logs::opensearch::Auth::None,
    }
}

#[cfg(not(feature = "aws"))]
async fn signed(_config: &Config, _url: &str) -> portico_logs::opensearch::Auth {
    portico_logs::opensearch::Auth::None
}

/// The HTTP state over `context`, and the parts hosts need.
fn assemble(
    config: &Config,
    context: Arc<Context>,
    (verifier, dev_issuer): (Arc<Verifier>, Option<Arc<DevIssuer>>),
    signed_urls: Option<Arc<SignedUrls>>,
) -> Composition {
    let state = AppState::new(AppParts {
        context: context.clone(),
        verifier: verifier.clone(),
        dev_issuer: dev_issuer.clone(),
        signed_urls,
        limits: limits(config),
        readiness: std::sync::OnceLock::new(),
        edge: Edge {
            public_url: config
                .http
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string()),
            cors_origins: config.http.cors_origins.clone(),
        },
    });
    Composition {
        state,
        context,
        dev_issuer,
        verifier,
        changes: None,
        audit_export: None,
        warehouse: None,
        database: None,
    }
}

/// The configured issuer's verifier, or the local dev issuer's (its key in the data dir).
fn verifier(config: &Config) -> anyhow::Result<(Arc<Verifier>, Option<Arc<DevIssuer>>)> {
    Ok(match &config.auth.issuer {
        Some(issuer) => {
            let settings = VerifierSettings::new(
                issuer,
                &config.auth.audience,
                &config.auth.algorithms,
                config.auth.leeway_secs,
            )
            .require_scopes(&config.auth.required_scopes);
            (Arc::new(Verifier::with_discovery(settings, JwksSettings::default())), None)
        }
        None => {
            let dev = load_dev_issuer(config)?;
            let verifier = dev.verifier(&config.auth.algorithms, config.auth.leeway_secs);
            (Arc::new(verifier), Some(Arc::new(dev)))
        }
    })
}

/// This region's part of the account-number space; any other sequence draws from it too, each
/// counting on its own.
fn account_numbers(config: &Config) -> SequenceRange {
    SequenceRange {
        start: config.sequence.account_number_start,
        end: config.sequence.account_number_end,
    }
}

fn mailer(config: &Config) -> Arc<dyn Mailer> {
    match &config.sendgrid.api_key {
        Some(key) => Arc::new(SendGrid::new(
            &config.sendgrid.base_url,
            key.expose(),
            &config.sendgrid.from_email,
            &config.sendgrid.from_name,
            Duration::from_secs(config.sendgrid.timeout_secs),
        )),
        None => Arc::new(LocalSink),
    }
}

fn settings(config: &Config) -> Settings {
    Settings {
        region: config.region.clone(),
        admin_group: config.auth.admin_group.clone(),
        support_group: config.auth.support_group.clone(),
        upload_url_ttl_secs: config.documents.upload_url_ttl_secs,
        max_upload_bytes: config.documents.max_upload_bytes,
        issuer_name: config.documents.certificate_issuer.clone(),
    }
}

fn limits(config: &Config) -> Limits {
    Limits {
        body_limit_bytes: config.http.body_limit_bytes,
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
    }
}

/// The dev issuer of the data dir (its key is made on first use).
pub fn load_dev_issuer(config: &Config) -> anyhow::Result<DevIssuer> {
    DevIssuer::load_or_create(
        &config.data_dir.join("auth"),
        &dev_issuer_url(config),
        &config.auth.audience,
    )
    .map(|issuer| issuer.with_required_scopes(&config.auth.required_scopes))
    .context("loading the local dev issuer")
}

/// The worker settings in `config`.
pub fn worker_settings(config: &Config) -> crate::worker::WorkerSettings {
    crate::worker::WorkerSettings {
        concurrency: config.worker.concurrency,
        visibility: std::time::Duration::from_secs(config.worker.visibility_timeout_secs),
        email_retry_base: std::time::Duration::from_millis(config.sendgrid.retry_base_ms),
        email_max_attempts: config.sendgrid.max_attempts,
    }
}
