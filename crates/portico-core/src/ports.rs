//! Ports: what functions need from the world, as traits. Adapters implement them (SQLite and files
//! locally, AWS services in the cloud); functions only ever see these traits.

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::domain::{
    Account, AccountKind, Alert, Document, DocumentStatus, EmailStatus, Instrument, Lot, LotUse,
    Notification, OutboundEmail, OutboxEntry, Product, Recall, Role, Shipment, SignIn, User,
};
use crate::error::{Error, Result};

/// One page of a list request. `cursor` is opaque to everyone but the adapter that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    /// Checks a caller-supplied limit; `None` means the default.
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Result<Self> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        Ok(PageRequest { limit, cursor })
    }
}

/// One page of results; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of a listing the caller may see nothing of.
    pub fn empty() -> Page<T> {
        Page { items: Vec::new(), next_cursor: None }
    }

    /// The page of `items` fetched with one more than `limit`: the extra one says there is a
    /// next page, which starts after the last item kept (`cursor` of it).
    pub fn from_one_extra(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Page<T> {
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// An account about to be created; the store gives it its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
    pub region: String,
    pub created_at: time::OffsetDateTime,
}

/// What every record port's adapter promises: a duplicate is `Error::Conflict`, and a cursor it
/// did not make is `Error::Validation` on the field `cursor`. One adapter may serve several record
/// ports (the SQLite store and the DynamoDB table serve them all); each port is one aggregate, so
/// a new store (a graph, a warehouse) serves only what it holds.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates the account with the next number of this region's account-number sequence, taken
    /// in the same atomic write as the insert: the numbering keeps the `SequenceGenerator`
    /// contract, and numbers ascend in the order accounts are committed.
    async fn create_account(&self, account: &NewAccount) -> Result<Account>;
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    /// All accounts, or only `only` when it is given, oldest first.
    async fn list_accounts(&self, only: Option<&str>, page: &PageRequest) -> Result<Page<Account>>;
}

/// Users and their roles.
#[async_trait]
pub trait Users: Send + Sync + 'static {
    /// Inserts a user; a `sub` already known (compared case-insensitively) is a conflict.
    async fn insert_user(&self, user: &User) -> Result<()>;
    /// The user with this `sub`, compared case-insensitively.
    async fn user_by_sub(&self, sub: &str) -> Result<Option<User>>;
    async fn user_by_id(&self, id: &str) -> Result<Option<User>>;
    async fn set_user_roles(&self, user_id: &str, roles: &[Role]) -> Result<()>;
    /// The users of one account, oldest first.
    async fn list_users(&self, account_id: &str, page: &PageRequest) -> Result<Page<User>>;
    /// Users holding `role`: of one account, or (with `None`) of any account and none.
    async fn users_with_role(&self, account_id: Option<&str>, role: Role) -> Result<Vec<User>>;
    /// Records a sign-in; false when this one (its id) is already recorded.
    async fn record_sign_in(&self, sign_in: &SignIn) -> Result<bool>;
    /// All sign-ins, oldest first.
    async fn list_sign_ins(&self, page: &PageRequest) -> Result<Page<SignIn>>;
}

/// Instruments and the hashes of their device secrets.
#[async_trait]
pub trait Instruments: Send + Sync + 'static {
    /// Registers an instrument with the hash of its device secret; a known serial is a conflict.
    async fn create_instrument(&self, instrument: &Instrument, secret_hash: &str) -> Result<()>;
    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>>;
    /// The stored hash of the instrument's device secret.
    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>>;
    /// All instruments, or one account's, oldest first.
    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>>;
    /// Records an instrument's alert; false when this one (its id) is already recorded.
    async fn record_alert(&self, alert: &Alert) -> Result<bool>;
    /// All alerts, oldest first.
    async fn list_alerts(&self, page: &PageRequest) -> Result<Page<Alert>>;
}

/// Users' notifications.
#[async_trait]
pub trait Notifications: Send + Sync + 'static {
    /// Stores notifications; one whose id is already stored is left as it is (a redelivered
    /// event does not notify twice). Answers the ids that were new.
    async fn insert_notifications(&self, notifications: &[Notification]) -> Result<Vec<String>>;
    /// One user's notifications, newest first.
    async fn list_notifications(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>>;
    /// Marks one of the user's notifications read (keeping the first read time); `None` when the
    /// user has no such notification.
    async fn mark_notification_read(
        &self,
        user_id: &str,
        id: &str,
        at: time::OffsetDateTime,
    ) -> Result<Option<Notification>>;
}

/// Uploaded documents' records (their bytes are in the `ObjectStore`).
#[async_trait]
pub trait Documents: Send + Sync + 'static {
    async fn create_document(&self, document: &Document) -> Result<()>;
    async fn document(&self, id: &str) -> Result<Option<Document>>;
    /// One account's documents, newest first.
    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>>;
    /// Moves a document as `change` says, only if its status is one of `change.from` (so
    /// concurrent or repeated workers cannot undo each other); returns whether it moved.
    async fn transition_document(&self, id: &str, change: Transition<'_>) -> Result<bool>;
}

/// A document's move from one of `from` to `to`, with why it failed or what was found in it.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub from: &'a [DocumentStatus],
    pub to: DocumentStatus,
    /// Kept as it was when `None`.
    pub failure_reason: Option<&'a str>,
    /// Kept as it was when `None`.
    pub metadata: Option<&'a serde_json::Value>,
}

impl<'a> Transition<'a> {
    /// From one of `from` to `to`, changing nothing else.
    pub fn new(from: &'a [DocumentStatus], to: DocumentStatus) -> Transition<'a> {
        Transition { from, to, failure_reason: None, metadata: None }
    }
}

/// The product catalogue: products, lots with their QC results and recalls, shipments of lots to
/// accounts, and the lots instruments loaded.
#[async_trait]
pub trait Catalogue: Send + Sync + 'static {
    /// A known SKU is a conflict.
    async fn create_product(&self, product: &Product) -> Result<()>;
    async fn product(&self, sku: &str) -> Result<Option<Product>>;
    async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>>;
    /// A known lot number is a conflict.
    async fn create_lot(&self, lot: &Lot) -> Result<()>;
    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>>;
    /// All lots, oldest first.
    async fn list_lots(&self, page: &PageRequest) -> Result<Page<Lot>>;
    /// Recalls the lot unless it already is: answers the lot as stored (with the first recall),
    /// and whether this call recalled it; `None` for an unknown lot.
    async fn recall_lot(&self, lot_number: &str, recall: &Recall) -> Result<Option<(Lot, bool)>>;
    /// Records a shipment. An onward shipment (`from_account_id`) is checked in the same atomic
    /// write against what the sender holds of the lot (received minus already sent on): more
    /// than that is `Error::Validation` on `quantity`, so concurrent shipments cannot overdraw.
    async fn create_shipment(&self, shipment: &Shipment) -> Result<()>;
    /// How much of a lot the account holds: what it received minus what it sent on.
    async fn held(&self, account_id: &str, lot_number: &str) -> Result<u64>;
    /// Records that an instrument loaded a lot; false when this use (its id) is already recorded.
    async fn record_lot_use(&self, lot_use: &LotUse) -> Result<bool>;
    /// All lot uses, oldest first.
    async fn list_lot_uses(&self, page: &PageRequest) -> Result<Page<LotUse>>;
    /// Shipments of one lot, or to one account, oldest first.
    async fn list_shipments(
        &self,
        lot_number: Option<&str>,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Shipment>>;
}

/// A stream of object bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

/// Objects (uploaded files): written from a stream, visible only once complete.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes `key` from `body`, which must be exactly `size` bytes: a longer body is
    /// `TooLarge`, a shorter or broken one `Validation`, and either leaves nothing behind.
    async fn put(&self, key: &str, body: ByteStream, size: u64) -> Result<StoredObject>;
    /// Reads `key`; `NotFound` if it does not exist.
    async fn get(&self, key: &str) -> Result<ByteStream>;
}

/// A document's bytes are stored: what the upload worker is told. On the wire it is S3's
/// `ObjectCreated` notification (S3 sends it on AWS; the local host writes the same), but only
/// the hosts and queue adapters know that shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCompleted {
    /// The object's key, decoded (`documents/<account>/<id>`).
    pub key: String,
    pub size: u64,
    /// The stored bytes' SHA-256, hex.
    pub sha256: String,
    /// The uploader's user id.
    pub uploaded_by: String,
}

/// Tells the upload worker that an upload is stored. On AWS, S3 does this itself.
#[async_trait]
pub trait UploadEvents: Send + Sync + 'static {
    async fn stored(&self, upload: &UploadCompleted) -> Result<()>;
}

/// The header every upload PUT carries beside `Content-Type`: create-only. S3 refuses (412) a
/// conditional PUT once the object exists, so an upload link can never replace a stored file;
/// presigned URLs sign it in, and upload tickets tell clients to send it.
pub const UPLOAD_CONDITION: (&str, &str) = ("If-None-Match", "*");

/// Where clients send and fetch document bytes: signed, expiring URLs (locally, routes of the
/// local host; on AWS, S3 presigned URLs). A URL may be relative to the API's base URL.
#[async_trait]
pub trait FileUrls: Send + Sync + 'static {
    async fn upload_url(&self, document: &Document, expires_at: i64) -> Result<String>;
    async fn download_url(&self, document: &Document, expires_at: i64) -> Result<String>;
}

/// A queue message's attributes, by name.
pub type Attributes = BTreeMap<String, String>;

/// A message taken from a queue: invisible to other receivers until its visibility timeout
/// passes, unless deleted with `receipt` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    /// Proves this receive; a later receive of the same message makes it stale.
    pub receipt: String,
    pub body: String,
    pub attributes: Attributes,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub sent_at_ms: i64,
}

/// How a queue is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub oldest_age_ms: u64,
    pub dead: u64,
}

/// How to take messages from a queue: up to `max`, waiting up to `wait` for the first (long
/// polling); each becomes invisible to other receivers for `visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive {
    pub max: u32,
    pub visibility: Duration,
    pub wait: Duration,
}

/// Durable queues with SQS semantics: at-least-once delivery, visibility timeouts, receive
/// counts, and a dead-letter queue (`<name>-dead`) for messages received too often.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    async fn send(&self, queue: &str, body: &str, attributes: &Attributes) -> Result<String>;
    /// Messages as `how` asks. A message already received `max_receives` times goes to the
    /// dead-letter queue instead.
    async fn receive(&self, queue: &str, how: Receive) -> Result<Vec<QueueMessage>>;
    /// Deletes the message this receipt belongs to; false if the receipt is stale.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<bool>;
    /// Hides the message this receipt belongs to for `lease` from now (zero: visible again);
    /// false if the receipt is stale.
    async fn change_visibility(&self, queue: &str, receipt: &str, lease: Duration) -> Result<bool>;
    async fn stats(&self, queue: &str) -> Result<QueueStats>;
}

/// Messages to clients of the broker, sent by the server itself (AWS: IoT Data Plane).
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8) -> Result<()>;
}

/// E-mails to send. Enqueueing is durable; delivery is the outbox worker's business.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Queues `email`; an id already queued is left as it is.
    async fn enqueue(&self, email: &OutboundEmail) -> Result<()>;
    /// Claims up to `limit` e-mails whose attempt is due (pending, or a sender's claim that
    /// lapsed) for `lease`; each claim counts as an attempt.
    async fn claim_due(&self, limit: u32, lease: Duration) -> Result<Vec<(OutboundEmail, u32)>>;
    async fn mark_sent(&self, id: &str, provider_message_id: Option<&str>) -> Result<()>;
    /// Puts a claimed e-mail back, to be tried again after `after`.
    async fn retry_later(&self, id: &str, after: Duration, error: &str) -> Result<()>;
    async fn mark_failed(&self, id: &str, error: &str) -> Result<()>;
    /// Entries newest first, optionally only those with `status`.
    async fn list_outbox(
        &self,
        status: Option<EmailStatus>,
        page: &PageRequest,
    ) -> Result<Page<OutboxEntry>>;
}

/// What the e-mail provider made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted {
        provider_message_id: Option<String>,
    },
    /// Worth trying again (rate limited, provider error, network trouble), not before `after`.
    RetryLater {
        reason: String,
        after: Option<Duration>,
    },
    /// Will never be accepted as it is (bad address, bad key, too large).
    Rejected {
        reason: String,
    },
}

/// Sends e-mail (SendGrid, or the local sink).
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn deliver(&self, email: &OutboundEmail) -> Delivery;
}

/// The part of the number space one region may hand out: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRange {
    pub start: u64,
    pub end: u64,
}

/// Named sequences of numbers that stay correct across regions (account numbers follow the same
/// contract, allocated by the store itself; see `Accounts::create_account`).
///
/// Every adapter keeps this contract:
/// - every value lies in the `SequenceRange` configured for the adapter's region; regions that
///   share a sequence are given disjoint ranges, so their values never collide, even where the
///   backing store replicates between regions last-writer-wins (DynamoDB global tables);
/// - within a region, a value handed out after another one was returned is larger;
/// - no value is ever handed out twice, whatever crashes; values may be skipped.
///
/// An exhausted range is `Error::Unavailable`: an operator must give the region a new range.
#[async_trait]
pub trait SequenceGenerator: Send + Sync + 'static {
    async fn next(&self, sequence: &str) -> Result<u64>;
}

/// What a Certificate of Analysis shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateData {
    /// The manufacturer's name, printed in the header.
    pub issuer: String,
    /// `YYYY-MM-DD`; also the PDF's document date, so the same lot renders the same bytes.
    pub issued_on: String,
    pub product: Product,
    /// With its recall, if it was recalled: the certificate says so.
    pub lot: Lot,
    /// The lot record's last audit record (the lot and its QC results as certified), so a
    /// reviewer can go from the PDF to its history; `None` where no trail is kept.
    pub audit: Option<AuditRef>,
}

/// Where a document's data is in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRef {
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    pub digest: String,
}

/// Renders documents (Certificates of Analysis) to PDF.
#[async_trait]
pub trait CertificateRenderer: Send + Sync + 'static {
    async fn certificate(&self, data: &CertificateData) -> Result<Vec<u8>>;
}
