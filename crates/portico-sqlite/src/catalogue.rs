//! The catalogue on SQLite: products, lots with their QC results, shipments.

use anyhow::Context;
use portico_core::domain::{Lot, Product, Shipment};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::is_unique_violation;
use crate::store::{Decoded, decode_cursor, paginate, parse_timestamp, timestamp};

pub(crate) fn conflict_or(e: rusqlite::Error, conflict: String, what: &'static str) -> Error {
    if is_unique_violation(&e) {
        Error::Conflict(conflict)
    } else {
        Error::Unexpected(anyhow::Error::new(e).context(what))
    }
}

pub(crate) fn create_product(conn: &Connection, p: &Product) -> Result<()> {
    conn.execute(
        "INSERT INTO products (sku, name, category, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![p.sku, p.name, p.category, timestamp(p.created_at)?],
    )
    .map_err(|e| {
        conflict_or(
            e,
            format!("product `{}` already exists", p.sku),
            "inserting product",
        )
    })?;
    Ok(())
}

fn product_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Product>> {
    let seq: i64 = row.get(0)?;
    let (sku, name, category, created): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    Ok((
        seq,
        parse_timestamp(&created).map(|created_at| Product {
            sku,
            name,
            category,
            created_at,
        }),
    ))
}

pub(crate) fn product(conn: &Connection, sku: &str) -> Result<Option<Product>> {
    let row = conn
        .prepare_cached("SELECT seq, sku, name, category, created_at FROM products WHERE sku = ?1")
        .and_then(|mut s| s.query_row(params![sku], product_row).optional())
        .context("reading product")?;
    row.map(|(_, p)| p).transpose()
}

pub(crate) fn list_products(conn: &Connection, page: &PageRequest) -> Result<Page<Product>> {
    let after = decode_cursor(page.cursor.as_deref())?;
    let rows = conn
        .prepare_cached("SELECT seq, sku, name, category, created_at FROM products WHERE seq > ?1 ORDER BY seq LIMIT ?2")
        .and_then(|mut s| s.query_map(params![after, page.limit + 1], product_row)?.collect::<Result<Vec<_>, _>>())
        .context("listing products")?;
    paginate(rows, page.limit)
}

pub(crate) fn create_lot(conn: &Connection, lot: &Lot) -> Result<()> {
    let tests = serde_json::to_string(&lot.qc_tests).context("encoding QC tests")?;
    conn.execute(
        "INSERT INTO lots (lot_number, sku, manufactured_on, expires_on, qc_tests, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            lot.lot_number,
            lot.sku,
            lot.manufactured_on,
            lot.expires_on,
            tests,
            timestamp(lot.created_at)?
        ],
    )
    .map_err(|e| {
        conflict_or(
            e,
            format!("lot `{}` already exists", lot.lot_number),
            "inserting lot",
        )
    })?;
    Ok(())
}

pub(crate) fn lot(conn: &Connection, lot_number: &str) -> Result<Option<Lot>> {
    let row: Option<(String, String, String, String, String, String)> = conn
        .prepare_cached(
            "SELECT lot_number, sku, manufactured_on, expires_on, qc_tests, created_at FROM lots WHERE lot_number = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![lot_number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .optional()
        })
        .context("reading lot")?;
    let Some((lot_number, sku, manufactured_on, expires_on, tests, created)) = row else {
        return Ok(None);
    };
    Ok(Some(Lot {
        lot_number,
        sku,
        manufactured_on,
        expires_on,
        qc_tests: serde_json::from_str(&tests)
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("bad QC tests: {e}")))?,
        created_at: parse_timestamp(&created)?,
    }))
}

pub(crate) fn create_shipment(conn: &Connection, s: &Shipment) -> Result<()> {
    conn.execute(
        "INSERT INTO shipments (id, lot_number, account_id, shipped_on, quantity, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            s.id,
            s.lot_number,
            s.account_id,
            s.shipped_on,
            s.quantity,
            timestamp(s.created_at)?
        ],
    )
    .map_err(|e| {
        conflict_or(
            e,
            format!("shipment `{}` already exists", s.id),
            "inserting shipment",
        )
    })?;
    Ok(())
}

pub(crate) fn list_shipments(
    conn: &Connection,
    lot_number: Option<&str>,
    account_id: Option<&str>,
    page: &PageRequest,
) -> Result<Page<Shipment>> {
    let after = decode_cursor(page.cursor.as_deref())?;
    let rows = conn
        .prepare_cached(
            "SELECT seq, id, lot_number, account_id, shipped_on, quantity, created_at FROM shipments
             WHERE seq > ?1 AND (?2 IS NULL OR lot_number = ?2) AND (?3 IS NULL OR account_id = ?3)
             ORDER BY seq LIMIT ?4",
        )
        .and_then(|mut s| {
            s.query_map(params![after, lot_number, account_id, page.limit + 1], |r| {
                let seq: i64 = r.get(0)?;
                let (id, lot_number, account_id, shipped_on): (String, String, String, String) =
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                let quantity: u32 = r.get(5)?;
                let created: String = r.get(6)?;
                Ok((
                    seq,
                    parse_timestamp(&created).map(|created_at| Shipment {
                        id,
                        lot_number,
                        account_id,
                        shipped_on,
                        quantity,
                        created_at,
                    }),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .context("listing shipments")?;
    paginate(rows, page.limit)
}
