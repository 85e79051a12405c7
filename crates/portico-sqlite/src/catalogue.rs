//! The `Catalogue` port on SQLite: products, lots with their QC results, shipments.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Lot, Product, Shipment};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Catalogue, Result};
use rusqlite::{Row, params};

use crate::SqliteStore;
use crate::rows::{Decoded, corrupt, parse_timestamp, timestamp, values};
use crate::store::Order;

const PRODUCT_COLUMNS: &str = "seq, sku, name, category, created_at";
const LOT_COLUMNS: &str = "seq, lot_number, sku, manufactured_on, expires_on, qc_tests, created_at";
const SHIPMENT_COLUMNS: &str = "seq, id, lot_number, account_id, shipped_on, quantity, created_at";

#[async_trait]
impl Catalogue for SqliteStore {
    async fn create_product(&self, p: &Product) -> Result<()> {
        let sql = "INSERT INTO products (sku, name, category, created_at) VALUES (?1, ?2, ?3, ?4)";
        let created = timestamp(p.created_at)?;
        let values = values![p.sku.clone(), p.name.clone(), p.category.clone(), created];
        let conflict = format!("product `{}` already exists", p.sku);
        self.insert(sql, values, conflict, "inserting product").await
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
        let sql =
            "INSERT INTO lots (lot_number, sku, manufactured_on, expires_on, qc_tests, created_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        let tests = serde_json::to_string(&lot.qc_tests).context("encoding QC tests")?;
        let (number, sku) = (lot.lot_number.clone(), lot.sku.clone());
        let (made, expires) = (lot.manufactured_on.clone(), lot.expires_on.clone());
        let values = values![number, sku, made, expires, tests, timestamp(lot.created_at)?];
        let conflict = format!("lot `{}` already exists", lot.lot_number);
        self.insert(sql, values, conflict, "inserting lot").await
    }

    async fn lot(&self, lot_number: &str) -> Result<Option<Lot>> {
        let sql = format!("SELECT {LOT_COLUMNS} FROM lots WHERE lot_number = ?1");
        self.one(&sql, params![lot_number], lot_row, "reading lot")
    }

    async fn create_shipment(&self, s: &Shipment) -> Result<()> {
        let sql =
            "INSERT INTO shipments (id, lot_number, account_id, shipped_on, quantity, created_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        let (id, lot, account) = (s.id.clone(), s.lot_number.clone(), s.account_id.clone());
        let (shipped, created) = (s.shipped_on.clone(), timestamp(s.created_at)?);
        let values = values![id, lot, account, shipped, s.quantity, created];
        let conflict = format!("shipment `{}` already exists", s.id);
        self.insert(sql, values, conflict, "inserting shipment").await
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
    let lot = (|| {
        Ok(Lot {
            lot_number,
            sku,
            manufactured_on,
            expires_on,
            qc_tests: serde_json::from_str(&tests)
                .map_err(|e| corrupt(format!("bad QC tests: {e}")))?,
            created_at: parse_timestamp(&created)?,
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
    let shipment = parse_timestamp(&created).map(|created_at| Shipment {
        id,
        lot_number,
        account_id,
        shipped_on,
        quantity,
        created_at,
    });
    Ok((seq, shipment))
}
