//! The `Mailer` port: SendGrid's v3 Mail Send API when an API key is configured, otherwise a local
//! sink that accepts every message (the outbox still records it).
//!
//! SendGrid has no idempotency key, so only answers that say "nothing was accepted" are retried
//! (429, 5xx, no answer); every message carries our id in `custom_args` so a duplicate after a
//! crash can be recognised downstream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use portico_core::{Delivery, Mailer, OutboundEmail};
use serde_json::{Value, json};

pub struct SendGrid {
    /// Built on first send (loading root certificates is not a start-up cost).
    http: std::sync::OnceLock<reqwest::Client>,
    timeout: Duration,
    endpoint: String,
    api_key: String,
    from_email: String,
    from_name: String,
}

impl SendGrid {
    pub fn new(
        base_url: &str,
        api_key: &str,
        from_email: &str,
        from_name: &str,
        timeout: Duration,
    ) -> Self {
        SendGrid {
            http: std::sync::OnceLock::new(),
            timeout,
            endpoint: format!("{}/v3/mail/send", base_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
            from_email: from_email.to_string(),
            from_name: from_name.to_string(),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder().timeout(self.timeout).build().unwrap_or_default()
        })
    }

    /// The Mail Send request body for `email`.
    pub fn body(&self, email: &OutboundEmail) -> Value {
        json!({
            "personalizations": [{"to": [{"email": email.to}]}],
            "from": {"email": self.from_email, "name": self.from_name},
            "subject": email.subject,
            "content": [
                {"type": "text/plain", "value": email.text},
                {"type": "text/html", "value": email.html},
            ],
            "custom_args": {"portico_message_id": email.id},
            "categories": [email.category],
        })
    }
}

#[async_trait]
impl Mailer for SendGrid {
    async fn deliver(&self, email: &OutboundEmail) -> Delivery {
        let response = match self
            .http()
            .post(&self.endpoint)
            .bearer_auth(&self.api_key)
            .json(&self.body(email))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                return Delivery::RetryLater {
                    reason: format!("SendGrid did not answer: {e}"),
                    after: None,
                };
            }
        };
        let status = response.status();
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        if status.is_success() {
            return Delivery::Accepted { provider_message_id: header("x-message-id") };
        }
        let after = retry_after(header("retry-after"), header("x-ratelimit-reset"));
        let text = response.text().await.unwrap_or_default();
        let reason = format!("SendGrid {}: {}", status.as_u16(), error_text(&text));
        if status.as_u16() == 429 || status.is_server_error() {
            Delivery::RetryLater { reason, after }
        } else {
            Delivery::Rejected { reason }
        }
    }
}

/// When SendGrid says to come back: `Retry-After` seconds, or `X-RateLimit-Reset` (a Unix time).
fn retry_after(retry_after: Option<String>, reset: Option<String>) -> Option<Duration> {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let reset = reset.and_then(|v| v.trim().parse::<u64>().ok())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// SendGrid's `{"errors": [{"message": ...}]}`, or the body as it came (shortened).
fn error_text(body: &str) -> String {
    let messages: Vec<String> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    if messages.is_empty() { body.chars().take(300).collect() } else { messages.join("; ") }
}

/// Without an API key, e-mails stop here: accepted and logged, kept in the outbox as sent.
pub struct LocalSink;

#[async_trait]
impl Mailer for LocalSink {
    async fn deliver(&self, email: &OutboundEmail) -> Delivery {
        tracing::info!(to = %email.to, subject = %email.subject, id = %email.id, "e-mail kept locally (no SendGrid key configured)");
        Delivery::Accepted { provider_message_id: Some("local-sink".into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_and_error_texts() {
        assert_eq!(retry_after(Some("7".into()), None), Some(Duration::from_secs(7)));
        let soon =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 30;
        let after = retry_after(None, Some(soon.to_string())).expect("reset");
        assert!(after <= Duration::from_secs(30) && after >= Duration::from_secs(28));
        assert_eq!(retry_after(None, None), None);
        assert_eq!(
            error_text(
                r#"{"errors":[{"message":"The to email does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#
            ),
            "The to email does not contain a valid address."
        );
        assert_eq!(error_text("oops"), "oops");
    }
}
