//! Composition: which adapter stands behind each port in the local host.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portico_auth::{DevIssuer, JwksSettings, Verifier, VerifierSettings};
use portico_broker::BrokerPublisher;
use portico_config::Config;
use portico_core::ports::SequenceRange;
use portico_functions::{Context, Settings};
use portico_http::{AppState, Limits};
use portico_mail::{LocalSink, SendGrid};
use portico_objects::{Objects, SignedUrls};
use portico_pdf::Pdf;
use portico_sqlite::{Database, SqliteQueue, SqliteSequence, SqliteStore};

/// The composed backend: the state the HTTP functions run on, and the parts hosts and tests need.
#[derive(Clone)]
pub struct Composition {
    pub state: AppState,
    pub context: Arc<Context>,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    pub verifier: Arc<Verifier>,
    /// Delivers server-side publishes once the broker is bound.
    pub publisher: Arc<BrokerPublisher>,
}

/// The issuer the local dev issuer signs as: derived from the configured HTTP address, so that
/// `portico token` and `portico serve` on the same configuration agree without talking.
pub fn dev_issuer_url(config: &Config) -> String {
    format!("http://{}/oauth2/default", config.http.addr)
}

/// Opens the data dir and wires every port to its local adapter.
pub fn compose(config: &Config) -> anyhow::Result<Composition> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let database = Database::open(&config.data_dir.join("portico.db"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;

    let (verifier, dev_issuer) = match &config.auth.issuer {
        Some(issuer) => {
            let settings = VerifierSettings::new(
                issuer,
                &config.auth.audience,
                &config.auth.algorithms,
                config.auth.leeway_secs,
            );
            (
                Verifier::with_discovery(settings, JwksSettings::default()),
                None,
            )
        }
        None => {
            let dev = load_dev_issuer(config)?;
            let verifier = dev.verifier(&config.auth.algorithms, config.auth.leeway_secs);
            (verifier, Some(Arc::new(dev)))
        }
    };
    let verifier = Arc::new(verifier);

    // One range for this region; account numbers and any other sequence draw from it, each
    // sequence counting on its own.
    let range = SequenceRange {
        start: config.sequence.account_number_start,
        end: config.sequence.account_number_end,
    };
    let store = Arc::new(SqliteStore::new(database.clone(), range));
    let publisher = Arc::new(BrokerPublisher::new());
    let signed_urls = Arc::new(SignedUrls::load_or_create(&config.data_dir.join("auth"))?);
    let context = Arc::new(Context {
        store: store.clone(),
        outbox: store,
        mailer: match &config.sendgrid.api_key {
            Some(key) => Arc::new(SendGrid::new(
                &config.sendgrid.base_url,
                key.expose(),
                &config.sendgrid.from_email,
                &config.sendgrid.from_name,
                Duration::from_secs(config.sendgrid.timeout_secs),
            )),
            None => Arc::new(LocalSink),
        },
        publisher: publisher.clone(),
        objects: Arc::new(Objects::local(&config.data_dir.join("objects"))?),
        file_urls: signed_urls.clone(),
        queue: Arc::new(SqliteQueue::new(
            database.clone(),
            config.worker.max_receives,
        )),
        sequence: Arc::new(SqliteSequence::new(database, range)),
        renderer: Arc::new(Pdf::new()),
        settings: Settings {
            region: config.region.clone(),
            admin_group: config.auth.admin_group.clone(),
            support_group: config.auth.support_group.clone(),
            upload_url_ttl_secs: config.documents.upload_url_ttl_secs,
            max_upload_bytes: config.documents.max_upload_bytes,
            issuer_name: config.documents.certificate_issuer.clone(),
        },
    });
    let limits = Limits {
        body_limit_bytes: config.http.body_limit_bytes,
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
    };
    let state = AppState::new(
        context.clone(),
        verifier.clone(),
        dev_issuer.clone(),
        Some(signed_urls),
        limits,
    );
    Ok(Composition {
        state,
        context,
        dev_issuer,
        verifier,
        publisher,
    })
}

/// The dev issuer of the data dir (its key is made on first use).
pub fn load_dev_issuer(config: &Config) -> anyhow::Result<DevIssuer> {
    DevIssuer::load_or_create(
        &config.data_dir.join("auth"),
        &dev_issuer_url(config),
        &config.auth.audience,
    )
    .context("loading the local dev issuer")
}
