//! The table's layout: every key of every record, written once, as functions.
//!
//! Every record is an item keyed `pk` / `sk` holding the record as JSON in `data`, plus the
//! attributes conditions and indexes need. Three sparse global secondary indexes (`gsi1`..`gsi3`,
//! keys `gsiNpk` / `gsiNsk`) serve the listings; their sort keys start with the creation time in
//! nanoseconds, zero-padded (`order`), so "oldest first" and "newest first" are index order.
//!
//! | record | pk | sk | gsi1 | gsi2 | gsi3 |
//! |---|---|---|---|---|---|
//! | account | `ACCOUNT#id` | `#` | `ACCOUNTS` | | |
//! | user | `USER#id` | `#` | `ACCOUNT_USERS#account` (`-`: none) | `USERS` | |
//! | claim on a sub | `SUB#lowercased sub` | `#` | | | |
//! | instrument | `INSTRUMENT#serial` | `#` | `ACCOUNT_INSTRUMENTS#account` | `INSTRUMENTS` | |
//! | notification | `NOTIFICATIONS#user` | id | `NOTIFICATIONS#user` | | |
//! | document | `DOCUMENT#id` | `#` | `ACCOUNT_DOCUMENTS#account` | | |
//! | product / lot | `PRODUCT#sku` / `LOT#number` | `#` | `PRODUCTS` / `LOTS` | | |
//! | shipment | `SHIPMENT#id` | `#` | `LOT_SHIPMENTS#lot` | `ACCOUNT_SHIPMENTS#account` | `SHIPMENTS` |
//! | what an account holds of a lot | `STOCK#account#lot` | `#` | | | |
//! | lot use | `LOT_USE#id` | `#` | `LOT_USES` | | |
//! | e-mail | `EMAIL#id` | `#` | `OUTBOX_DUE` (while due), by due time | `OUTBOX` | |
//! | sequence block | `SEQ#name#region` | `#` | | | |

use portico_core::domain::sub_key;
use time::OffsetDateTime;

/// A global secondary index: its name and key attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Index {
    pub(crate) name: &'static str,
    pub(crate) pk: &'static str,
    pub(crate) sk: &'static str,
}

pub(crate) const GSI1: Index = Index { name: "gsi1", pk: "gsi1pk", sk: "gsi1sk" };
pub(crate) const GSI2: Index = Index { name: "gsi2", pk: "gsi2pk", sk: "gsi2sk" };
pub(crate) const GSI3: Index = Index { name: "gsi3", pk: "gsi3pk", sk: "gsi3sk" };
/// The indexes the table must have (see `provision`).
pub(crate) const INDEXES: [Index; 3] = [GSI1, GSI2, GSI3];

/// The sort key of every record that is one item.
pub(crate) const ONE: &str = "#";

pub(crate) fn account(id: &str) -> String {
    format!("ACCOUNT#{id}")
}
pub(crate) const ACCOUNTS: &str = "ACCOUNTS";

pub(crate) fn user(id: &str) -> String {
    format!("USER#{id}")
}
/// The users of an account, or (with `None`) the users of no account.
pub(crate) fn account_users(account: Option<&str>) -> String {
    format!("ACCOUNT_USERS#{}", account.unwrap_or("-"))
}
pub(crate) const USERS: &str = "USERS";
/// The item that makes a subject unique: one per `sub_key`.
pub(crate) fn sub_claim(sub: &str) -> String {
    format!("SUB#{}", sub_key(sub))
}

pub(crate) fn instrument(serial: &str) -> String {
    format!("INSTRUMENT#{serial}")
}
pub(crate) fn account_instruments(account: &str) -> String {
    format!("ACCOUNT_INSTRUMENTS#{account}")
}
pub(crate) const INSTRUMENTS: &str = "INSTRUMENTS";

/// One user's notifications: the item partition (sort key: the id) and its index partition.
pub(crate) fn notifications(user: &str) -> String {
    format!("NOTIFICATIONS#{user}")
}

pub(crate) fn document(id: &str) -> String {
    format!("DOCUMENT#{id}")
}
pub(crate) fn account_documents(account: &str) -> String {
    format!("ACCOUNT_DOCUMENTS#{account}")
}

pub(crate) fn product(sku: &str) -> String {
    format!("PRODUCT#{sku}")
}
pub(crate) const PRODUCTS: &str = "PRODUCTS";
pub(crate) fn lot(lot_number: &str) -> String {
    format!("LOT#{lot_number}")
}
pub(crate) const LOTS: &str = "LOTS";
/// What an account holds of a lot (attribute `held`: received minus sent on).
pub(crate) fn stock(account: &str, lot_number: &str) -> String {
    format!("STOCK#{account}#{lot_number}")
}
pub(crate) fn lot_use(id: &str) -> String {
    format!("LOT_USE#{id}")
}
pub(crate) const LOT_USES: &str = "LOT_USES";
pub(crate) fn alert(id: &str) -> String {
    format!("ALERT#{id}")
}
pub(crate) const ALERTS: &str = "ALERTS";
pub(crate) fn sign_in(id: &str) -> String {
    format!("SIGN_IN#{id}")
}
pub(crate) const SIGN_INS: &str = "SIGN_INS";
pub(crate) fn shipment(id: &str) -> String {
    format!("SHIPMENT#{id}")
}
pub(crate) fn lot_shipments(lot_number: &str) -> String {
    format!("LOT_SHIPMENTS#{lot_number}")
}
pub(crate) fn account_shipments(account: &str) -> String {
    format!("ACCOUNT_SHIPMENTS#{account}")
}
pub(crate) const SHIPMENTS: &str = "SHIPMENTS";

const EMAIL: &str = "EMAIL#";
pub(crate) fn email(id: &str) -> String {
    format!("{EMAIL}{id}")
}
/// The e-mail id of an e-mail's `pk`.
pub(crate) fn email_id(pk: &str) -> &str {
    pk.trim_start_matches(EMAIL)
}
/// E-mails due to be sent, by due time.
pub(crate) const OUTBOX_DUE: &str = "OUTBOX_DUE";
/// Every e-mail, by creation time.
pub(crate) const OUTBOX: &str = "OUTBOX";

/// The warehouse stream-poller's lease and checkpoint (one item: the holder, until when, and
/// the stream position it has put on Kinesis).
pub(crate) const WAREHOUSE_STREAM: &str = "STREAM#warehouse";

/// One region's block of a sequence.
pub(crate) fn sequence(name: &str, region: &str) -> String {
    format!("SEQ#{name}#{region}")
}

/// The domain records that are one item each, by the first part of their `pk`: what a stream
/// record's new image is (see `stream.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Account,
    User,
    Instrument,
    Document,
    Product,
    Lot,
    Shipment,
    LotUse,
    Alert,
    SignIn,
}

/// The aggregate an item's `pk` belongs to; `None` for items that are not domain records (sub
/// claims, stock, notifications, e-mails, sequence blocks).
pub(crate) fn aggregate(pk: &str) -> Option<Aggregate> {
    let (prefix, _) = pk.split_once('#')?;
    Some(match prefix {
        "ACCOUNT" => Aggregate::Account,
        "USER" => Aggregate::User,
        "INSTRUMENT" => Aggregate::Instrument,
        "DOCUMENT" => Aggregate::Document,
        "PRODUCT" => Aggregate::Product,
        "LOT" => Aggregate::Lot,
        "SHIPMENT" => Aggregate::Shipment,
        "LOT_USE" => Aggregate::LotUse,
        "ALERT" => Aggregate::Alert,
        "SIGN_IN" => Aggregate::SignIn,
        _ => return None,
    })
}

/// Index sort key of a record in creation order: nanoseconds, zero-padded, then the id for ties.
pub(crate) fn order(at: OffsetDateTime, id: &str) -> String {
    format!("{:020}#{id}", at.unix_timestamp_nanos().max(0))
}

/// Index sort key of an e-mail due at `due_ms`.
pub(crate) fn due(due_ms: u64, id: &str) -> String {
    format!("{due_ms:020}#{id}")
}
