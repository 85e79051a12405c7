//! E-mail templates (text and HTML, values escaped) and the one way e-mails enter the outbox:
//! recipients and subjects are checked so nothing can smuggle headers in.

use portico_core::domain::{
    Account, Caller, Document, EmailStatus, Instrument, OutboundEmail, OutboxEntry, User,
};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};

use crate::Context;

/// Ids of e-mails derived from what they announce, so announcing twice queues one e-mail.
const EMAIL_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x7a0c_93d1_52e8_4b6f_a1c4_e8f2_0b3d_5c97);

pub fn email_id(key: &str) -> String {
    uuid::Uuid::new_v5(&EMAIL_NAMESPACE, key.as_bytes()).to_string()
}

/// Queues `email` after checking it cannot break out of its headers.
pub async fn queue(ctx: &Context, email: OutboundEmail) -> Result<()> {
    if !crate::validate::is_email(&email.to) {
        return Err(Error::invalid(
            "to",
            format!("{:?} is not an e-mail address", email.to),
        ));
    }
    if email.subject.contains(['\r', '\n']) || email.subject.trim().is_empty() {
        return Err(Error::invalid("subject", "must be one non-empty line"));
    }
    metrics::counter!("portico_emails_queued_total", "category" => email.category.clone())
        .increment(1);
    ctx.outbox.enqueue(&email).await
}

/// `GET /v1/outbox`: what was sent, what waits and what failed (admins).
pub async fn list_outbox(
    ctx: &Context,
    caller: &Caller,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Page<OutboxEntry>> {
    policy::require_admin(caller)?;
    let status =
        match status {
            None | Some("") => None,
            Some(s) => Some(EmailStatus::parse(s).ok_or_else(|| {
                Error::invalid("status", "must be pending, sending, sent or failed")
            })?),
        };
    ctx.outbox.list_outbox(status, &page).await
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// One line of subject: control characters become spaces.
fn subject(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn html(title: &str, paragraphs: &[String]) -> String {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>{body}<p style=\"color:#777\">Portico customer portal</p></body></html>",
        escape(title)
    )
}

fn compose(
    id: String,
    to: &str,
    title: String,
    paragraphs: Vec<String>,
    category: &str,
) -> OutboundEmail {
    OutboundEmail {
        id,
        to: to.trim().to_string(),
        subject: subject(&format!("[Portico] {title}")),
        text: format!(
            "{title}\n\n{}\n\n-- \nPortico customer portal\n",
            paragraphs.join("\n\n")
        ),
        html: html(&title, &paragraphs),
        category: category.into(),
    }
}

pub fn welcome(user: &User, account: &Account) -> OutboundEmail {
    compose(
        email_id(&format!("welcome\n{}", user.id)),
        &user.email,
        format!("Welcome to {}", account.name),
        vec![
            format!("Hello {},", user.display_name),
            format!(
                "you now have access to the {} account (number {}) as {}.",
                account.name,
                account.account_number,
                user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
            "Sign in with your company account to see your instruments, documents and notifications.".into(),
        ],
        "welcome",
    )
}

pub fn instrument_alert(
    notification_id: &str,
    to: &str,
    instrument: &Instrument,
    severity: &str,
    message: &str,
) -> OutboundEmail {
    compose(
        email_id(&format!("alert\n{notification_id}")),
        to,
        format!("{severity}: {} ({})", instrument.name, instrument.serial),
        vec![
            message.to_string(),
            format!(
                "Instrument: {} ({}, model {})",
                instrument.name, instrument.serial, instrument.model
            ),
            format!("Severity: {severity}"),
        ],
        "instrument_alert",
    )
}

pub fn document_ready(to: &str, document: &Document) -> OutboundEmail {
    compose(
        email_id(&format!("document-ready\n{}", document.id)),
        to,
        format!("{} is ready", document.filename),
        vec![
            format!(
                "Your file {} ({} bytes) has been checked and is ready.",
                document.filename, document.size
            ),
            "Open it from the documents page of the portal.".into(),
        ],
        "document_ready",
    )
}

/// A recall notice for a lot the recipient's account received.
pub fn lot_recall(
    to: &str,
    lot: &portico_core::Lot,
    product: &portico_core::Product,
    reason: &str,
) -> OutboundEmail {
    compose(
        email_id(&format!("recall\n{}\n{to}", lot.lot_number)),
        to,
        format!("Recall notice: {} lot {}", product.name, lot.lot_number),
        vec![
            format!(
                "Lot {} of {} ({}) is being recalled.",
                lot.lot_number, product.name, product.sku
            ),
            format!("Reason: {reason}"),
            "Stop using the lot, quarantine remaining stock and contact support for a replacement."
                .into(),
        ],
        "lot_recall",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_subjects_stay_one_line() {
        let instrument = Instrument {
            serial: "SN<1>".into(),
            model: "X & Y".into(),
            name: "Lab \"A\"\r\nBcc: evil@example.com".into(),
            account_id: "a".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let email = instrument_alert(
            "n1",
            "bob@acme.example",
            &instrument,
            "critical",
            "<script>alert(1)</script>",
        );
        assert!(!email.subject.contains(['\r', '\n']), "{:?}", email.subject);
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("X &amp; Y"));
        assert!(
            email.text.contains("<script>"),
            "plain text stays as written"
        );
        assert_eq!(
            email.id,
            instrument_alert("n1", "x@y.example", &instrument, "error", "").id
        );
    }

    #[test]
    fn recall_notices_name_the_lot() {
        let product = portico_core::Product {
            sku: "RGT-1".into(),
            name: "Buffer <A>".into(),
            category: "Reagents".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let lot = portico_core::Lot {
            lot_number: "L-7".into(),
            sku: "RGT-1".into(),
            manufactured_on: "2026-01-01".into(),
            expires_on: "2027-01-01".into(),
            qc_tests: vec![],
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let email = lot_recall("lab@acme.example", &lot, &product, "contamination");
        assert_eq!(email.subject, "[Portico] Recall notice: Buffer <A> lot L-7");
        assert!(email.html.contains("Buffer &lt;A&gt;"));
        assert!(email.text.contains("contamination"));
        assert_eq!(email.category, "lot_recall");
    }

    #[test]
    fn addresses() {
        assert!(crate::validate::is_email("bob@acme.example"));
        for bad in [
            "bob",
            "bob@acme",
            "bob@acme.example\r\nBcc: x@y.z",
            "a b@c.d",
            "<x@y.z>",
            "a@b.c,d@e.f",
        ] {
            assert!(!crate::validate::is_email(bad), "{bad:?}");
        }
    }
}
