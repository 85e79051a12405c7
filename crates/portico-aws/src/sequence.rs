//! The sequence generator on DynamoDB, safe under global-table replication.
//!
//! Global tables resolve concurrent writes to one item last-writer-wins, so a single counter
//! incremented in two regions hands out the same number twice. Here every region owns its own
//! item (`SEQ#<name>#<region>`) and its own configured range, so no item is ever written by two
//! regions: replication copies a region's item elsewhere, and nobody there writes it.
//!
//! Within a region, instances claim blocks of `block` values with one conditional update
//! (`next <- next + block` while the block fits the range). With `block = 1` (the default) every
//! value is its own claim, so values increase across all instances of the region in the order they
//! are handed out. Larger blocks cost fewer writes; values then increase per instance only.
//! A claim near the end of the range, or after an operator moved the range, is a read followed by
//! a compare-and-set; a lost race (conditional check failed) is retried, never resolved by reusing
//! a value. A crash loses at most the rest of a claimed block: values are skipped, not repeated.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use portico_core::ports::SequenceRange;
use portico_core::{Error, Result, SequenceGenerator};
use tokio::sync::Mutex;

use crate::error::{is_conditional_failure, sdk_error};

/// Attempts at a compare-and-set claim before giving up (each lost to another instance's claim).
const MAX_CLAIM_ATTEMPTS: u32 = 64;

pub struct DynamoSequence {
    client: Client,
    table: String,
    region: String,
    range: SequenceRange,
    block: u64,
    /// Per sequence: the rest of this instance's claimed block, `next..end`.
    blocks: Mutex<HashMap<String, (u64, u64)>>,
}

impl DynamoSequence {
    /// Values from `range` for `region`, claimed `block` at a time (at least 1).
    pub fn new(
        client: Client,
        table: &str,
        region: &str,
        range: SequenceRange,
        block: u64,
    ) -> DynamoSequence {
        DynamoSequence {
            client,
            table: table.to_string(),
            region: region.to_string(),
            range,
            block: block.max(1),
            blocks: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, sequence: &str) -> AttributeValue {
        AttributeValue::S(crate::dynamo::keys::sequence(sequence, &self.region))
    }

    /// Claims the next block: `(first, end)`.
    async fn claim(&self, sequence: &str) -> Result<(u64, u64)> {
        let SequenceRange { start, end } = self.range;
        if end.saturating_sub(start) >= self.block {
            // The common case: one atomic increment, valid while a whole block fits.
            let limit = end - self.block;
            let answer = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", self.key(sequence))
                .key("sk", AttributeValue::S(crate::dynamo::keys::ONE.into()))
                .update_expression(
                    "SET #next = if_not_exists(#next, :start) + :block, #region = :region",
                )
                .condition_expression(
                    "attribute_not_exists(#next) OR (#next >= :start AND #next <= :limit)",
                )
                .expression_attribute_names("#next", "next")
                .expression_attribute_names("#region", "region")
                .expression_attribute_values(":start", number(start))
                .expression_attribute_values(":block", number(self.block))
                .expression_attribute_values(":limit", number(limit))
                .expression_attribute_values(":region", AttributeValue::S(self.region.clone()))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match answer {
                Ok(output) => {
                    let next = output
                        .attributes()
                        .and_then(|a| a.get("next"))
                        .and_then(as_u64)
                        .ok_or_else(|| {
                            Error::Unexpected(anyhow::anyhow!("sequence update returned no value"))
                        })?;
                    return Ok((next - self.block, next));
                }
                Err(e) if is_conditional_failure(&e) => {} // range nearly used up, or moved
                Err(e) => return Err(sdk_error("claiming sequence block", e)),
            }
        }
        self.claim_by_compare_and_set(sequence).await
    }

    async fn claim_by_compare_and_set(&self, sequence: &str) -> Result<(u64, u64)> {
        let SequenceRange { start, end } = self.range;
        for attempt in 0..MAX_CLAIM_ATTEMPTS {
            let stored = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", self.key(sequence))
                .key("sk", AttributeValue::S(crate::dynamo::keys::ONE.into()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_error("reading sequence", e))?
                .item()
                .and_then(|item| item.get("next"))
                .and_then(as_u64);
            // A range moved upwards takes effect; one moved below issued values never reissues.
            let first = stored.map_or(start, |v| v.max(start));
            if first >= end {
                return Err(Error::Unavailable(format!(
                    "sequence `{sequence}` has used up its range {start}..{end} in region {}; configure a new range for this region",
                    self.region
                )));
            }
            let last = first.saturating_add(self.block).min(end);
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", self.key(sequence))
                .key("sk", AttributeValue::S(crate::dynamo::keys::ONE.into()))
                .update_expression("SET #next = :last, #region = :region")
                .expression_attribute_names("#next", "next")
                .expression_attribute_names("#region", "region")
                .expression_attribute_values(":last", number(last))
                .expression_attribute_values(":region", AttributeValue::S(self.region.clone()));
            let update = match stored {
                Some(value) => update
                    .condition_expression("#next = :stored")
                    .expression_attribute_values(":stored", number(value)),
                None => update.condition_expression("attribute_not_exists(#next)"),
            };
            match update.send().await {
                Ok(_) => return Ok((first, last)),
                Err(e) if is_conditional_failure(&e) => {
                    // Another instance claimed first: read again. Never reuse what was read.
                    tracing::debug!(sequence, attempt, "sequence claim lost a race; retrying");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 5)).await;
                }
                Err(e) => return Err(sdk_error("claiming sequence block", e)),
            }
        }
        Err(Error::Unavailable(format!(
            "sequence `{sequence}`: {MAX_CLAIM_ATTEMPTS} claims lost to other instances in a row"
        )))
    }
}

#[async_trait]
impl SequenceGenerator for DynamoSequence {
    async fn next(&self, sequence: &str) -> Result<u64> {
        // Held across the claim, so this instance's values increase in the order handed out.
        let mut blocks = self.blocks.lock().await;
        if let Some((next, end)) = blocks.get_mut(sequence)
            && *next < *end
        {
            let value = *next;
            *next += 1;
            return Ok(value);
        }
        let (first, end) = self.claim(sequence).await?;
        blocks.insert(sequence.to_string(), (first + 1, end));
        Ok(first)
    }
}

pub(crate) fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(crate) fn as_u64(value: &AttributeValue) -> Option<u64> {
    value.as_n().ok().and_then(|n| n.parse().ok())
}
