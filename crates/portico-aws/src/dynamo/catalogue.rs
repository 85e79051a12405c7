//! The `Catalogue` port on the table: products, lots, shipments.

use async_trait::async_trait;
use portico_core::domain::{Lot, Product, Shipment};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Catalogue, Result};

use super::keys::{self, GSI1, GSI2, GSI3, ONE};
use super::{DynamoStore, item, text};

#[async_trait]
impl Catalogue for DynamoStore {
    async fn create_product(&self, product: &Product) -> Result<()> {
        let sort = keys::order(product.created_at, &product.sku);
        let item = item(
            keys::product(&product.sku),
            ONE,
            product,
            &[(GSI1, keys::PRODUCTS.into(), sort)],
        )?;
        let conflict = format!("product `{}` already exists", product.sku);
        self.create(item, conflict).await
    }

    async fn product(&self, sku: &str) -> Result<Option<Product>> {
        self.get_record(keys::product(sku), ONE).await
    }

    async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>> {
        self.page(GSI1, keys::PRODUCTS.into(), false, page).await
    }

    async fn create_lot(&self, lot: &Lot) -> Result<()> {
        let item = item(keys::lot(&lot.lot_number), ONE, lot, &[])?;
        let conflict = format!("lot `{}` already exists", lot.lot_number);
        self.create(item, conflict).await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        self.get_record(keys::lot(lot_number), ONE).await
    }

    async fn create_shipment(&self, shipment: &Shipment) -> Result<()> {
        let sort = keys::order(shipment.created_at, &shipment.id);
        let item = item(
            keys::shipment(&shipment.id),
            ONE,
            shipment,
            &[
                (GSI1, keys::lot_shipments(&shipment.lot_number), sort.clone()),
                (GSI2, keys::account_shipments(&shipment.account_id), sort.clone()),
                (GSI3, keys::SHIPMENTS.into(), sort),
            ],
        )?;
        let conflict = format!("shipment `{}` already exists", shipment.id);
        self.create(item, conflict).await
    }

    async fn list_shipments(
        &self,
        lot_number: Option<&str>,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Shipment>> {
        match (lot_number, account_id) {
            (Some(lot), account) => {
                // A lot's shipments to one account: the lot's partition, filtered on the
                // account's index key.
                let account = account.map(keys::account_shipments);
                self.page_where(GSI1, keys::lot_shipments(lot), false, page, |item| {
                    account.is_none() || text(item, GSI2.pk) == account
                })
                .await
            }
            (None, Some(account)) => {
                let partition = keys::account_shipments(account);
                self.page(GSI2, partition, false, page).await
            }
            (None, None) => self.page(GSI3, keys::SHIPMENTS.into(), false, page).await,
        }
    }
}
