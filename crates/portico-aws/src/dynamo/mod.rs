//! Every record port on one DynamoDB table (single-table design): `DynamoStore`, with one module
//! per aggregate (`accounts.rs`, `users.rs`, ...), the table's layout in `keys.rs`, and here what
//! they share: reads by key (strongly consistent), conditional creates, optimistic updates, paged
//! index queries and their cursors.
//!
//! Updates of a record read it, change the JSON and write it back on condition that `data` is
//! still what was read (optimistic concurrency); a lost race is read again and retried.

mod accounts;
mod catalogue;
mod documents;
mod instruments;
pub(crate) mod keys;
pub(crate) mod lease;
mod notifications;
mod outbox;
pub mod stream;
mod users;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, FieldError, Result, SequenceGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{is_conditional_failure, sdk_error};
use keys::Index;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Optimistic updates retried this often before the store reports itself unavailable.
const MAX_UPDATE_ATTEMPTS: u32 = 16;

pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// The region's account-number sequence (see `accounts.rs`).
    pub(crate) account_numbers: Arc<dyn SequenceGenerator>,
}

impl DynamoStore {
    /// The store on `table`; accounts are numbered by `account_numbers` (the region's sequence).
    pub fn new(
        client: Client,
        table: &str,
        account_numbers: Arc<dyn SequenceGenerator>,
    ) -> DynamoStore {
        DynamoStore { client, table: table.to_string(), account_numbers }
    }

    pub(crate) async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>> {
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

    pub(crate) async fn get_record<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<T>> {
        self.get(pk, sk).await?.map(|item| record(&item)).transpose()
    }

    /// Writes a new item; `conflict` is the message when its key is taken.
    pub(crate) async fn create(&self, item: Item, conflict: String) -> Result<()> {
        match self.put_if(item, "attribute_not_exists(pk)", None).await? {
            true => Ok(()),
            false => Err(Error::Conflict(conflict)),
        }
    }

    /// Writes `item` unless its key exists (a record kept once by an id derived from what it
    /// records); false when it did.
    pub(crate) async fn create_once(&self, item: Item) -> Result<bool> {
        self.put_if(item, "attribute_not_exists(pk)", None).await
    }

    /// Replaces `item` if its `data` is still `old_data`; false when it changed meanwhile.
    async fn replace_if_unchanged(&self, item: Item, old_data: &AttributeValue) -> Result<bool> {
        self.put_if(item, "#data = :old", Some(old_data)).await
    }

    /// Writes `item` if `condition` holds (`:old` in it is `old_data`); false when it does not.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        old_data: Option<&AttributeValue>,
    ) -> Result<bool> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        if let Some(old) = old_data {
            request = request
                .expression_attribute_names("#data", "data")
                .expression_attribute_values(":old", old.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("writing item", e)),
        }
    }

    /// Reads a record, lets `change` edit it (returning false leaves it as it is) and writes it
    /// back unless it changed meanwhile, in which case everything is done again.
    pub(crate) async fn update<T, F>(
        &self,
        pk: String,
        sk: &str,
        mut change: F,
    ) -> Result<Option<T>>
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
            let old = item.get("data").cloned().ok_or_else(|| corrupt("item without data"))?;
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
    pub(crate) async fn page<T: DeserializeOwned>(
        &self,
        index: Index,
        partition: String,
        newest_first: bool,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        self.page_where(index, partition, newest_first, page, |_| true).await
    }

    /// One page of the records of an index partition that `keep` keeps.
    pub(crate) async fn page_where<T: DeserializeOwned>(
        &self,
        index: Index,
        partition: String,
        newest_first: bool,
        page: &PageRequest,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<Page<T>> {
        let (items, next_cursor) =
            self.raw_page(index, partition, newest_first, page, keep).await?;
        Ok(Page { items: items.iter().map(record).collect::<Result<_>>()?, next_cursor })
    }

    /// One page of items of an index partition, exactly `page.limit` items long unless it is the
    /// last (so the last page never points at an empty one). `keep` drops items (like a filter)
    /// without breaking the page size.
    pub(crate) async fn raw_page(
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
            let output =
                self.query(index, &partition, newest_first, Some(want), start.take()).await?;
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
    pub(crate) async fn all(&self, index: Index, partition: String) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self.query(index, &partition, false, None, start.take()).await?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => return Ok(items),
            }
        }
    }
}

// --- items -------------------------------------------------------------------------------------

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn json<T: Serialize>(value: &T) -> Result<AttributeValue> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("encoding record: {e}")))
}

/// A string attribute of an item.
pub(crate) fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Unexpected(anyhow::anyhow!("unreadable item in the table: {what}"))
}

pub(crate) fn record<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let data = item.get("data").and_then(|d| d.as_s().ok()).ok_or_else(|| corrupt("no data"))?;
    serde_json::from_str(data).map_err(|e| corrupt(&e.to_string()))
}

/// A new item: keys, the record, and its index entries.
pub(crate) fn item<T: Serialize>(
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

pub(crate) fn decode_cursor(
    cursor: Option<&str>,
    index: Index,
    partition: &str,
) -> Result<Option<Item>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || Error::Validation(vec![FieldError::new("cursor", "not a cursor of this listing")]);
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
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

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn now_ms() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).max(0) as u64
}
