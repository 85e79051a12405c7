//! `Store` and `Outbox`: what the functions rely on, whichever database keeps the records. Each
//! suite takes a fresh, empty store.

use std::time::Duration;

use portico_core::domain::{
    AccountKind, Document, DocumentStatus, EmailStatus, Instrument, Lot, Notification,
    OutboundEmail, Product, QcTest, Role, Shipment, User,
};
use portico_core::ports::{NewAccount, Page, PageRequest};
use portico_core::{Error, Outbox, Store};
use serde_json::json;
use time::OffsetDateTime;

/// `n` seconds after a fixed instant: fixtures made later are later.
fn at(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000 + n).unwrap()
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Every item of a listing, walking its pages `limit` at a time.
async fn walk<T, F, Fut>(limit: u32, mut list: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = portico_core::Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = list(page(limit, cursor)).await.unwrap();
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the listing never ended");
}

fn new_account(n: i64) -> NewAccount {
    NewAccount {
        id: format!("acc-{n}"),
        name: format!("Account {n}"),
        kind: AccountKind::Customer,
        region: "eu-central-1".into(),
        created_at: at(n),
    }
}

fn user(n: i64, account: Option<&str>, roles: &[Role]) -> User {
    User {
        id: format!("u-{n}"),
        sub: format!("User{n}@Example.com"),
        email: format!("user{n}@example.com"),
        display_name: format!("User {n}"),
        account_id: account.map(str::to_owned),
        roles: roles.to_vec(),
        created_at: at(100 + n),
    }
}

/// Accounts get ascending numbers from the store's range (which must start at 500), list oldest
/// first across pages, and refuse cursors the store did not make.
pub async fn accounts_are_numbered_and_paged(store: &dyn Store) {
    for n in 0..5 {
        let created = store.create_account(&new_account(n)).await.unwrap();
        assert_eq!(created.account_number, (500 + n).to_string());
        assert_eq!(created.created_at, at(n));
    }
    assert!(matches!(
        store.create_account(&new_account(1)).await,
        Err(Error::Conflict(_))
    ));
    let account = store.account("acc-3").await.unwrap().unwrap();
    assert_eq!(account.name, "Account 3");
    assert_eq!(store.account("acc-404").await.unwrap(), None);

    let ids: Vec<String> = walk(2, |p| async move { store.list_accounts(None, &p).await })
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, (0..5).map(|n| format!("acc-{n}")).collect::<Vec<_>>());
    let only = store
        .list_accounts(Some("acc-2"), &page(10, None))
        .await
        .unwrap();
    assert_eq!(only.items.len(), 1);
    assert_eq!(only.items[0].id, "acc-2");
    assert_eq!(only.next_cursor, None);
    let bad = store
        .list_accounts(None, &page(2, Some("garbage".into())))
        .await;
    assert!(matches!(bad, Err(Error::Validation(_))), "{bad:?}");
}

/// Users: subs unique after ASCII case folding (and nothing else), roles replaced, listed per account oldest first, and
/// found by role within an account or platform-wide.
pub async fn users_and_roles(store: &dyn Store) {
    store.create_account(&new_account(1)).await.unwrap();
    store.create_account(&new_account(2)).await.unwrap();
    let ada = user(1, Some("acc-1"), &[Role::LabManager, Role::Scientist]);
    store.insert_user(&ada).await.unwrap();
    let twin = User {
        id: "u-twin".into(),
        sub: "user1@example.COM".into(),
        ..ada.clone()
    };
    assert!(matches!(
        store.insert_user(&twin).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.user_by_id("u-twin").await.unwrap(), None);
    assert_eq!(
        store.user_by_sub("USER1@example.com").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(store.user_by_id("u-1").await.unwrap(), Some(ada.clone()));
    // Only ASCII case folds: look-alikes are other subjects, and may be other users.
    for other in [
        "user1@example.com ",
        " user1@example.com",
        "\u{1D5CE}ser1@example.com",
        "USER1@EXAMPLE.CO\u{041C}",
    ] {
        assert_eq!(store.user_by_sub(other).await.unwrap(), None, "{other:?}");
    }
    let spaced = User {
        id: "u-spaced".into(),
        sub: "user1@example.com ".into(),
        account_id: Some("acc-2".into()),
        roles: vec![Role::Scientist],
        ..ada.clone()
    };
    store.insert_user(&spaced).await.unwrap();
    assert_eq!(
        store.user_by_sub("USER1@example.com ").await.unwrap(),
        Some(spaced.clone())
    );

    for n in 2..6 {
        store
            .insert_user(&user(n, Some("acc-1"), &[Role::Scientist]))
            .await
            .unwrap();
    }
    store
        .insert_user(&user(6, Some("acc-2"), &[Role::LabManager]))
        .await
        .unwrap();
    store
        .insert_user(&user(7, None, &[Role::Support]))
        .await
        .unwrap();

    let ids: Vec<String> = walk(2, |p| async move { store.list_users("acc-1", &p).await })
        .await
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, vec!["u-1", "u-2", "u-3", "u-4", "u-5"]);

    store
        .set_user_roles("u-2", &[Role::LabManager, Role::AccountAdmin])
        .await
        .unwrap();
    let changed = store.user_by_id("u-2").await.unwrap().unwrap();
    assert_eq!(changed.roles, vec![Role::LabManager, Role::AccountAdmin]);
    assert!(matches!(
        store.set_user_roles("u-404", &[Role::Scientist]).await,
        Err(Error::NotFound(_))
    ));

    let mut managers: Vec<String> = store
        .users_with_role(Some("acc-1"), Role::LabManager)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    managers.sort();
    assert_eq!(managers, vec!["u-1", "u-2"]);
    let mut everywhere: Vec<String> = store
        .users_with_role(None, Role::LabManager)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    everywhere.sort();
    assert_eq!(everywhere, vec!["u-1", "u-2", "u-6"]);
    let support = store.users_with_role(None, Role::Support).await.unwrap();
    assert_eq!(support.len(), 1);
    assert_eq!(support[0].id, "u-7");
}

/// Instruments: serials unique, secret hashes kept apart from the record, listed oldest first.
pub async fn instruments(store: &dyn Store) {
    store.create_account(&new_account(1)).await.unwrap();
    store.create_account(&new_account(2)).await.unwrap();
    for n in 0..4 {
        let instrument = Instrument {
            serial: format!("SN-{n}"),
            model: "PCR-9".into(),
            name: format!("Cycler {n}"),
            account_id: if n < 3 { "acc-1" } else { "acc-2" }.into(),
            created_at: at(200 + n),
        };
        store
            .create_instrument(&instrument, &format!("hash-{n}"))
            .await
            .unwrap();
    }
    let dup = store.instrument("SN-1").await.unwrap().unwrap();
    assert!(matches!(
        store.create_instrument(&dup, "other").await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store
            .instrument_secret_hash("SN-1")
            .await
            .unwrap()
            .as_deref(),
        Some("hash-1")
    );
    assert_eq!(store.instrument_secret_hash("SN-404").await.unwrap(), None);
    assert_eq!(store.instrument("SN-404").await.unwrap(), None);
    let serials = |items: Vec<Instrument>| items.into_iter().map(|i| i.serial).collect::<Vec<_>>();
    let mine = walk(2, |p| async move {
        store.list_instruments(Some("acc-1"), &p).await
    })
    .await;
    assert_eq!(serials(mine), vec!["SN-0", "SN-1", "SN-2"]);
    let all = walk(3, |p| async move { store.list_instruments(None, &p).await }).await;
    assert_eq!(serials(all), vec!["SN-0", "SN-1", "SN-2", "SN-3"]);
}

/// Notifications: a redelivered id is stored once, lists are newest first per user, and the
/// first read time is kept.
pub async fn notifications(store: &dyn Store) {
    let note = |n: i64, user: &str| Notification {
        id: format!("n-{n}"),
        user_id: user.into(),
        kind: "instrument_alert".into(),
        title: format!("Alert {n}"),
        body: "Door open".into(),
        data: json!({"serial": "SN-1", "n": n}),
        created_at: at(300 + n),
        read_at: None,
    };
    let batch: Vec<Notification> = (0..5).map(|n| note(n, "u-1")).collect();
    let new = store.insert_notifications(&batch).await.unwrap();
    assert_eq!(new, vec!["n-0", "n-1", "n-2", "n-3", "n-4"]);
    // Redelivered, with a changed title: the first stays, and only the new one is new.
    let mut again = note(2, "u-1");
    again.title = "changed".into();
    let new = store
        .insert_notifications(&[again, note(9, "u-2")])
        .await
        .unwrap();
    assert_eq!(new, vec!["n-9"]);
    let listed = walk(
        2,
        |p| async move { store.list_notifications("u-1", &p).await },
    )
    .await;
    let ids: Vec<&str> = listed.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["n-4", "n-3", "n-2", "n-1", "n-0"]);
    assert_eq!(listed[2].title, "Alert 2");
    assert_eq!(listed[2].data, json!({"serial": "SN-1", "n": 2}));

    let read = store
        .mark_notification_read("u-1", "n-2", at(400))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.read_at, Some(at(400)));
    let reread = store
        .mark_notification_read("u-1", "n-2", at(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.read_at, Some(at(400)));
    // Another user's notification is not found through this user.
    assert_eq!(
        store
            .mark_notification_read("u-1", "n-9", at(400))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .mark_notification_read("u-1", "n-404", at(400))
            .await
            .unwrap(),
        None
    );
}

/// Documents: listed newest first per account; status moves only from an expected status.
pub async fn documents(store: &dyn Store) {
    store.create_account(&new_account(1)).await.unwrap();
    store.create_account(&new_account(2)).await.unwrap();
    store
        .insert_user(&user(1, Some("acc-1"), &[Role::Scientist]))
        .await
        .unwrap();
    let doc = |n: i64, account: &str| Document {
        id: format!("d-{n}"),
        account_id: account.into(),
        uploaded_by: "u-1".into(),
        filename: format!("run-{n}.csv"),
        content_type: "text/csv".into(),
        size: 10 + n as u64,
        status: DocumentStatus::Pending,
        failure_reason: None,
        metadata: None,
        created_at: at(600 + n),
        updated_at: at(600 + n),
    };
    for n in 0..4 {
        store.create_document(&doc(n, "acc-1")).await.unwrap();
    }
    store.create_document(&doc(9, "acc-2")).await.unwrap();
    assert!(matches!(
        store.create_document(&doc(1, "acc-1")).await,
        Err(Error::Conflict(_))
    ));
    let ids: Vec<String> = walk(
        3,
        |p| async move { store.list_documents("acc-1", &p).await },
    )
    .await
    .into_iter()
    .map(|d| d.id)
    .collect();
    assert_eq!(ids, vec!["d-3", "d-2", "d-1", "d-0"]);

    let pending = [DocumentStatus::Pending];
    assert!(
        store
            .transition_document("d-1", &pending, DocumentStatus::Processing, None, None)
            .await
            .unwrap()
    );
    // A second worker cannot take it too.
    assert!(
        !store
            .transition_document("d-1", &pending, DocumentStatus::Processing, None, None)
            .await
            .unwrap()
    );
    let meta = json!({"rows": 2, "columns": ["a", "b"]});
    assert!(
        store
            .transition_document(
                "d-1",
                &[DocumentStatus::Processing],
                DocumentStatus::Ready,
                None,
                Some(&meta)
            )
            .await
            .unwrap()
    );
    let ready = store.document("d-1").await.unwrap().unwrap();
    assert_eq!(ready.status, DocumentStatus::Ready);
    assert_eq!(ready.metadata, Some(meta));
    assert!(ready.updated_at > ready.created_at);
    assert!(
        store
            .transition_document(
                "d-2",
                &[DocumentStatus::Pending, DocumentStatus::Processing],
                DocumentStatus::Failed,
                Some("not a CSV file"),
                None
            )
            .await
            .unwrap()
    );
    let failed = store.document("d-2").await.unwrap().unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("not a CSV file"));
    assert!(
        !store
            .transition_document("d-404", &pending, DocumentStatus::Processing, None, None)
            .await
            .unwrap()
    );
}

/// Products, lots and shipments.
pub async fn catalogue(store: &dyn Store) {
    store.create_account(&new_account(1)).await.unwrap();
    store.create_account(&new_account(2)).await.unwrap();
    for n in 0..3 {
        let product = Product {
            sku: format!("SKU-{n}"),
            name: format!("Polymerase {n}"),
            category: "enzymes".into(),
            created_at: at(700 + n),
        };
        store.create_product(&product).await.unwrap();
    }
    let product = store.product("SKU-1").await.unwrap().unwrap();
    assert!(matches!(
        store.create_product(&product).await,
        Err(Error::Conflict(_))
    ));
    let skus: Vec<String> = walk(2, |p| async move { store.list_products(&p).await })
        .await
        .into_iter()
        .map(|p| p.sku)
        .collect();
    assert_eq!(skus, vec!["SKU-0", "SKU-1", "SKU-2"]);

    let lot = Lot {
        lot_number: "L-1".into(),
        sku: "SKU-1".into(),
        manufactured_on: "2026-01-02".into(),
        expires_on: "2028-01-02".into(),
        qc_tests: vec![QcTest {
            name: "Purity".into(),
            method: "SDS-PAGE".into(),
            specification: ">= 95 %".into(),
            result: "98.1".into(),
            unit: "%".into(),
            pass: true,
        }],
        created_at: at(800),
    };
    store.create_lot(&lot).await.unwrap();
    assert!(matches!(
        store.create_lot(&lot).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.lot("L-1").await.unwrap(), Some(lot));
    assert_eq!(store.lot("L-404").await.unwrap(), None);

    for n in 0..3 {
        let shipment = Shipment {
            id: format!("s-{n}"),
            lot_number: "L-1".into(),
            account_id: if n == 1 { "acc-2" } else { "acc-1" }.into(),
            shipped_on: "2026-02-03".into(),
            quantity: 10,
            created_at: at(900 + n),
        };
        store.create_shipment(&shipment).await.unwrap();
    }
    let ids = |items: Vec<Shipment>| items.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let of_lot = walk(2, |p| async move {
        store.list_shipments(Some("L-1"), None, &p).await
    })
    .await;
    assert_eq!(ids(of_lot), vec!["s-0", "s-1", "s-2"]);
    let to_account = walk(2, |p| async move {
        store.list_shipments(None, Some("acc-1"), &p).await
    })
    .await;
    assert_eq!(ids(to_account), vec!["s-0", "s-2"]);
    let both = store
        .list_shipments(Some("L-1"), Some("acc-2"), &page(10, None))
        .await
        .unwrap();
    assert_eq!(ids(both.items), vec!["s-1"]);
}

/// The outbox: a repeat enqueue is ignored; a claim is leased; a sender that dies leaves the
/// e-mail due again as the next attempt; outcomes are listed newest first by status.
pub async fn outbox_leases(outbox: &dyn Outbox) {
    let email = |id: &str| OutboundEmail {
        id: id.into(),
        to: "a@b.example".into(),
        subject: "s".into(),
        text: "t".into(),
        html: "<p>t</p>".into(),
        category: "test".into(),
    };
    outbox.enqueue(&email("m1")).await.unwrap();
    outbox.enqueue(&email("m1")).await.unwrap();
    let lease = Duration::from_secs(1);
    let first = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, email("m1"));
    assert_eq!(first[0].1, 1);
    // Claimed: nobody else gets it while the lease runs...
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());
    // ...and when the sender never records an outcome, it is due again, as attempt 2.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let second = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!((second.len(), second[0].1), (1, 2));
    outbox.mark_sent("m1", Some("sg-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());

    outbox.enqueue(&email("m2")).await.unwrap();
    let claimed = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    outbox
        .retry_later("m2", Duration::from_secs(60), "429 Too Many Requests")
        .await
        .unwrap();
    assert!(outbox.claim_due(10, lease).await.unwrap().is_empty());
    outbox.enqueue(&email("m3")).await.unwrap();
    let claimed = outbox.claim_due(10, lease).await.unwrap();
    assert_eq!(claimed[0].0.id, "m3");
    outbox.mark_failed("m3", "400 bad address").await.unwrap();

    let sent = outbox
        .list_outbox(Some(EmailStatus::Sent), &page(10, None))
        .await
        .unwrap();
    assert_eq!(sent.items.len(), 1);
    assert_eq!(sent.items[0].provider_message_id.as_deref(), Some("sg-1"));
    assert_eq!(sent.items[0].attempts, 2);
    assert!(sent.items[0].sent_at.is_some());
    let failed = outbox
        .list_outbox(Some(EmailStatus::Failed), &page(10, None))
        .await
        .unwrap();
    assert_eq!(
        failed.items[0].last_error.as_deref(),
        Some("400 bad address")
    );
    let pending = outbox
        .list_outbox(Some(EmailStatus::Pending), &page(10, None))
        .await
        .unwrap();
    assert_eq!(pending.items[0].id, "m2");
    assert_eq!(
        pending.items[0].last_error.as_deref(),
        Some("429 Too Many Requests")
    );
    let all = walk(1, |p| async move { outbox.list_outbox(None, &p).await }).await;
    assert_eq!(all.len(), 3);
}
