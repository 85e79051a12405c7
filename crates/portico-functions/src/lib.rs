//! Portico's functions: the business logic, one async function per operation, over typed inputs
//! and a `Context` of ports. A function never knows which host runs it (the local server or a
//! Lambda) nor which adapters stand behind the ports.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod catalogue;
pub mod documents;
pub mod email;
pub mod gate;
pub mod graph;
pub mod identity;
pub mod instruments;
pub mod logs;
pub mod notifications;
pub mod reports;
pub mod trace;
mod validate;

use std::sync::Arc;

use portico_core::logs::LogStore;
use portico_core::{
    Accounts, Catalogue, CertificateRenderer, Documents, FileUrls, GraphStore, Instruments, Mailer,
    Notifications, ObjectStore, Outbox, Publisher, Queue, UploadEvents, Users,
};

/// What every function may use: one port per aggregate of records, then the services.
pub struct Context {
    pub accounts: Arc<dyn Accounts>,
    pub users: Arc<dyn Users>,
    pub instruments: Arc<dyn Instruments>,
    pub notifications: Arc<dyn Notifications>,
    pub documents: Arc<dyn Documents>,
    pub catalogue: Arc<dyn Catalogue>,
    /// The traceability graph the change records project to (it may lag the records).
    pub graph: Arc<dyn GraphStore>,
    /// Messages to MQTT clients (user notification topics, instrument commands).
    pub publisher: Arc<dyn Publisher>,
    /// E-mails to send.
    pub outbox: Arc<dyn Outbox>,
    /// Delivers what the outbox holds (the outbox worker's business).
    pub mailer: Arc<dyn Mailer>,
    /// Uploaded files.
    pub objects: Arc<dyn ObjectStore>,
    /// Signed links to send and fetch files.
    pub file_urls: Arc<dyn FileUrls>,
    /// Durable queues (upload events).
    pub queue: Arc<dyn Queue>,
    /// Tells the upload worker a file is stored (locally; on AWS, S3 does).
    pub upload_events: Arc<dyn UploadEvents>,
    /// PDF documents (Certificates of Analysis).
    pub renderer: Arc<dyn CertificateRenderer>,
    /// The log lines this deployment wrote (locally the log store; on AWS, OpenSearch).
    pub logs: Arc<dyn LogStore>,
    /// Who changed what (written by the record stores beside each change; read here).
    pub audit: Arc<dyn portico_core::audit::AuditTrail>,
    /// The reporting warehouse (loaded from the graph's changes; it may lag them).
    pub warehouse: Arc<dyn portico_core::warehouse::Warehouse>,
    pub settings: Settings,
}

/// The functions a rule may name, and the one place that calls them.
pub const RULE_FUNCTIONS: &[&str] = &["instrument_alert", "record_lot_use"];

/// Runs the function a rule named with what the rule selected.
pub async fn run_rule_function(
    ctx: &Context,
    function: &str,
    input: serde_json::Value,
) -> portico_core::Result<()> {
    // The hosts run this inside the invocation's audit scope (the instrument that sent the event).
    match function {
        "instrument_alert" => alerts::instrument_alert(ctx, &input).await.map(|_| ()),
        "record_lot_use" => trace::record_lot_use(ctx, &input).await.map(|_| ()),
        other => Err(portico_core::Error::Unexpected(anyhow::anyhow!(
            "no rule function named `{other}`"
        ))),
    }
}

/// Who acts in a rule invocation: the instrument whose event it is (the rule's `serial`, or the
/// topic's), else the function itself; with the invocation's request id.
pub fn rule_acting(
    function: &str,
    serial: Option<&str>,
    request_id: Option<String>,
) -> portico_core::audit::Acting {
    use portico_core::audit::{Acting, Actor};
    let actor = match serial {
        Some(serial) if !serial.is_empty() => Actor::instrument(serial),
        _ => Actor::system(function),
    };
    Acting::new(actor, request_id)
}

/// Deployment facts functions need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This deployment's region; the default home region of new accounts.
    pub region: String,
    /// Token group that makes a caller a platform admin.
    pub admin_group: String,
    /// Token group that makes a caller platform support staff.
    pub support_group: String,
    /// How long upload and download links stay valid.
    pub upload_url_ttl_secs: u64,
    /// The largest file accepted.
    pub max_upload_bytes: u64,
    /// The manufacturer's name on certificates.
    pub issuer_name: String,
}
