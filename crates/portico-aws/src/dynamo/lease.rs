//! The warehouse stream-poller's lease and checkpoint: one item of the table, so that moving
//! the checkpoint and holding the lease are one conditional write. A poller holds the lease
//! until `expires_ms`; another may take it only after that, so two pollers never both move the
//! checkpoint (the second's write fails its condition and it stops).

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use portico_core::Result;

use super::keys::{self, ONE};
use crate::error::sdk_error;
use crate::neptune::stream::Position;

pub struct StreamLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    owner: String,
    ttl: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

type Item = std::collections::HashMap<String, AttributeValue>;

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// The checkpoint the lease item holds, if any.
fn position_of(item: &Item) -> Option<Position> {
    Some(Position { commit_num: number(item, "commit_num")?, op_num: number(item, "op_num")? })
}

impl StreamLease {
    /// A lease for `owner` (e.g. the Lambda's request id), held for `ttl` from each write.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, owner: &str, ttl: Duration) -> Self {
        StreamLease { client, table: table.into(), owner: owner.into(), ttl }
    }

    fn key(&self) -> std::collections::HashMap<String, AttributeValue> {
        [
            ("pk".to_string(), AttributeValue::S(keys::WAREHOUSE_STREAM.into())),
            ("sk".to_string(), AttributeValue::S(ONE.into())),
        ]
        .into()
    }

    /// Takes the lease if it is free, expired or already ours: answers the checkpoint (`None`
    /// before the first), or `Ok(None)` as the outer value when another poller holds it.
    pub async fn acquire(&self) -> Result<Option<Option<Position>>> {
        let now = now_ms();
        let values = [(":until", n(now + self.ttl.as_millis() as i64)), (":now", n(now))];
        let taken = self
            .conditional(
                "SET #owner = :me, expires_ms = :until",
                "attribute_not_exists(pk) OR expires_ms < :now OR #owner = :me",
                &values,
                "taking the stream lease",
            )
            .await?;
        Ok(taken.map(|item| position_of(&item)))
    }

    /// Where the stream stands without taking the lease: the checkpoint (`None` before the
    /// first), and the holder while its lease lasts.
    pub async fn peek(&self) -> Result<(Option<Position>, Option<String>)> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading the stream lease", e))?
            .item
            .unwrap_or_default();
        let at = position_of(&item);
        let holder = item
            .get("owner")
            .and_then(|v| v.as_s().ok())
            .filter(|_| number(&item, "expires_ms").is_some_and(|until| until >= now_ms()))
            .cloned();
        Ok((at, holder))
    }

    /// Runs `update` on the lease item if `condition` holds (`#owner` and `:me` are bound):
    /// the item as it is after, or `None` when the condition does not hold.
    async fn conditional(
        &self,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
        what: &str,
    ) -> Result<Option<Item>> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(output) => Ok(Some(output.attributes.unwrap_or_default())),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(what, e)),
        }
    }

    /// Moves the checkpoint to `to` and extends the lease, only while the lease is ours and
    /// current; false when it is not (another poller took it: stop).
    pub async fn advance(&self, to: Position) -> Result<bool> {
        let now = now_ms();
        let values = [
            (":c", n(to.commit_num)),
            (":o", n(to.op_num)),
            (":until", n(now + self.ttl.as_millis() as i64)),
            (":now", n(now)),
        ];
        self.conditional(
            "SET commit_num = :c, op_num = :o, expires_ms = :until",
            "#owner = :me AND expires_ms >= :now",
            &values,
            "moving the stream checkpoint",
        )
        .await
        .map(|moved| moved.is_some())
    }

    /// Lets the lease go (ending now), keeping the checkpoint; a lease lost meanwhile is left.
    pub async fn release(&self) -> Result<()> {
        let values = [(":zero", n(0))];
        self.conditional(
            "SET expires_ms = :zero",
            "#owner = :me",
            &values,
            "releasing the stream lease",
        )
        .await
        .map(|_| ())
    }

    /// Starts the stream over from its oldest record (after `ExpiredStreamException`).
    pub async fn forget_checkpoint(&self) -> Result<bool> {
        self.conditional(
            "REMOVE commit_num, op_num",
            "#owner = :me",
            &[],
            "forgetting the stream checkpoint",
        )
        .await
        .map(|forgot| forgot.is_some())
    }
}
