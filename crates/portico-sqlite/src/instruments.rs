//! The `Instruments` port on SQLite.

use async_trait::async_trait;
use portico_core::domain::Instrument;
use portico_core::ports::{Page, PageRequest};
use portico_core::{Instruments, Result};
use rusqlite::{Row, params};

use crate::SqliteStore;
use crate::rows::{self, Decoded, conflict_or, decode_cursor, parse_timestamp, timestamp};

const COLUMNS: &str = "seq, serial, model, name, account_id, created_at";

#[async_trait]
impl Instruments for SqliteStore {
    async fn create_instrument(&self, instrument: &Instrument, secret_hash: &str) -> Result<()> {
        let i = instrument.clone();
        let hash = secret_hash.to_string();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO instruments (serial, model, name, account_id, secret_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![i.serial, i.model, i.name, i.account_id, hash, timestamp(i.created_at)?],
                )
                .map_err(|e| {
                    conflict_or(
                        e,
                        format!("instrument `{}` is already registered", i.serial),
                        "inserting instrument",
                    )
                })?;
                Ok(())
            })
            .await
    }

    async fn instrument(&self, serial: &str) -> Result<Option<Instrument>> {
        let sql = format!("SELECT {COLUMNS} FROM instruments WHERE serial = ?1");
        self.db
            .read(|conn| {
                let params = params![serial];
                rows::one(conn, &sql, params, instrument_row, "reading instrument")
            })
            .await
    }

    async fn instrument_secret_hash(&self, serial: &str) -> Result<Option<String>> {
        let sql = "SELECT 0, secret_hash FROM instruments WHERE serial = ?1";
        self.db
            .read(|conn| {
                rows::one(
                    conn,
                    sql,
                    params![serial],
                    hash_row,
                    "reading instrument secret",
                )
            })
            .await
    }

    async fn list_instruments(
        &self,
        account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Instrument>> {
        let after = decode_cursor(page.cursor.as_deref())?;
        let sql = format!(
            "SELECT {COLUMNS} FROM instruments
             WHERE seq > ?1 AND (?2 IS NULL OR account_id = ?2) ORDER BY seq LIMIT ?3"
        );
        self.db
            .read(|conn| {
                let params = params![after, account_id, page.limit + 1];
                rows::page(
                    conn,
                    &sql,
                    params,
                    instrument_row,
                    page.limit,
                    "listing instruments",
                )
            })
            .await
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
