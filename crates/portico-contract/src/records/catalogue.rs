//! The `Catalogue` port.

use portico_core::domain::{Lot, LotUse, Product, QcTest, Recall, Shipment};
use portico_core::{Accounts, Catalogue, Error};

use super::{at, page, two_accounts, walk};

/// Products, lots and shipments; recalls once; onward shipments never overdraw; lot uses once.
pub async fn products_lots_and_shipments(accounts: &dyn Accounts, catalogue: &dyn Catalogue) {
    two_accounts(accounts).await;
    for n in 0..3 {
        let product = Product {
            sku: format!("SKU-{n}"),
            name: format!("Polymerase {n}"),
            category: "enzymes".into(),
            created_at: at(700 + n),
        };
        catalogue.create_product(&product).await.unwrap();
    }
    let product = catalogue.product("SKU-1").await.unwrap().unwrap();
    assert!(matches!(catalogue.create_product(&product).await, Err(Error::Conflict(_))));
    let skus: Vec<String> = walk(2, |p| async move { catalogue.list_products(&p).await })
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
        recall: None,
    };
    catalogue.create_lot(&lot).await.unwrap();
    assert!(matches!(catalogue.create_lot(&lot).await, Err(Error::Conflict(_))));
    assert_eq!(catalogue.lot("L-1").await.unwrap(), Some(lot));
    assert_eq!(catalogue.lot("L-404").await.unwrap(), None);

    for n in 0..3 {
        let shipment = Shipment {
            id: format!("s-{n}"),
            lot_number: "L-1".into(),
            from_account_id: None,
            account_id: if n == 1 { "acc-2" } else { "acc-1" }.into(),
            shipped_on: "2026-02-03".into(),
            quantity: 10,
            created_at: at(900 + n),
        };
        catalogue.create_shipment(&shipment).await.unwrap();
    }
    let ids = |items: Vec<Shipment>| items.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let of_lot =
        walk(2, |p| async move { catalogue.list_shipments(Some("L-1"), None, &p).await }).await;
    assert_eq!(ids(of_lot), vec!["s-0", "s-1", "s-2"]);
    let to_account =
        walk(2, |p| async move { catalogue.list_shipments(None, Some("acc-1"), &p).await }).await;
    assert_eq!(ids(to_account), vec!["s-0", "s-2"]);
    let both = catalogue.list_shipments(Some("L-1"), Some("acc-2"), &page(10, None)).await.unwrap();
    assert_eq!(ids(both.items), vec!["s-1"]);

    let lots: Vec<String> = walk(1, |p| async move { catalogue.list_lots(&p).await })
        .await
        .into_iter()
        .map(|l| l.lot_number)
        .collect();
    assert_eq!(lots, vec!["L-1"]);

    // Recalled once: a second recall answers the first.
    let first =
        Recall { reason: "endotoxin".into(), recalled_by: "u-1".into(), recalled_at: at(950) };
    let second = Recall { reason: "other".into(), recalled_by: "u-2".into(), recalled_at: at(960) };
    let (recalled, new) = catalogue.recall_lot("L-1", &first).await.unwrap().unwrap();
    assert!(new);
    assert_eq!(recalled.recall.as_ref(), Some(&first));
    let (again, new) = catalogue.recall_lot("L-1", &second).await.unwrap().unwrap();
    assert!(!new);
    assert_eq!(again.recall, Some(first.clone()));
    assert_eq!(catalogue.lot("L-1").await.unwrap().unwrap().recall, Some(first));
    assert_eq!(catalogue.recall_lot("L-404", &second).await.unwrap(), None);

    // Onward shipments: acc-1 received 20; it can send on 20 and no more, also when two
    // shipments race for the same stock.
    assert_eq!(catalogue.held("acc-1", "L-1").await.unwrap(), 20);
    let onward = |id: &str, quantity: u32| Shipment {
        id: id.into(),
        lot_number: "L-1".into(),
        from_account_id: Some("acc-1".into()),
        account_id: "acc-2".into(),
        shipped_on: "2026-02-10".into(),
        quantity,
        created_at: at(1000),
    };
    catalogue.create_shipment(&onward("s-on-1", 5)).await.unwrap();
    let overdraw = catalogue.create_shipment(&onward("s-on-2", 16)).await;
    assert!(
        matches!(&overdraw, Err(Error::Validation(errors)) if errors[0].field == "quantity"),
        "{overdraw:?}"
    );
    let (race_a, race_b) = (onward("s-race-a", 10), onward("s-race-b", 10));
    let (a, b) =
        futures_util::join!(catalogue.create_shipment(&race_a), catalogue.create_shipment(&race_b));
    assert!(a.is_ok() != b.is_ok(), "exactly one racing shipment fits: {a:?} {b:?}");
    assert_eq!(catalogue.held("acc-1", "L-1").await.unwrap(), 5);
    assert_eq!(catalogue.held("acc-2", "L-1").await.unwrap(), 25);
    let sent = catalogue.list_shipments(Some("L-1"), Some("acc-2"), &page(10, None)).await.unwrap();
    assert!(sent.items.iter().any(|s| s.from_account_id.as_deref() == Some("acc-1")));

    // Lot uses: recorded once per id.
    let lot_use = |id: &str| LotUse {
        id: id.into(),
        lot_number: "L-1".into(),
        serial: "SN-1".into(),
        account_id: "acc-1".into(),
        loaded_at: at(1100),
    };
    assert!(catalogue.record_lot_use(&lot_use("use-1")).await.unwrap());
    assert!(!catalogue.record_lot_use(&lot_use("use-1")).await.unwrap());
    assert!(catalogue.record_lot_use(&lot_use("use-2")).await.unwrap());
    let uses = walk(1, |p| async move { catalogue.list_lot_uses(&p).await }).await;
    assert_eq!(uses, vec![lot_use("use-1"), lot_use("use-2")]);
}
