//! The `Catalogue` port on SQLite: products, lots with their QC results and recalls, shipments,
//! lot uses.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Lot, LotUse, Product, Recall, Shipment};
use portico_core::graph::Change;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Catalogue, Error, FieldError, Result};
use rusqlite::{OptionalExtension, Row, params};

use crate::rows::{Decoded, conflict_or, corrupt, parse_timestamp, timestamp, values};
use crate::store::Order;
use crate::{SqliteStore, changes};

const PRODUCT_COLUMNS: &str = "seq, sku, name, category, created_at";
const LOT_COLUMNS: &str =
    "seq, lot_number, sku, manufactured_on, expires_on, qc_tests, created_at, recall";
const SHIPMENT_COLUMNS: &str =
    "seq, id, lot_number, account_id, shipped_on, quantity, created_at, from_account_id";
const LOT_USE_COLUMNS: &str = "seq, id, lot_number, serial, account_id, loaded_at";

/// What `account_id` holds of `lot_number`: received minus sent on.
const HELD: &str = "SELECT
     (SELECT COALESCE(SUM(quantity), 0) FROM shipments WHERE account_id = ?1 AND lot_number = ?2)
   - (SELECT COALESCE(SUM(quantity), 0) FROM shipments WHERE from_account_id = ?1 AND lot_number = ?2)";

#[async_trait]
impl Catalogue for SqliteStore {
    async fn create_product(&self, p: &Product) -> Result<()> {
        let sql = "INSERT INTO products (sku, name, category, created_at) VALUES (?1, ?2, ?3, ?4)";
        let created = timestamp(p.created_at)?;
        let values = values![p.sku.clone(), p.name.clone(), p.category.clone(), created];
        let conflict = format!("product `{}` already exists", p.sku);
        let change = Change::Product(p.clone());
        self.insert(sql, values, conflict, change, "inserting product").await
    }

    async fn product(&self, sku: &str) -> Result<Option<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = ?1");
        self.one(&sql, params![sku], product_row, "reading product")
    }

    async fn list_products(&self, page: &PageRequest) -> Result<Page<Product>> {
        let select = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE TRUE");
        self.listing(&select, &[], product_row, page, Order::OldestFirst, "listing products")
    }

    async fn create_lot(&self, lot: &Lot) -> Result<()> {
        let sql = "INSERT INTO lots (lot_number, sku, manufactured_on, expires_on, qc_tests,
                                     created_at, recall)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        let tests = serde_json::to_string(&lot.qc_tests).context("encoding QC tests")?;
        let recall = lot.recall.as_ref().map(encode_recall).transpose()?;
        let (number, sku) = (lot.lot_number.clone(), lot.sku.clone());
        let (made, expires) = (lot.manufactured_on.clone(), lot.expires_on.clone());
        let created = timestamp(lot.created_at)?;
        let values = values![number, sku, made, expires, tests, created, recall];
        let conflict = format!("lot `{}` already exists", lot.lot_number);
        let change = Change::Lot(lot.clone());
        self.insert(sql, values, conflict, change, "inserting lot").await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        let sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE lot_number = ?1");
        self.one(&sql, params![lot_number], lot_row, "reading lot")
    }

    async fn list_lots(&self, page: &PageRequest) -> Result<Page<Lot>> {
        let select = format!("SELECT {LOT_COLUMNS} FROM lots WHERE TRUE");
        self.listing(&select, &[], lot_row, page, Order::OldestFirst, "listing lots")
    }

    async fn recall_lot(&self, lot_number: &str, recall: &Recall) -> Result<Option<(Lot, bool)>> {
        let lot_number = lot_number.to_string();
        let encoded = encode_recall(recall)?;
        self.db
            .transaction("recall", move |tx| {
                let recalled = tx
                    .execute(
                        "UPDATE lots SET recall = ?2 WHERE lot_number = ?1 AND recall IS NULL",
                        params![lot_number, encoded],
                    )
                    .context("recalling lot")?
                    > 0;
                let sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE lot_number = ?1");
                let Some((_, lot)) = tx
                    .query_row(&sql, params![lot_number], lot_row)
                    .optional()
                    .context("reading lot")?
                else {
                    return Ok(None);
                };
                let lot = lot?;
                if recalled {
                    changes::record(tx, &Change::Lot(lot.clone()))?;
                }
                Ok(Some((lot, recalled)))
            })
            .await
    }

    async fn create_shipment(&self, s: &Shipment) -> Result<()> {
        let shipment = s.clone();
        self.db
            .transaction("shipment", move |tx| {
                if let Some(from) = &shipment.from_account_id {
                    let held: i64 = tx
                        .query_row(HELD, params![from, shipment.lot_number], |r| r.get(0))
                        .context("reading what the sender holds")?;
                    if i64::from(shipment.quantity) > held {
                        return Err(Error::Validation(vec![FieldError::new(
                            "quantity",
                            format!(
                                "account `{from}` holds {} of lot `{}`; it cannot send {}",
                                held.max(0),
                                shipment.lot_number,
                                shipment.quantity
                            ),
                        )]));
                    }
                }
                tx.execute(
                    "INSERT INTO shipments (id, lot_number, account_id, shipped_on, quantity,
                                            created_at, from_account_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        shipment.id,
                        shipment.lot_number,
                        shipment.account_id,
                        shipment.shipped_on,
                        shipment.quantity,
                        timestamp(shipment.created_at)?,
                        shipment.from_account_id
                    ],
                )
                .map_err(|e| {
                    conflict_or(
                        e,
                        format!("shipment `{}` already exists", shipment.id),
                        "inserting shipment",
                    )
                })?;
                changes::record(tx, &Change::Shipment(shipment))
            })
            .await
    }

    async fn held(&self, account_id: &str, lot_number: &str) -> Result<u64> {
        let held: i64 = self.db.read(|conn| {
            let mut statement = conn.prepare_cached(HELD).context("reading held quantity")?;
            Ok(statement
                .query_row(params![account_id, lot_number], |r| r.get(0))
                .context("reading held quantity")?)
        })?;
        Ok(held.max(0) as u64)
    }

    async fn list_shipments(
        &self,
        lot_number: Option<&str>,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Shipment>> {
        let select = format!(
            "SELECT {SHIPMENT_COLUMNS} FROM shipments
             WHERE (?2 IS NULL OR lot_number = ?2) AND (?3 IS NULL OR account_id = ?3)"
        );
        self.listing(
            &select,
            &[&lot_number, &account_id],
            shipment_row,
            page,
            Order::OldestFirst,
            "listing shipments",
        )
    }

    async fn record_lot_use(&self, u: &LotUse) -> Result<bool> {
        let lot_use = u.clone();
        self.db
            .transaction("lot use", move |tx| {
                let added = tx
                    .execute(
                        "INSERT INTO lot_uses (id, lot_number, serial, account_id, loaded_at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                        params![
                            lot_use.id,
                            lot_use.lot_number,
                            lot_use.serial,
                            lot_use.account_id,
                            timestamp(lot_use.loaded_at)?
                        ],
                    )
                    .context("inserting lot use")?
                    > 0;
                if added {
                    changes::record(tx, &Change::LotUse(lot_use))?;
                }
                Ok(added)
            })
            .await
    }

    async fn list_lot_uses(&self, page: &PageRequest) -> Result<Page<LotUse>> {
        let select = format!("SELECT {LOT_USE_COLUMNS} FROM lot_uses WHERE TRUE");
        self.listing(&select, &[], lot_use_row, page, Order::OldestFirst, "listing lot uses")
    }
}

fn encode_recall(recall: &Recall) -> Result<String> {
    Ok(serde_json::to_string(recall).context("encoding recall")?)
}

fn product_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Product>> {
    let seq: i64 = row.get(0)?;
    let (sku, name, category, created): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let product =
        parse_timestamp(&created).map(|created_at| Product { sku, name, category, created_at });
    Ok((seq, product))
}

fn lot_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Lot>> {
    let seq: i64 = row.get(0)?;
    let (lot_number, sku, manufactured_on, expires_on): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let (tests, created): (String, String) = (row.get(5)?, row.get(6)?);
    let recall: Option<String> = row.get(7)?;
    let lot = (|| {
        Ok(Lot {
            lot_number,
            sku,
            manufactured_on,
            expires_on,
            qc_tests: serde_json::from_str(&tests)
                .map_err(|e| corrupt(format!("bad QC tests: {e}")))?,
            created_at: parse_timestamp(&created)?,
            recall: recall
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| corrupt(format!("bad recall: {e}")))?,
        })
    })();
    Ok((seq, lot))
}

fn shipment_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Shipment>> {
    let seq: i64 = row.get(0)?;
    let (id, lot_number, account_id, shipped_on): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let quantity: u32 = row.get(5)?;
    let created: String = row.get(6)?;
    let from_account_id: Option<String> = row.get(7)?;
    let shipment = parse_timestamp(&created).map(|created_at| Shipment {
        id,
        lot_number,
        from_account_id,
        account_id,
        shipped_on,
        quantity,
        created_at,
    });
    Ok((seq, shipment))
}

fn lot_use_row(row: &Row<'_>) -> rusqlite::Result<Decoded<LotUse>> {
    let seq: i64 = row.get(0)?;
    let (id, lot_number, serial, account_id, loaded): (String, String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
    let lot_use = parse_timestamp(&loaded).map(|loaded_at| LotUse {
        id,
        lot_number,
        serial,
        account_id,
        loaded_at,
    });
    Ok((seq, lot_use))
}
