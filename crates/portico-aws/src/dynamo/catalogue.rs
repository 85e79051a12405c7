//! The `Catalogue` port on the table: products, lots and their recalls, shipments with what each
//! account holds of a lot (a `STOCK` item per account and lot, kept in the shipment's own
//! transaction), lot uses.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use portico_core::domain::{Lot, LotUse, Product, Recall, Shipment};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Catalogue, Error, FieldError, Result};

use super::keys::{self, GSI1, GSI2, GSI3, ONE};
use super::{DynamoStore, item, text};
use crate::error::sdk_error;

fn built<T, E: std::fmt::Display>(built: std::result::Result<T, E>) -> Result<T> {
    built.map_err(|e| Error::Unexpected(anyhow::anyhow!("building write: {e}")))
}

impl DynamoStore {
    /// Adds `quantity` to what `account` holds of `lot_number` (made at zero when missing), or
    /// with `take`, removes it on condition that there is as much.
    fn stock_change(
        &self,
        account: &str,
        lot_number: &str,
        quantity: u32,
        take: bool,
    ) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(keys::stock(account, lot_number)))
            .key("sk", AttributeValue::S(ONE.into()))
            .expression_attribute_values(":q", AttributeValue::N(quantity.to_string()));
        update = if take {
            update.update_expression("SET held = held - :q").condition_expression("held >= :q")
        } else {
            update.update_expression("ADD held :q")
        };
        Ok(TransactWriteItem::builder().update(built(update.build())?).build())
    }
}

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
        let sort = keys::order(lot.created_at, &lot.lot_number);
        let item = item(keys::lot(&lot.lot_number), ONE, lot, &[(GSI1, keys::LOTS.into(), sort)])?;
        let conflict = format!("lot `{}` already exists", lot.lot_number);
        self.create(item, conflict).await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        self.get_record(keys::lot(lot_number), ONE).await
    }

    async fn list_lots(&self, page: &PageRequest) -> Result<Page<Lot>> {
        self.page(GSI1, keys::LOTS.into(), false, page).await
    }

    async fn recall_lot(&self, lot_number: &str, recall: &Recall) -> Result<Option<(Lot, bool)>> {
        let mut recalled = false;
        let lot = self
            .update(keys::lot(lot_number), ONE, |lot: &mut Lot| {
                // Set by this attempt only: a lost race is read again and sees the winner's.
                recalled = lot.recall.is_none();
                if recalled {
                    lot.recall = Some(recall.clone());
                }
                recalled
            })
            .await?;
        Ok(lot.map(|lot| (lot, recalled)))
    }

    async fn create_shipment(&self, shipment: &Shipment) -> Result<()> {
        let sort = keys::order(shipment.created_at, &shipment.id);
        let record = item(
            keys::shipment(&shipment.id),
            ONE,
            shipment,
            &[
                (GSI1, keys::lot_shipments(&shipment.lot_number), sort.clone()),
                (GSI2, keys::account_shipments(&shipment.account_id), sort.clone()),
                (GSI3, keys::SHIPMENTS.into(), sort),
            ],
        )?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(pk)");
        let lot = &shipment.lot_number;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(built(put.build())?).build())
            .transact_items(self.stock_change(
                &shipment.account_id,
                lot,
                shipment.quantity,
                false,
            )?);
        if let Some(from) = &shipment.from_account_id {
            request =
                request.transact_items(self.stock_change(from, lot, shipment.quantity, true)?);
        }
        let error = match request.send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(sdk_error("recording shipment", error));
        };
        // Reasons come in the order of the transaction's items: the shipment, the receiver's
        // stock, the sender's stock.
        let reasons: Vec<&str> =
            cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
        match reasons.as_slice() {
            ["ConditionalCheckFailed", ..] => {
                Err(Error::Conflict(format!("shipment `{}` already exists", shipment.id)))
            }
            [_, _, "ConditionalCheckFailed"] => {
                let from = shipment.from_account_id.as_deref().unwrap_or_default();
                let held = self.held(from, lot).await?;
                Err(Error::Validation(vec![FieldError::new(
                    "quantity",
                    format!(
                        "account `{from}` holds {held} of lot `{lot}`; it cannot send {}",
                        shipment.quantity
                    ),
                )]))
            }
            _ => Err(Error::Unavailable(format!(
                "recording shipment: transaction cancelled ({})",
                reasons.join(", ")
            ))),
        }
    }

    async fn held(&self, account_id: &str, lot_number: &str) -> Result<u64> {
        let Some(stock) = self.get(keys::stock(account_id, lot_number), ONE).await? else {
            return Ok(0);
        };
        let held = stock.get("held").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        Ok(held.unwrap_or(0))
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

    async fn record_lot_use(&self, lot_use: &LotUse) -> Result<bool> {
        let sort = keys::order(lot_use.loaded_at, &lot_use.id);
        let record =
            item(keys::lot_use(&lot_use.id), ONE, lot_use, &[(GSI1, keys::LOT_USES.into(), sort)])?;
        self.create_once(record).await
    }

    async fn list_lot_uses(&self, page: &PageRequest) -> Result<Page<LotUse>> {
        self.page(GSI1, keys::LOT_USES.into(), false, page).await
    }
}
