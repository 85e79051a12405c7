//! The `Store` and `Outbox` ports on one DynamoDB table (single-table design).
//!
//! Every record is an item keyed `pk` / `sk` holding the record as JSON in `data`, plus the
//! attributes conditions and indexes need. Three sparse global secondary indexes (`gsi1`..`gsi3`,
//! keys `gsiNpk` / `gsiNsk`) serve the listings; their sort keys start with the creation time in
//! nanoseconds, zero-padded, so "oldest first" and "newest first" are index order.
//!
//! | record | pk | sk | gsi1 | gsi2 | gsi3 |
//! |---|---|---|---|---|---|
//! | account | `ACCOUNT#id` | `#` | `ACCOUNTS` | | |
//! | user | `USER#id` | `#` | `ACCOUNT_USERS#account` (`-`: none) | `USERS` | |
//! | claim on a sub | `SUB#lowercased sub` | `#` | | | |
//! | instrument | `INSTRUMENT#serial` | `#` | `ACCOUNT_INSTRUMENTS#account` | `INSTRUMENTS` | |
//! | notification | `NOTIFICATIONS#user` | id | `NOTIFICATIONS#user` | | |
//! | document | `DOCUMENT#id` | `#` | `ACCOUNT_DOCUMENTS#account` | | |
//! | product / lot | `PRODUCT#sku` / `LOT#number` | `#` | `PRODUCTS` / - | | |
//! | shipment | `SHIPMENT#id` | `#` | `LOT_SHIPMENTS#lot` | `ACCOUNT_SHIPMENTS#account` | `SHIPMENTS` |
//! | e-mail | `EMAIL#id` | `#` | `OUTBOX_DUE` (while due), by due time | `OUTBOX` | |
//!
//! Updates of a record read it, change the JSON and write it back on condition that `data` is
//! still what was read (optimistic concurrency); a lost race is read again and retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use base64::Engine as _;
use portico_core::domain::sub_key;
use portico_core::domain::{
    Account, Document, DocumentStatus, EmailStatus, Instrument, Lot, Notification, OutboundEmail,
    OutboxEntry, Product, Role, Shipment, User,
};
use portico_core::ports::{NewAccount, Page, PageRequest};
use portico_core::{Error, FieldError, Outbox, Result, SequenceGenerator, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{is_conditional_failure, sdk_error};
use crate::sequence::{as_u64, number};

type Item = HashMap<String, AttributeValue>;

/// The account-number sequence (the same name the local store uses).
const ACCOUNT_NUMBERS: &str = "account_number";
/// Optimistic updates retried this often before the store reports itself unavailable.
const MAX_UPDATE_ATTEMPTS: u32 = 16;

#[derive(Debug, Clone, Copy)]
struct Index {
    name: &'static str,
    pk: &'static str,
    sk: &'static str,
}

const GSI1: Index = Index {
    name: "gsi1",
    pk: "gsi1pk",
    sk: "gsi1sk",
};
const GSI2: Index = Index {
    name: "gsi2",
    pk: "gsi2pk",
    sk: "gsi2sk",
};
const GSI3: Index = Index {
    name: "gsi3",
    pk: "gsi3pk",
    sk: "gsi3sk",
};
/// The indexes the table must have (see `provision`).
pub(crate) const INDEXES: [(&str, &str, &str); 3] = [
    ("gsi1", "gsi1pk", "gsi1sk"),
    ("gsi2", "gsi2pk", "gsi2sk"),
    ("gsi3", "gsi3pk", "gsi3sk"),
];

pub struct DynamoStore {
    client: Client,
    table: String,
    account_numbers: Arc<dyn SequenceGenerator>,
}

impl DynamoStore {
    /// The store on `table`; accounts are numbered by `account_numbers` (the region's sequence).
    pub fn new(
        client: Client,
        table: &str,
        account_numbers: Arc<dyn SequenceGenerator>,
    ) -> DynamoStore {
        DynamoStore {
            client,
            table: table.to_string(),
            account_numbers,
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading item", e))?;
        Ok(output.item().cloned())
    }

    async fn get_record<T: DeserializeOwned>(&self, pk: String, sk: &str) -> Result<Option<T>> {
        self.get(pk, sk)
            .await?
            .map(|item| record(&item))
            .transpose()
    }

    /// Writes a new item; `conflict` is the message when its key is taken.
    async fn create(&self, item: Item, conflict: String) -> Result<()> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(Error::Conflict(conflict)),
            Err(e) => Err(sdk_error("writing item", e)),
        }
    }

    /// Replaces `item` if its `data` is still `old_data`; false when it changed meanwhile.
    async fn replace_if_unchanged(&self, item: Item, old_data: &AttributeValue) -> Result<bool> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#data = :old")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":old", old_data.clone())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("updating item", e)),
        }
    }

    /// Reads a record, lets `change` edit it (returning false leaves it as it is) and writes it
    /// back unless it changed meanwhile, in which case everything is done again.
    async fn update<T, F>(&self, pk: String, sk: &str, mut change: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut T) -> bool,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some(mut item) = self.get(pk.clone(), sk).await? else {
                return Ok(None);
            };
            let mut value: T = record(&item)?;
            if !change(&mut value) {
                return Ok(Some(value));
            }
            let old = item
                .get("data")
                .cloned()
                .ok_or_else(|| corrupt("item without data"))?;
            item.insert("data".into(), json(&value)?);
            if self.replace_if_unchanged(item, &old).await? {
                return Ok(Some(value));
            }
        }
        Err(Error::Unavailable(format!(
            "{pk}: {MAX_UPDATE_ATTEMPTS} concurrent updates in a row; try again"
        )))
    }

    /// One page of records of an index partition.
    async fn page<T: DeserializeOwned>(
        &self,
        index: Index,
        partition: String,
        newest_first: bool,
        page: &PageRequest,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<Page<T>> {
        let (items, next_cursor) = self
            .raw_page(index, partition, newest_first, page, keep)
            .await?;
        Ok(Page {
            items: items.iter().map(record).collect::<Result<_>>()?,
            next_cursor,
        })
    }

    /// One page of items of an index partition, exactly `page.limit` items long unless it is the
    /// last (so the last page never points at an empty one). `keep` drops items (like a filter)
    /// without breaking the page size.
    async fn raw_page(
        &self,
        index: Index,
        partition: String,
        newest_first: bool,
        page: &PageRequest,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<(Vec<Item>, Option<String>)> {
        let limit = page.limit as usize;
        let mut start = decode_cursor(page.cursor.as_deref(), index, &partition)?;
        let mut items: Vec<Item> = Vec::new();
        loop {
            let want = (limit + 1 - items.len()) as i32;
            let output = self
                .query(index, &partition, newest_first, Some(want), start.take())
                .await?;
            items.extend(output.items().iter().filter(|i| keep(i)).cloned());
            if items.len() > limit {
                break;
            }
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| encode_cursor(last, index))
        } else {
            None
        };
        Ok((items, next_cursor))
    }

    /// One round trip of a listing: up to `limit` items of an index partition after `start`.
    async fn query(
        &self,
        index: Index,
        partition: &str,
        newest_first: bool,
        limit: Option<i32>,
        start: Option<Item>,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput> {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", index.pk)
            .expression_attribute_values(":pk", s(partition))
            .scan_index_forward(!newest_first)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("listing", e))
    }

    /// Every item of an index partition (for small partitions: users of an account, staff).
    async fn all(&self, index: Index, partition: String) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .query(index, &partition, false, None, start.take())
                .await?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
    }
}

// --- items -------------------------------------------------------------------------------------

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn json<T: Serialize>(value: &T) -> Result<AttributeValue> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("encoding record: {e}")))
}

/// A string attribute of an item.
fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn corrupt(what: &str) -> Error {
    Error::Unexpected(anyhow::anyhow!("unreadable item in the table: {what}"))
}

fn record<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let data = item
        .get("data")
        .and_then(|d| d.as_s().ok())
        .ok_or_else(|| corrupt("no data"))?;
    serde_json::from_str(data).map_err(|e| corrupt(&e.to_string()))
}

/// Sort key of a record in creation order: nanoseconds, zero-padded, then the id for ties.
fn order(at: OffsetDateTime, id: &str) -> String {
    format!("{:020}#{id}", at.unix_timestamp_nanos().max(0))
}

/// A new item: keys, the record, and its index entries.
fn item<T: Serialize>(
    pk: String,
    sk: &str,
    value: &T,
    indexes: &[(Index, String, String)],
) -> Result<Item> {
    let mut item = Item::new();
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    item.insert("data".into(), json(value)?);
    for (index, partition, sort) in indexes {
        item.insert(index.pk.into(), s(partition.clone()));
        item.insert(index.sk.into(), s(sort.clone()));
    }
    Ok(item)
}

// --- cursors -----------------------------------------------------------------------------------

/// The position after `item` in an index: the item's table and index keys, as base64url JSON.
fn encode_cursor(item: &Item, index: Index) -> String {
    let text = |name: &str| text(item, name).unwrap_or_default();
    let key = serde_json::json!([text("pk"), text("sk"), text(index.pk), text(index.sk)]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string())
}

fn decode_cursor(cursor: Option<&str>, index: Index, partition: &str) -> Result<Option<Item>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || {
        Error::Validation(vec![FieldError::new(
            "cursor",
            "not a cursor of this listing",
        )])
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let [pk, sk, ipk, isk]: [String; 4] = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    // A cursor positions within its own listing only.
    if ipk != partition {
        return Err(bad());
    }
    let mut key = Item::new();
    key.insert("pk".into(), s(pk));
    key.insert("sk".into(), s(sk));
    key.insert(index.pk.into(), s(ipk));
    key.insert(index.sk.into(), s(isk));
    Ok(Some(key))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn now_ms() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

// --- the store ---------------------------------------------------------------------------------

#[async_trait]
impl Store for DynamoStore {
    async fn create_account(&self, account: &NewAccount) -> Result<Account> {
        // Refuse a known id before taking a number, so a repeat does not use one up.
        if self
            .get(format!("ACCOUNT#{}", account.id), "#")
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!(
                "account `{}` already exists",
                account.id
            )));
        }
        let number = self.account_numbers.next(ACCOUNT_NUMBERS).await?;
        let created = Account {
            id: account.id.clone(),
            account_number: number.to_string(),
            name: account.name.clone(),
            kind: account.kind,
            region: account.region.clone(),
            created_at: account.created_at,
        };
        let item = item(
            format!("ACCOUNT#{}", created.id),
            "#",
            &created,
            &[(
                GSI1,
                "ACCOUNTS".into(),
                order(created.created_at, &created.id),
            )],
        )?;
        self.create(item, format!("account `{}` already exists", created.id))
            .await?;
        Ok(created)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        self.get_record(format!("ACCOUNT#{id}"), "#").await
    }

    async fn list_accounts(&self, only: Option<&str>, page: &PageRequest) -> Result<Page<Account>> {
        match only {
            Some(id) => {
                // One account at most: the cursor is checked like any other.
                decode_cursor(page.cursor.as_deref(), GSI1, "ACCOUNTS")?;
                Ok(Page {
                    items: self.account(id).await?.into_iter().collect(),
                    next_cursor: None,
                })
            }
            None => {
                self.page(GSI1, "ACCOUNTS".into(), false, page, |_| true)
                    .await
            }
        }
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let user_item = item(
            format!("USER#{}", user.id),
            "#",
            user,
            &[
                (
                    GSI1,
                    format!(
                        "ACCOUNT_USERS#{}",
                        user.account_id.as_deref().unwrap_or("-")
                    ),
                    order(user.created_at, &user.id),
                ),
                (GSI2, "USERS".into(), order(user.created_at, &user.id)),
            ],
        )?;
        let mut claim = Item::new();
        claim.insert("pk".into(), s(format!("SUB#{}", sub_key(&user.sub))));
        claim.insert("sk".into(), s("#"));
        claim.insert("user_id".into(), s(user.id.clone()));
        let put = |item: Item| -> Result<TransactWriteItem> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("building write: {e}")))?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        // Both or neither: the user, and the claim that makes its sub unique.
        match self
            .client
            .transact_write_items()
            .transact_items(put(user_item)?)
            .transact_items(put(claim)?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                let reasons = e
                    .as_service_error()
                    .and_then(|s| match s {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t) => {
                            Some(t.cancellation_reasons().iter().filter_map(|r| r.code().map(str::to_owned)).collect::<Vec<_>>())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                if reasons.iter().any(|r| r == "ConditionalCheckFailed") {
                    Err(Error::Conflict(format!(
                        "a user with id `{}` or this sub already exists",
                        user.id
                    )))
                } else {
                    Err(Error::Unavailable(format!(
                        "adding user: transaction cancelled ({})",
                        reasons.join(", ")
                    )))
                }
            }
            Err(e) => Err(sdk_error("adding user", e)),
        }
    }

    async fn user_by_sub(&self, sub: &str) -> Result<Option<User>> {
        let Some(claim) = self.get(format!("SUB#{}", sub_key(sub)), "#").await? else {
            return Ok(None);
        };
        let user_id = claim
            .get("user_id")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("sub claim without user"))?;
        self.user_by_id(user_id).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.get_record(format!("USER#{id}"), "#").await
    }

    async fn set_user_roles(&self, user_id: &str, roles: &[Role]) -> Result<()> {
        let updated = self
            .update(format!("USER#{user_id}"), "#", |user: &mut User| {
                user.roles = roles.to_vec();
                true
            })
            .await?;
        match updated {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("user `{user_id}` not found"))),
        }
    }

    async fn list_users(&self, account_id: &str, page: &PageRequest) -> Result<Page<User>> {
        self.page(
            GSI1,
            format!("ACCOUNT_USERS#{account_id}"),
            false,
            page,
            |_| true,
        )
        .await
    }

    async fn users_with_role(&self, account_id: Option<&str>, role: Role) -> Result<Vec<User>> {
        let items = match account_id {
            Some(account) => self.all(GSI1, format!("ACCOUNT_USERS#{account}")).await?,
            None => self.all(GSI2, "USERS".into()).await?,
        };
        let mut users = Vec::new();
        for item in &items {
            let user: User = record(item)?;
            if user.has_role(role) {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn create_instrument(&self, instrument: &Instrument, secret_hash: &str) -> Result<()> {
        let sort = order(instrument.created_at, &instrument.serial);
        let mut item = item(
            format!("INSTRUMENT#{}", instrument.serial),
            "#",
            instrument,
            &[
                (
                    GSI1,
                    format!("ACCOUNT_INSTRUMENTS#{}", instrument.account_id),
                    sort.clone(),
                ),
                (GSI2, "INSTRUMENTS".into(), sort),
            ],
        )?;
        item.insert("secret_hash".into(), s(secret_hash));
        self.create(
            item,
            format!("instrument `{}` already exists", instrument.serial),
        )
        .await
    }

    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>> {
        self.get_record(format!("INSTRUMENT#{serial}"), "#").await
    }

    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>> {
        Ok(self
            .get(format!("INSTRUMENT#{serial}"), "#")
            .await?
            .and_then(|item| text(&item, "secret_hash")))
    }

    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>> {
        match account_id {
            Some(account) => {
                self.page(
                    GSI1,
                    format!("ACCOUNT_INSTRUMENTS#{account}"),
                    false,
                    page,
                    |_| true,
                )
                .await
            }
            None => {
                self.page(GSI2, "INSTRUMENTS".into(), false, page, |_| true)
                    .await
            }
        }
    }

    async fn insert_notifications(&self, notifications: &[Notification]) -> Result<Vec<String>> {
        let mut new = Vec::new();
        for note in notifications {
            let partition = format!("NOTIFICATIONS#{}", note.user_id);
            let item = item(
                partition.clone(),
                &note.id,
                note,
                &[(GSI1, partition, order(note.created_at, &note.id))],
            )?;
            match self.create(item, String::new()).await {
                Ok(()) => new.push(note.id.clone()),
                Err(Error::Conflict(_)) => {} // a redelivered event: keep the first
                Err(e) => return Err(e),
            }
        }
        Ok(new)
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        self.page(GSI1, format!("NOTIFICATIONS#{user_id}"), true, page, |_| {
            true
        })
        .await
    }

    async fn mark_notification_read(
        &self,
        user_id: &str,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<Option<Notification>> {
        self.update(
            format!("NOTIFICATIONS#{user_id}"),
            id,
            |note: &mut Notification| {
                if note.read_at.is_some() {
                    return false;
                }
                note.read_at = Some(at);
                true
            },
        )
        .await
    }

    async fn create_document(&self, document: &Document) -> Result<()> {
        let item = item(
            format!("DOCUMENT#{}", document.id),
            "#",
            document,
            &[(
                GSI1,
                format!("ACCOUNT_DOCUMENTS#{}", document.account_id),
                order(document.created_at, &document.id),
            )],
        )?;
        self.create(item, format!("document `{}` already exists", document.id))
            .await
    }

    async fn document(&self, id: &str) -> Result<Option<Document>> {
        self.get_record(format!("DOCUMENT#{id}"), "#").await
    }

    async fn list_documents(&self, account_id: &str, page: &PageRequest) -> Result<Page<Document>> {
        self.page(
            GSI1,
            format!("ACCOUNT_DOCUMENTS#{account_id}"),
            true,
            page,
            |_| true,
        )
        .await
    }

    async fn transition_document(
        &self,
        id: &str,
        from: &[DocumentStatus],
        to: DocumentStatus,
        failure_reason: Option<&str>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<bool> {
        let mut moved = false;
        self.update(format!("DOCUMENT#{id}"), "#", |doc: &mut Document| {
            moved = from.contains(&doc.status);
            if !moved {
                return false;
            }
            doc.status = to;
            if let Some(reason) = failure_reason {
                doc.failure_reason = Some(reason.to_string());
            }
            if let Some(metadata) = metadata {
                doc.metadata = Some(metadata.clone());
            }
            doc.updated_at = OffsetDateTime::now_utc();
            true
        })
        .await?;
        Ok(moved)
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let item = item(
            format!("PRODUCT#{}", product.sku),
            "#",
            product,
            &[(
                GSI1,
                "PRODUCTS".into(),
                order(product.created_at, &product.sku),
            )],
        )?;
        self.create(item, format!("product `{}` already exists", product.sku))
            .await
    }

    async fn product(&self, sku: &str) -> Result<Option<Product>> {
        self.get_record(format!("PRODUCT#{sku}"), "#").await
    }

    async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>> {
        self.page(GSI1, "PRODUCTS".into(), false, page, |_| true)
            .await
    }

    async fn create_lot(&self, lot: &Lot) -> Result<()> {
        let item = item(format!("LOT#{}", lot.lot_number), "#", lot, &[])?;
        self.create(item, format!("lot `{}` already exists", lot.lot_number))
            .await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        self.get_record(format!("LOT#{lot_number}"), "#").await
    }

    async fn create_shipment(&self, shipment: &Shipment) -> Result<()> {
        let sort = order(shipment.created_at, &shipment.id);
        let item = item(
            format!("SHIPMENT#{}", shipment.id),
            "#",
            shipment,
            &[
                (
                    GSI1,
                    format!("LOT_SHIPMENTS#{}", shipment.lot_number),
                    sort.clone(),
                ),
                (
                    GSI2,
                    format!("ACCOUNT_SHIPMENTS#{}", shipment.account_id),
                    sort.clone(),
                ),
                (GSI3, "SHIPMENTS".into(), sort),
            ],
        )?;
        self.create(item, format!("shipment `{}` already exists", shipment.id))
            .await
    }

    async fn list_shipments(
        &self,
        lot_number: Option<&str>,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Shipment>> {
        match (lot_number, account_id) {
            (Some(lot), account) => {
                let account = account.map(|a| format!("ACCOUNT_SHIPMENTS#{a}"));
                self.page(GSI1, format!("LOT_SHIPMENTS#{lot}"), false, page, |item| {
                    account.is_none() || text(item, GSI2.pk) == account
                })
                .await
            }
            (None, Some(account)) => {
                self.page(
                    GSI2,
                    format!("ACCOUNT_SHIPMENTS#{account}"),
                    false,
                    page,
                    |_| true,
                )
                .await
            }
            (None, None) => {
                self.page(GSI3, "SHIPMENTS".into(), false, page, |_| true)
                    .await
            }
        }
    }
}

// --- the outbox --------------------------------------------------------------------------------

/// Index sort key of an e-mail due at `due_ms`.
fn due_key(due_ms: u64, id: &str) -> String {
    format!("{due_ms:020}#{id}")
}

fn outbox_entry(item: &Item) -> Result<OutboxEntry> {
    let email: OutboundEmail = record(item)?;
    let text = |name: &str| text(item, name);
    let status = text("status")
        .and_then(|s| EmailStatus::parse(&s))
        .ok_or_else(|| corrupt("e-mail without status"))?;
    Ok(OutboxEntry {
        id: email.id,
        to: email.to,
        subject: email.subject,
        category: email.category,
        status,
        attempts: item.get("attempts").and_then(as_u64).unwrap_or(0) as u32,
        last_error: text("last_error"),
        provider_message_id: text("provider_message_id"),
        created_at: text("created_at").unwrap_or_default(),
        sent_at: text("sent_at"),
    })
}

impl DynamoStore {
    /// Records the outcome of a claimed e-mail.
    async fn settle(
        &self,
        id: &str,
        status: EmailStatus,
        due_ms: Option<u64>,
        set: &[(&str, Option<String>)],
    ) -> Result<()> {
        let mut expression = String::from("SET #status = :status");
        let mut remove = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("EMAIL#{id}")))
            .key("sk", s("#"))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()));
        match due_ms {
            Some(due) => {
                expression.push_str(", gsi1pk = :due_pk, gsi1sk = :due_sk, due = :due");
                request = request
                    .expression_attribute_values(":due_pk", s("OUTBOX_DUE"))
                    .expression_attribute_values(":due_sk", s(due_key(due, id)))
                    .expression_attribute_values(":due", number(due));
            }
            None => remove.extend(["gsi1pk", "gsi1sk"]),
        }
        for (n, (name, value)) in set.iter().enumerate() {
            match value {
                Some(value) => {
                    expression.push_str(&format!(", #a{n} = :v{n}"));
                    request = request
                        .expression_attribute_names(format!("#a{n}"), *name)
                        .expression_attribute_values(format!(":v{n}"), s(value.clone()));
                }
                None => remove.push(name),
            }
        }
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => {
                Err(Error::NotFound(format!("e-mail `{id}` not found")))
            }
            Err(e) => Err(sdk_error("recording e-mail outcome", e)),
        }
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn enqueue(&self, email: &OutboundEmail) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let due = now_ms();
        let mut item = item(
            format!("EMAIL#{}", email.id),
            "#",
            email,
            &[
                (GSI1, "OUTBOX_DUE".into(), due_key(due, &email.id)),
                (GSI2, "OUTBOX".into(), order(now, &email.id)),
            ],
        )?;
        item.insert("status".into(), s(EmailStatus::Pending.as_str()));
        item.insert("attempts".into(), number(0));
        item.insert("due".into(), number(due));
        item.insert("created_at".into(), s(rfc3339(now)));
        match self.create(item, String::new()).await {
            Ok(()) | Err(Error::Conflict(_)) => Ok(()), // queued already: leave it as it is
            Err(e) => Err(e),
        }
    }

    async fn claim_due(&self, limit: u32, lease: Duration) -> Result<Vec<(OutboundEmail, u32)>> {
        let now = now_ms();
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1.name)
            .key_condition_expression("gsi1pk = :pk AND gsi1sk <= :now")
            .expression_attribute_values(":pk", s("OUTBOX_DUE"))
            // Everything due by now sorts before this key (ids never start with `~`).
            .expression_attribute_values(":now", s(due_key(now, "~")))
            .limit(limit.max(1) as i32)
            .send()
            .await
            .map_err(|e| sdk_error("finding due e-mails", e))?;
        let until = now + lease.as_millis() as u64;
        let mut claimed = Vec::new();
        for found in output.items() {
            let (Some(pk), Some(seen)) = (found.get("pk"), found.get("gsi1sk")) else {
                continue;
            };
            let id = pk
                .as_s()
                .map(|p| p.trim_start_matches("EMAIL#").to_string())
                .unwrap_or_default();
            // Claimed only if nobody claimed or settled it since it was found.
            let answer = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", pk.clone())
                .key("sk", s("#"))
                .update_expression(
                    "SET #status = :sending, attempts = attempts + :one, due = :until, gsi1sk = :next",
                )
                .condition_expression("gsi1sk = :seen")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sending", s(EmailStatus::Sending.as_str()))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":until", number(until))
                .expression_attribute_values(":next", s(due_key(until, &id)))
                .expression_attribute_values(":seen", seen.clone())
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match answer {
                Ok(output) => {
                    let Some(item) = output.attributes() else {
                        continue;
                    };
                    let email: OutboundEmail = record(item)?;
                    let attempts = item.get("attempts").and_then(as_u64).unwrap_or(1) as u32;
                    claimed.push((email, attempts));
                }
                Err(e) if is_conditional_failure(&e) => {} // another sender has it
                Err(e) => return Err(sdk_error("claiming e-mail", e)),
            }
        }
        Ok(claimed)
    }

    async fn mark_sent(&self, id: &str, provider_message_id: Option<&str>) -> Result<()> {
        self.settle(
            id,
            EmailStatus::Sent,
            None,
            &[
                (
                    "provider_message_id",
                    provider_message_id.map(str::to_owned),
                ),
                ("sent_at", Some(rfc3339(OffsetDateTime::now_utc()))),
                ("last_error", None),
            ],
        )
        .await
    }

    async fn retry_later(&self, id: &str, after: Duration, error: &str) -> Result<()> {
        let due = now_ms() + after.as_millis() as u64;
        self.settle(
            id,
            EmailStatus::Pending,
            Some(due),
            &[("last_error", Some(error.to_string()))],
        )
        .await
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<()> {
        self.settle(
            id,
            EmailStatus::Failed,
            None,
            &[("last_error", Some(error.to_string()))],
        )
        .await
    }

    async fn list_outbox(
        &self,
        status: Option<EmailStatus>,
        page: &PageRequest,
    ) -> Result<Page<OutboxEntry>> {
        let wanted = status.map(EmailStatus::as_str);
        let (items, next_cursor) = self
            .raw_page(GSI2, "OUTBOX".into(), true, page, |item| {
                wanted.is_none_or(|w| text(item, "status").as_deref() == Some(w))
            })
            .await?;
        Ok(Page {
            items: items.iter().map(outbox_entry).collect::<Result<_>>()?,
            next_cursor,
        })
    }
}
