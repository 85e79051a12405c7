//! The `Instruments` port on SQLite.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::domain::{Alert, Instrument};
use portico_core::graph::Change;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Instruments, Result};
use rusqlite::{Row, params};

use crate::SqliteStore;
use crate::rows::{Decoded, json_row, parse_timestamp, timestamp, values};
use crate::store::Order;

const COLUMNS: &str = "seq, serial, model, name, account_id, created_at";

#[async_trait]
impl Instruments for SqliteStore {
    async fn create_instrument(&self, i: &Instrument, secret_hash: &str) -> Result<()> {
        let sql =
            "INSERT INTO instruments (serial, model, name, account_id, secret_hash, created_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
        let (serial, model, name) = (i.serial.clone(), i.model.clone(), i.name.clone());
        let (account, hash) = (i.account_id.clone(), secret_hash.to_string());
        let values = values![serial, model, name, account, hash, timestamp(i.created_at)?];
        let conflict = format!("instrument `{}` is already registered", i.serial);
        let change = Change::Instrument(i.clone());
        self.insert(sql, values, conflict, change, "inserting instrument").await
    }

    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>> {
        let sql = format!("SELECT {COLUMNS} FROM instruments WHERE serial = ?1");
        self.one(&sql, params![serial], instrument_row, "reading instrument")
    }

    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>> {
        let sql = "SELECT seq, secret_hash FROM instruments WHERE serial = ?1";
        self.one(sql, params![serial], hash_row, "reading instrument secret")
    }

    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>> {
        let select =
            format!("SELECT {COLUMNS} FROM instruments WHERE (?2 IS NULL OR account_id = ?2)");
        self.listing(
            &select,
            &[&account_id],
            instrument_row,
            page,
            Order::OldestFirst,
            "listing instruments",
        )
    }

    async fn record_alert(&self, alert: &Alert) -> Result<bool> {
        let sql = "INSERT INTO alerts (id, serial, body) VALUES (?1, ?2, ?3)
                   ON CONFLICT (id) DO NOTHING";
        let body = serde_json::to_string(alert).context("encoding alert")?;
        let values = values![alert.id.clone(), alert.serial.clone(), body];
        self.record_once(sql, values, Change::Alert(alert.clone()), "recording alert").await
    }

    async fn list_alerts(&self, page: &PageRequest) -> Result<Page<Alert>> {
        let select = "SELECT seq, body FROM alerts WHERE TRUE";
        self.listing(select, &[], json_row::<Alert>, page, Order::OldestFirst, "listing alerts")
    }
}

fn instrument_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Instrument>> {
    let seq: i64 = row.get(0)?;
    let (serial, model, name, account_id): (String, String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
    let created: String = row.get(5)?;
    let instrument = parse_timestamp(&created).map(|created_at| Instrument {
        serial,
        model,
        name,
        account_id,
        created_at,
    });
    Ok((seq, instrument))
}

fn hash_row(row: &Row<'_>) -> rusqlite::Result<Decoded<String>> {
    Ok((row.get(0)?, Ok(row.get(1)?)))
}
