//! `instrument_alert`: an instrument reported an error or a critical condition. The account's lab
//! managers and every support user are told: a stored notification each, published on their
//! notification topic (QoS 1), and for critical events an e-mail too. Nobody else is told.

use std::collections::BTreeMap;

use portico_core::domain::{Alert, Notification, Role, User};
use portico_core::{Error, Result};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Context;

/// The id namespace of alerts (a UUID v5 of the serial and the event's own id).
const ALERT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x8e41_26c3_5f0a_4b7d_9c12_a3e5_77d0_4b21);

/// Who was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOutcome {
    pub notified: Vec<String>,
    pub emailed: usize,
}

/// `event` is what the rule selected: the instrument's event payload plus `serial`.
pub async fn instrument_alert(ctx: &Context, event: &Value) -> Result<AlertOutcome> {
    let serial = event
        .get("serial")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("serial", "the rule must select the instrument's serial"))?;
    let severity = event.get("severity").and_then(Value::as_str).unwrap_or("error").to_string();
    let Some(instrument) = ctx.instruments.instrument(serial).await? else {
        tracing::warn!(serial, "alert from an unregistered instrument ignored");
        return Ok(AlertOutcome { notified: Vec::new(), emailed: 0 });
    };

    // The account's lab managers and all support staff, each once.
    let mut recipients: BTreeMap<String, User> = BTreeMap::new();
    for user in ctx
        .users
        .users_with_role(Some(&instrument.account_id), Role::LabManager)
        .await?
        .into_iter()
        .chain(ctx.users.users_with_role(None, Role::Support).await?)
    {
        recipients.entry(user.id.clone()).or_insert(user);
    }

    let event_key = event
        .get("event_id")
        .or_else(|| event.get("id"))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    let message = event
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| event.get("code").and_then(Value::as_str))
        .unwrap_or("the instrument reported a problem");
    let title = format!("{severity}: {} ({serial})", instrument.name);
    let now = OffsetDateTime::now_utc();
    // The alert itself, once per event (for the reports), whoever is told.
    let alert = Alert {
        id: match &event_key {
            Some(key) => uuid::Uuid::new_v5(
                &ALERT_NAMESPACE,
                format!("instrument_alert\n{serial}\n{key}").as_bytes(),
            )
            .to_string(),
            None => uuid::Uuid::now_v7().to_string(),
        },
        serial: serial.to_string(),
        account_id: instrument.account_id.clone(),
        severity: severity.clone(),
        code: event.get("code").and_then(Value::as_str).map(str::to_string),
        raised_at: now,
    };
    ctx.instruments.record_alert(&alert).await?;
    let notifications: Vec<Notification> = recipients
        .values()
        .map(|user| Notification {
            // An event that carries its own id notifies once however often it is delivered
            // (MQTT QoS 1 may deliver twice); one without can only be told apart by arrival.
            id: match &event_key {
                Some(key) => crate::notifications::notification_id(
                    &format!("instrument_alert\n{serial}\n{key}"),
                    &user.id,
                ),
                None => uuid::Uuid::now_v7().to_string(),
            },
            user_id: user.id.clone(),
            kind: "instrument_alert".into(),
            title: title.clone(),
            body: message.to_string(),
            data: json!({
                "serial": serial,
                "account_id": instrument.account_id,
                "severity": severity,
                "event": event,
            }),
            created_at: now,
            read_at: None,
        })
        .collect();
    crate::notifications::deliver(ctx, &notifications).await?;

    let mut emailed = 0;
    if severity == "critical" {
        for (notification, user) in notifications.iter().zip(recipients.values()) {
            let email = crate::email::instrument_alert(
                &notification.id,
                &user.email,
                &instrument,
                &severity,
                message,
            )?;
            crate::email::queue(ctx, email).await?;
            emailed += 1;
        }
    }
    tracing::info!(serial, severity, recipients = notifications.len(), emailed, "instrument alert");
    Ok(AlertOutcome { notified: notifications.into_iter().map(|n| n.user_id).collect(), emailed })
}
