//! Domain types: accounts, users, roles, and the caller of a function.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What a user may do. `admin` and `support` are platform roles, granted by identity-provider
/// groups; the others are account roles, granted by Portico's own user records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Support,
    AccountAdmin,
    LabManager,
    Scientist,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::Admin, Role::Support, Role::AccountAdmin, Role::LabManager, Role::Scientist];

    /// Platform roles come from the identity provider's groups, never from an API call.
    pub fn is_platform(self) -> bool {
        matches!(self, Role::Admin | Role::Support)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Support => "support",
            Role::AccountAdmin => "account_admin",
            Role::LabManager => "lab_manager",
            Role::Scientist => "scientist",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What kind of organisation an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A laboratory, hospital or company that buys and runs the manufacturer's products.
    Customer,
    /// A reseller that receives shipments on behalf of customers.
    Distributor,
    /// The manufacturer's own sites and teams.
    Internal,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Distributor => "distributor",
            AccountKind::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<AccountKind> {
        [AccountKind::Customer, AccountKind::Distributor, AccountKind::Internal]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A customer organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    /// Decimal string; unique across all regions, strictly increasing within a region.
    pub account_number: String,
    pub name: String,
    pub kind: AccountKind,
    /// The account's home region (where its data is kept); account numbers are unique across regions.
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A person known to Portico: either a member of one account, or platform staff (no account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    /// The identity provider's subject; matched byte for byte after ASCII case folding
    /// (`sub_key`).
    pub sub: String,
    pub email: String,
    pub display_name: String,
    pub account_id: Option<String>,
    pub roles: Vec<Role>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Milliseconds since the Unix epoch: how the change table, the graph and the logs keep times.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The instant `ms` milliseconds after the Unix epoch; `None` when out of range.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Whether `value` may be an identifier that becomes part of a storage key, an MQTT topic level
/// or a URL path segment (serials, SKUs, lot numbers): 1 to 64 ASCII letters, digits, `-`, `_`
/// or `.`, neither starting nor ending with `.` and without `..` (which object stores refuse).
pub fn is_key_safe_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.')
        && !value.ends_with('.')
        && !value.contains("..")
}

/// What a caller is told when `is_key_safe_id` refuses a value.
pub const KEY_SAFE_ID_RULE: &str = "must be 1 to 64 letters, digits, '-', '_' or '.', not starting or ending with '.' nor containing '..'";

/// The form of a subject that stores index and match: ASCII letters folded to lower case (Okta
/// subjects are often e-mail addresses, typed in any case), every other byte kept. No trimming
/// and no Unicode folding: `"karl "` or `"\u{212A}arl"` (a Kelvin sign) are other subjects than
/// `karl`, never aliases of it.
pub fn sub_key(sub: &str) -> String {
    sub.to_ascii_lowercase()
}

/// Who is calling a function: what the token proved, and Portico's record of that person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    /// Portico's record, when there is one. A caller without a record may only ask who they are.
    pub user: Option<User>,
}

impl Caller {
    pub fn roles(&self) -> &[Role] {
        self.user.as_ref().map_or(&[], |u| u.roles.as_slice())
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    pub fn account_id(&self) -> Option<&str> {
        self.user.as_ref().and_then(|u| u.account_id.as_deref())
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }

    /// Platform staff who see every account.
    pub fn sees_all_accounts(&self) -> bool {
        self.has_role(Role::Admin) || self.has_role(Role::Support)
    }

    /// Whether the caller belongs to `account_id`.
    pub fn is_member_of(&self, account_id: &str) -> bool {
        self.account_id() == Some(account_id)
    }
}

/// A lab instrument registered to an account. It connects to the broker with its serial as the
/// username and its device secret (shown once, at registration) as the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Instrument {
    pub serial: String,
    pub model: String,
    pub name: String,
    pub account_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A message for one user: stored for `GET /v1/notifications` and published on their topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    /// What happened, e.g. `instrument_alert`.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Structured details (the instrument event, for alerts).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<OffsetDateTime>,
}

/// An e-mail to send: what goes into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundEmail {
    /// Our message id: the outbox key, and sent along (SendGrid `custom_args`) so a duplicate
    /// delivery after a crash can be recognised.
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// What made it (e.g. `instrument_alert`), for tracing a message back to its cause.
    pub category: String,
}

/// Where an outbox entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Claimed by a sender; if the sender dies, the claim lapses and it is sent again.
    Sending,
    Sent,
    /// Refused by the provider, or out of attempts; `last_error` says why.
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Pending => "pending",
            EmailStatus::Sending => "sending",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<EmailStatus> {
        [EmailStatus::Pending, EmailStatus::Sending, EmailStatus::Sent, EmailStatus::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// An e-mail in the outbox, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutboxEntry {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub category: String,
    pub status: EmailStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The provider's id for the accepted message (SendGrid's `X-Message-Id`).
    pub provider_message_id: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

/// Where a document is in its life: uploaded files are checked by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Waiting for its upload.
    Pending,
    /// Its upload link is in use: the one PUT that reserved the document is streaming its bytes
    /// (back to `pending` if that PUT fails).
    Uploading,
    /// Uploaded; the worker is checking it.
    Processing,
    Ready,
    Failed,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Uploading => "uploading",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DocumentStatus> {
        [
            DocumentStatus::Pending,
            DocumentStatus::Uploading,
            DocumentStatus::Processing,
            DocumentStatus::Ready,
            DocumentStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    /// Ready and failed documents never change again.
    pub fn is_final(self) -> bool {
        matches!(self, DocumentStatus::Ready | DocumentStatus::Failed)
    }
}

/// A file a user uploaded to their account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: String,
    pub account_id: String,
    /// The user who asked for the upload; they are told when it is checked.
    pub uploaded_by: String,
    /// The name the user gave; shown, never used as a storage key.
    pub filename: String,
    pub content_type: String,
    /// The size declared when the upload was requested; the upload must match it exactly.
    pub size: u64,
    pub status: DocumentStatus,
    pub failure_reason: Option<String>,
    /// What the worker found: size, SHA-256, sniffed type, and for CSV run files rows, columns
    /// and the time span.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The account's instrument that produced the file (a run file), when the uploader said so.
    #[serde(default)]
    pub instrument_serial: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl Document {
    /// The object-store key: derived from ids only, never from the user's file name.
    pub fn object_key(&self) -> String {
        format!("documents/{}/{}", self.account_id, self.id)
    }
}

/// A product in the manufacturer's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub category: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// One quality-control test of a lot, as printed on its Certificate of Analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QcTest {
    pub name: String,
    pub method: String,
    pub specification: String,
    pub result: String,
    pub unit: String,
    pub pass: bool,
}

/// A manufactured lot of a product, with its QC results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lot {
    pub lot_number: String,
    pub sku: String,
    /// `YYYY-MM-DD`
    pub manufactured_on: String,
    /// `YYYY-MM-DD`
    pub expires_on: String,
    pub qc_tests: Vec<QcTest>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Set once, when the lot is recalled; never cleared.
    #[serde(default)]
    pub recall: Option<Recall>,
}

/// Why and when a lot was recalled, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Recall {
    pub reason: String,
    /// The admin's user id.
    pub recalled_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recalled_at: OffsetDateTime,
}

/// An instrument reported an error or a critical condition (an `instrument_alert` rule hit):
/// recorded once per event, whoever was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Derived from the event, so a redelivered event records nothing new.
    pub id: String,
    pub serial: String,
    /// The instrument's account when the alert was raised.
    pub account_id: String,
    /// `error` or `critical` (what the instrument said).
    pub severity: String,
    /// The instrument's code for the condition, when it sent one.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: OffsetDateTime,
}

/// A user began using a token: one sign-in per token the identity provider issued (its subject
/// and issue time), however many requests the token makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignIn {
    /// Derived from the token's subject and issue time, so every use of one token is one sign-in.
    pub id: String,
    pub user_id: String,
    /// The user's account (none for platform staff).
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub signed_in_at: OffsetDateTime,
}

/// An instrument loaded a lot (it said so in a `lot_loaded` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LotUse {
    /// Derived from the event, so a redelivered event records nothing new.
    pub id: String,
    pub lot_number: String,
    pub serial: String,
    /// The instrument's account when the lot was loaded.
    pub account_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub loaded_at: OffsetDateTime,
}

/// A lot sent to an account: what entitles the account's members to the lot's certificate.
/// Shipments from the manufacturer have no `from_account_id`; a distributor's onward shipment
/// names the distributor, and never sends more of a lot than the distributor received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    pub id: String,
    pub lot_number: String,
    /// The distributor that sent it on; absent for shipments from the manufacturer.
    #[serde(default)]
    pub from_account_id: Option<String>,
    pub account_id: String,
    /// `YYYY-MM-DD`
    pub shipped_on: String,
    pub quantity: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}
