//! E-mails from templates (text and HTML, values escaped in HTML) and the one way e-mails enter the outbox:
//! recipients and subjects are checked so nothing can smuggle headers in.

use portico_core::domain::{
    Account, Caller, Document, EmailStatus, Instrument, OutboundEmail, OutboxEntry, User,
};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result, policy};

use serde_json::json;

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
        return Err(Error::invalid("to", format!("{:?} is not an e-mail address", email.to)));
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

/// The e-mail templates, one text and one HTML template per kind of e-mail (`templates/email/`),
/// both extending a layout. HTML templates escape every value (MiniJinja's auto-escaping by file
/// extension); text templates keep values as written.
fn templates() -> &'static minijinja::Environment<'static> {
    static TEMPLATES: std::sync::OnceLock<minijinja::Environment<'static>> =
        std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in [
            ("layout.html", include_str!("../templates/email/layout.html")),
            ("layout.txt", include_str!("../templates/email/layout.txt")),
            ("welcome.html", include_str!("../templates/email/welcome.html")),
            ("welcome.txt", include_str!("../templates/email/welcome.txt")),
            ("instrument_alert.html", include_str!("../templates/email/instrument_alert.html")),
            ("instrument_alert.txt", include_str!("../templates/email/instrument_alert.txt")),
            ("document_ready.html", include_str!("../templates/email/document_ready.html")),
            ("document_ready.txt", include_str!("../templates/email/document_ready.txt")),
            ("lot_recall.html", include_str!("../templates/email/lot_recall.html")),
            ("lot_recall.txt", include_str!("../templates/email/lot_recall.txt")),
        ] {
            // The templates are part of the build and covered by the tests below; one that does
            // not parse fails every render of its kind with the parse error.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "e-mail template does not parse");
            }
        }
        env
    })
}

/// One line of subject: control characters become spaces.
fn subject(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Renders the `category` e-mail (its text and HTML templates) for `to`, titled `title`.
fn compose(
    id: String,
    to: &str,
    title: String,
    category: &str,
    values: serde_json::Value,
) -> Result<OutboundEmail> {
    let mut context = values;
    if let serde_json::Value::Object(map) = &mut context {
        map.insert("title".into(), title.clone().into());
    }
    let render = |extension: &str| {
        templates()
            .get_template(&format!("{category}.{extension}"))
            .and_then(|t| t.render(minijinja::value::Serde(&context)))
            .map_err(|e| {
                Error::Unexpected(anyhow::anyhow!("rendering the {category} e-mail: {e:#}"))
            })
    };
    Ok(OutboundEmail {
        id,
        to: to.trim().to_string(),
        subject: subject(&format!("[Portico] {title}")),
        text: render("txt")?,
        html: render("html")?,
        category: category.into(),
    })
}

pub fn welcome(user: &User, account: &Account) -> Result<OutboundEmail> {
    compose(
        email_id(&format!("welcome\n{}", user.id)),
        &user.email,
        format!("Welcome to {}", account.name),
        "welcome",
        json!({
            "user": user,
            "account": account,
            "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        }),
    )
}

pub fn instrument_alert(
    notification_id: &str,
    to: &str,
    instrument: &Instrument,
    severity: &str,
    message: &str,
) -> Result<OutboundEmail> {
    compose(
        email_id(&format!("alert\n{notification_id}")),
        to,
        format!("{severity}: {} ({})", instrument.name, instrument.serial),
        "instrument_alert",
        json!({"instrument": instrument, "severity": severity, "message": message}),
    )
}

pub fn document_ready(to: &str, document: &Document) -> Result<OutboundEmail> {
    compose(
        email_id(&format!("document-ready\n{}", document.id)),
        to,
        format!("{} is ready", document.filename),
        "document_ready",
        json!({"document": document}),
    )
}

/// A recall notice for a lot the recipient's account received.
/// The recall notice for one user: the lot, its product, why, and what of the user's account the
/// lot touched (instruments that loaded it, run files it may have affected).
pub fn lot_recall(
    to: &str,
    lot: &portico_core::Lot,
    product: &portico_core::Product,
    reason: &str,
    instruments: &[&portico_core::graph::TracedInstrument],
    documents: &[&portico_core::graph::TracedDocument],
    audit: Option<&portico_core::ports::AuditRef>,
) -> Result<OutboundEmail> {
    compose(
        email_id(&format!("recall\n{}\n{to}", lot.lot_number)),
        to,
        format!("Recall notice: {} lot {}", product.name, lot.lot_number),
        "lot_recall",
        json!({
            "lot": lot,
            "product": product,
            "reason": reason,
            "instruments": instruments,
            "documents": documents,
            "audit": audit,
        }),
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
        )
        .expect("renders");
        assert!(!email.subject.contains(['\r', '\n']), "{:?}", email.subject);
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("X &amp; Y"));
        assert!(email.text.contains("<script>"), "plain text stays as written");
        assert_eq!(
            email.id,
            instrument_alert("n1", "x@y.example", &instrument, "error", "").expect("renders").id
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
            recall: None,
        };
        let instrument = portico_core::graph::TracedInstrument {
            serial: "SN-9".into(),
            name: "Cycler <2>".into(),
            account_id: "a".into(),
            first_loaded_at: time::OffsetDateTime::UNIX_EPOCH,
            last_loaded_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let document = portico_core::graph::TracedDocument {
            document_id: "d-1".into(),
            account_id: "a".into(),
            filename: "run-7.csv".into(),
            instrument_serial: Some("SN-9".into()),
            names_lot: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let audit = portico_core::ports::AuditRef {
            seq: 7,
            at: "2026-12-01T10:00:00Z".into(),
            digest: "ab12".into(),
        };
        let email = lot_recall(
            "lab@acme.example",
            &lot,
            &product,
            "contamination",
            &[&instrument],
            &[&document],
            Some(&audit),
        )
        .expect("renders");
        assert!(email.text.contains("audit record #7 of 2026-12-01T10:00:00Z, digest ab12"));
        assert_eq!(email.subject, "[Portico] Recall notice: Buffer <A> lot L-7");
        assert!(email.html.contains("Buffer &lt;A&gt;"));
        assert!(email.html.contains("Cycler &lt;2&gt;"));
        assert!(email.text.contains("contamination"));
        assert!(email.text.contains("SN-9") && email.text.contains("run-7.csv"), "{}", email.text);
        let none = lot_recall("lab@acme.example", &lot, &product, "contamination", &[], &[], None)
            .expect("renders");
        assert_eq!(none.id, email.id, "one notice per lot and recipient");
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

    #[test]
    fn a_welcome_reads_the_same_in_text_and_html() {
        let user = portico_core::User {
            id: "u".into(),
            sub: "s".into(),
            email: "lena@example.com".into(),
            display_name: "Lena <3".into(),
            account_id: Some("a".into()),
            roles: vec![portico_core::Role::LabManager, portico_core::Role::Scientist],
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let account = portico_core::Account {
            id: "a".into(),
            account_number: "100000".into(),
            name: "Example & Co".into(),
            kind: portico_core::AccountKind::Customer,
            region: "local".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let email = welcome(&user, &account).expect("renders");
        assert_eq!(email.subject, "[Portico] Welcome to Example & Co");
        assert_eq!(
            email.text,
            "Welcome to Example & Co\n\nHello Lena <3,\n\nyou now have access to the Example & Co \
             account (number 100000) as lab_manager, scientist.\n\nSign in with your company \
             account to see your instruments, documents and notifications.\n\n-- \nPortico \
             customer portal"
        );
        assert!(
            email.html.contains("<h2>Welcome to Example &amp; Co</h2><p>Hello Lena &lt;3,</p>")
        );
        assert!(email.html.contains("as lab_manager, scientist.</p>"));
    }
}
