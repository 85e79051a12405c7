//! The `Catalogue` port.

use portico_core::domain::{Lot, Product, QcTest, Shipment};
use portico_core::{Accounts, Catalogue, Error};

use super::{at, page, two_accounts, walk};

/// Products, lots and shipments.
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
    };
    catalogue.create_lot(&lot).await.unwrap();
    assert!(matches!(catalogue.create_lot(&lot).await, Err(Error::Conflict(_))));
    assert_eq!(catalogue.lot("L-1").await.unwrap(), Some(lot));
    assert_eq!(catalogue.lot("L-404").await.unwrap(), None);

    for n in 0..3 {
        let shipment = Shipment {
            id: format!("s-{n}"),
            lot_number: "L-1".into(),
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
}
