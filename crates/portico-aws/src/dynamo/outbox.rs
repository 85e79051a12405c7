//! The `Outbox` port on the table. An e-mail is in the `OUTBOX_DUE` index partition while it is
//! due or claimed, sorted by when it is due; a claim moves its due time to the lease's end on
//! condition that nobody moved it since it was found, so two senders never hold one e-mail.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use portico_core::domain::{EmailStatus, OutboundEmail, OutboxEntry};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Outbox, Result};
use time::OffsetDateTime;

use super::keys::{self, GSI1, GSI2, ONE};
use super::{DynamoStore, Item, corrupt, item, now_ms, record, rfc3339, s, text};
use crate::error::{is_conditional_failure, sdk_error};
use crate::sequence::{as_u64, number};

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
            .key("pk", s(keys::email(id)))
            .key("sk", s(ONE))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()));
        match due_ms {
            Some(due) => {
                expression.push_str(", gsi1pk = :due_pk, gsi1sk = :due_sk, due = :due");
                request = request
                    .expression_attribute_values(":due_pk", s(keys::OUTBOX_DUE))
                    .expression_attribute_values(":due_sk", s(keys::due(due, id)))
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
            keys::email(&email.id),
            ONE,
            email,
            &[
                (GSI1, keys::OUTBOX_DUE.into(), keys::due(due, &email.id)),
                (GSI2, keys::OUTBOX.into(), keys::order(now, &email.id)),
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
            .expression_attribute_values(":pk", s(keys::OUTBOX_DUE))
            // Everything due by now sorts before this key (ids never start with `~`).
            .expression_attribute_values(":now", s(keys::due(now, "~")))
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
            let id = pk.as_s().map(|p| keys::email_id(p).to_string()).unwrap_or_default();
            // Claimed only if nobody claimed or settled it since it was found.
            let answer = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", pk.clone())
                .key("sk", s(ONE))
                .update_expression(
                    "SET #status = :sending, attempts = attempts + :one, due = :until, gsi1sk = :next",
                )
                .condition_expression("gsi1sk = :seen")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sending", s(EmailStatus::Sending.as_str()))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":until", number(until))
                .expression_attribute_values(":next", s(keys::due(until, &id)))
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
                ("provider_message_id", provider_message_id.map(str::to_owned)),
                ("sent_at", Some(rfc3339(OffsetDateTime::now_utc()))),
                ("last_error", None),
            ],
        )
        .await
    }

    async fn retry_later(&self, id: &str, after: Duration, error: &str) -> Result<()> {
        let due = now_ms() + after.as_millis() as u64;
        self.settle(id, EmailStatus::Pending, Some(due), &[("last_error", Some(error.to_string()))])
            .await
    }

    async fn mark_failed(&self, id: &str, error: &str) -> Result<()> {
        self.settle(id, EmailStatus::Failed, None, &[("last_error", Some(error.to_string()))]).await
    }

    async fn list_outbox(
        &self,
        status: Option<EmailStatus>,
        page: &PageRequest,
    ) -> Result<Page<OutboxEntry>> {
        let wanted = status.map(EmailStatus::as_str);
        let (items, next_cursor) = self
            .raw_page(GSI2, keys::OUTBOX.into(), true, page, |item| {
                wanted.is_none_or(|w| text(item, "status").as_deref() == Some(w))
            })
            .await?;
        Ok(Page { items: items.iter().map(outbox_entry).collect::<Result<_>>()?, next_cursor })
    }
}
