//! The `Instruments` port.

use portico_core::domain::{Alert, Instrument};
use portico_core::{Accounts, Error, Instruments};

use super::{at, two_accounts, walk};

/// Instruments: serials unique, secret hashes kept apart from the record, listed oldest first.
pub async fn serials_and_secrets(accounts: &dyn Accounts, instruments: &dyn Instruments) {
    two_accounts(accounts).await;
    for n in 0..4 {
        let instrument = Instrument {
            serial: format!("SN-{n}"),
            model: "PCR-9".into(),
            name: format!("Cycler {n}"),
            account_id: if n < 3 { "acc-1" } else { "acc-2" }.into(),
            created_at: at(200 + n),
        };
        instruments.create_instrument(&instrument, &format!("hash-{n}")).await.unwrap();
    }
    let dup = instruments.instrument("SN-1").await.unwrap().unwrap();
    assert!(matches!(instruments.create_instrument(&dup, "other").await, Err(Error::Conflict(_))));
    assert_eq!(
        instruments.instrument_secret_hash("SN-1").await.unwrap().as_deref(),
        Some("hash-1")
    );
    assert_eq!(instruments.instrument_secret_hash("SN-404").await.unwrap(), None);
    assert_eq!(instruments.instrument("SN-404").await.unwrap(), None);
    let serials = |items: Vec<Instrument>| items.into_iter().map(|i| i.serial).collect::<Vec<_>>();
    let mine =
        walk(2, |p| async move { instruments.list_instruments(Some("acc-1"), &p).await }).await;
    assert_eq!(serials(mine), vec!["SN-0", "SN-1", "SN-2"]);
    let all = walk(3, |p| async move { instruments.list_instruments(None, &p).await }).await;
    assert_eq!(serials(all), vec!["SN-0", "SN-1", "SN-2", "SN-3"]);

    // Alerts: each once by its id, listed oldest first.
    let alert = |id: &str, n: i64| Alert {
        id: id.into(),
        serial: "SN-1".into(),
        account_id: "acc-1".into(),
        severity: "critical".into(),
        code: Some("E42".into()),
        raised_at: at(300 + n),
    };
    assert!(instruments.record_alert(&alert("alert-1", 1)).await.unwrap());
    assert!(!instruments.record_alert(&alert("alert-1", 1)).await.unwrap());
    assert!(instruments.record_alert(&alert("alert-2", 2)).await.unwrap());
    let alerts = walk(1, |p| async move { instruments.list_alerts(&p).await }).await;
    assert_eq!(alerts, vec![alert("alert-1", 1), alert("alert-2", 2)]);
}
