//! The local reporting warehouse: `<data_dir>/warehouse.db`, the star schema of
//! `portico_core::warehouse` as SQLite tables, loaded from change records, with the checkpoint
//! (the newest change loaded) in the same database and the same transaction as the rows it
//! covers: a load either lands whole with its checkpoint or not at all, and a repeat of it
//! changes nothing because every group is replaced only by a newer version.
//!
//! The schema is written from the table declarations. A warehouse made by a Portico with other
//! declarations is emptied and rebuilt (it is a projection: nothing in it is lost).

mod reports;
mod snapshot;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use portico_core::graph::{ChangeRecord, batch};
use portico_core::warehouse::{Cell, Kind, TABLES, Table, Upsert, version_text};
use portico_core::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::Database;
use crate::rows::now_ms;

pub use snapshot::snapshot;

/// The local warehouse.
#[derive(Clone)]
pub struct SqliteWarehouse {
    db: Database,
    /// The change table it is loaded from, for the lag in `status`.
    feed: Option<crate::ChangeFeed>,
}

/// What one load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Groups written (new rows or newer versions).
    pub written: usize,
    /// Tables with a written group: what a snapshot must rewrite.
    pub tables: BTreeSet<&'static str>,
}

/// Indexes the reports use (the facts by date and lot).
const INDEXES: &[(&str, &str)] = &[
    ("fact_alerts", "raised_on"),
    ("fact_sign_ins", "signed_in_on"),
    ("fact_shipments", "shipped_on"),
    ("fact_shipments", "lot_number"),
    ("fact_lot_uses", "loaded_on"),
    ("fact_lot_uses", "lot_number"),
    ("fact_uploads", "created_on"),
];

/// The whole schema's DDL, from the declarations.
fn ddl() -> String {
    let mut out = String::new();
    for table in TABLES {
        let mut columns = vec![format!("{} TEXT PRIMARY KEY", table.key)];
        columns.extend(table.columns().map(|c| {
            let kind = match c.kind {
                Kind::Int | Kind::Bool => "INTEGER",
                Kind::Text | Kind::Date | Kind::Timestamp => "TEXT",
            };
            format!("{} {kind}", c.name)
        }));
        columns.extend(table.versions().map(|v| format!("{v} TEXT")));
        out.push_str(&format!("CREATE TABLE {} ({});\n", table.name, columns.join(", ")));
    }
    for (table, column) in INDEXES {
        out.push_str(&format!("CREATE INDEX {table}_{column} ON {table}({column});\n"));
    }
    out
}

/// Brings the schema up to date: a warehouse of other declarations is dropped and made anew.
fn setup(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS warehouse_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    .context("creating the warehouse's meta table")?;
    let wanted = ddl();
    let current: Option<String> = conn
        .query_row("SELECT value FROM warehouse_meta WHERE key = 'schema'", [], |r| r.get(0))
        .optional()
        .context("reading the warehouse schema")?;
    if current.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    let tx = conn.transaction().context("starting the warehouse schema")?;
    reset(&tx, &wanted)?;
    tx.commit().context("committing the warehouse schema")?;
    if current.is_some() {
        tracing::info!("the warehouse schema changed; the warehouse will be rebuilt");
    }
    Ok(())
}

/// Drops every table and makes the schema anew, without a checkpoint.
fn reset(conn: &Connection, ddl: &str) -> Result<()> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'warehouse_meta'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .context("listing warehouse tables")?;
    for table in tables {
        conn.execute_batch(&format!("DROP TABLE \"{}\"", table.replace('"', "\"\"")))
            .context("dropping a warehouse table")?;
    }
    conn.execute_batch(ddl).context("creating the warehouse tables")?;
    conn.execute("DELETE FROM warehouse_meta", []).context("clearing the warehouse meta")?;
    conn.execute("INSERT INTO warehouse_meta (key, value) VALUES ('schema', ?1)", params![ddl])
        .context("recording the warehouse schema")?;
    Ok(())
}

/// The statement that writes one group of `table`.
fn upsert_sql(table: &Table, group: usize) -> String {
    let g = &table.groups[group];
    let mut columns = vec![table.key];
    columns.extend(g.columns.iter().map(|c| c.name));
    match g.version {
        None => {
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
                table.name,
                columns.join(", "),
                marks.join(", "),
                table.key
            )
        }
        Some(version) => {
            columns.push(version);
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            let sets: Vec<String> =
                columns[1..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
            format!(
                "INSERT INTO {t} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}
                 WHERE {t}.{version} IS NULL OR {t}.{version} < excluded.{version}",
                columns.join(", "),
                marks.join(", "),
                table.key,
                sets.join(", "),
                t = table.name,
            )
        }
    }
}

fn value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) => Value::Text(s.clone()),
        Cell::Int(i) => Value::Integer(*i),
        Cell::Bool(b) => Value::Integer(i64::from(*b)),
    }
}

/// Writes `upserts`; answers what was written.
fn apply(conn: &Connection, upserts: &[Upsert]) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    // Each statement's text is made once per load, not once per row; and a derived row (a date)
    // that many facts name is written once per load.
    let mut sql: std::collections::HashMap<(&'static str, usize), String> = Default::default();
    let mut derived: std::collections::HashSet<(&'static str, &str)> = Default::default();
    for u in upserts {
        let versioned = u.group().version.is_some();
        if !versioned && !derived.insert((u.table.name, u.key.as_str())) {
            continue;
        }
        let text =
            sql.entry((u.table.name, u.group)).or_insert_with(|| upsert_sql(u.table, u.group));
        let mut statement = conn.prepare_cached(text).context("preparing a warehouse upsert")?;
        let mut values: Vec<Value> = Vec::with_capacity(u.values.len() + 2);
        values.push(Value::Text(u.key.clone()));
        values.extend(u.values.iter().map(value));
        if versioned {
            values.push(Value::Text(version_text(u.version)));
        }
        if statement.execute(params_from_iter(values)).context("writing a warehouse row")? > 0 {
            loaded.written += 1;
            loaded.tables.insert(u.table.name);
        }
    }
    Ok(loaded)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO warehouse_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .context("writing warehouse meta")?;
    Ok(())
}

impl SqliteWarehouse {
    /// Opens (creating if needed) the warehouse at `path`.
    pub fn open(path: &Path, feed: Option<crate::ChangeFeed>) -> Result<SqliteWarehouse> {
        Ok(SqliteWarehouse { db: Database::open_with(path, setup)?, feed })
    }

    /// The newest change loaded; `None` before the first load (or after `clear`).
    pub fn checkpoint(&self) -> Result<Option<i64>> {
        Ok(self.meta("checkpoint")?.and_then(|v| v.parse().ok()))
    }

    fn meta(&self, key: &'static str) -> Result<Option<String>> {
        self.db.read(|conn| {
            Ok(conn
                .query_row("SELECT value FROM warehouse_meta WHERE key = ?1", params![key], |r| {
                    r.get(0)
                })
                .optional()
                .context("reading warehouse meta")?)
        })
    }

    /// Loads `records` and moves the checkpoint to `checkpoint` (if given: a rebuild sets it
    /// only once it is whole), in one transaction.
    pub async fn load(&self, records: &[ChangeRecord], checkpoint: Option<i64>) -> Result<Loaded> {
        let batch = batch(records);
        let upserts: Vec<Upsert> =
            batch.elements.iter().flat_map(portico_core::warehouse::upserts).collect();
        let newest = batch.newest.map(portico_core::domain::unix_ms);
        self.db
            .transaction("loading the warehouse", move |conn| {
                let loaded = apply(conn, &upserts)?;
                if let Some(checkpoint) = checkpoint {
                    set_meta(conn, "checkpoint", &checkpoint.to_string())?;
                }
                if let Some(ms) = newest {
                    let before: Option<i64> = conn
                        .query_row(
                            "SELECT value FROM warehouse_meta WHERE key = 'as_of_ms'",
                            [],
                            |r| r.get::<_, String>(0),
                        )
                        .optional()
                        .context("reading warehouse meta")?
                        .and_then(|v| v.parse().ok());
                    set_meta(conn, "as_of_ms", &before.unwrap_or(0).max(ms).to_string())?;
                }
                set_meta(conn, "loaded_at_ms", &now_ms().to_string())?;
                Ok(loaded)
            })
            .await
    }

    /// Empties every table and forgets the checkpoint (before a rebuild).
    pub async fn clear(&self) -> Result<()> {
        self.db.transaction("clearing the warehouse", |conn| reset(conn, &ddl())).await
    }

    /// Rows per table, in `TABLES` order.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        self.db.read(|conn| {
            TABLES
                .iter()
                .map(|t| {
                    let n: i64 = conn
                        .query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| r.get(0))
                        .context("counting warehouse rows")?;
                    Ok((t.name.to_string(), n.max(0) as u64))
                })
                .collect()
        })
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    fn as_of(&self) -> Result<Option<time::OffsetDateTime>> {
        Ok(self
            .meta("as_of_ms")?
            .and_then(|v| v.parse().ok())
            .and_then(portico_core::domain::from_unix_ms))
    }
}

fn corrupt(what: String) -> Error {
    Error::Unexpected(anyhow::anyhow!("the warehouse database is damaged: {what}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portico_core::domain::{Account, AccountKind};
    use portico_core::graph::{Change, ChangeRecord};
    use portico_core::warehouse::{Report, ReportQuery, Warehouse, parse_date};
    use time::OffsetDateTime;

    use super::*;

    fn account(version: u128, name: &str) -> ChangeRecord {
        ChangeRecord {
            version,
            at: OffsetDateTime::UNIX_EPOCH,
            change: Change::Account(Account {
                id: "acc-1".into(),
                name: name.into(),
                kind: AccountKind::Customer,
                account_number: "100000".into(),
                region: "local".into(),
                created_at: OffsetDateTime::UNIX_EPOCH,
            }),
        }
    }

    fn name(warehouse: &SqliteWarehouse) -> String {
        warehouse
            .db
            .read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT name FROM dim_accounts WHERE account_id = 'acc-1'",
                        [],
                        |r| r.get(0),
                    )
                    .context("name")?)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn newer_versions_win_whatever_the_order_and_repeats_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = SqliteWarehouse::open(&dir.path().join("warehouse.db"), None).unwrap();
        assert_eq!(warehouse.checkpoint().unwrap(), None);
        let loaded = warehouse.load(&[account(5, "Acme Labs")], Some(5)).await.unwrap();
        assert_eq!(loaded.written, 1);
        // A late older change, and a repeat of the newest: nothing changes.
        let loaded = warehouse.load(&[account(3, "Acme"), account(5, "Acme Labs")], None).await;
        assert_eq!(loaded.unwrap().written, 0);
        assert_eq!(name(&warehouse), "Acme Labs");
        assert_eq!(warehouse.checkpoint().unwrap(), Some(5));
        warehouse.load(&[account(9, "Acme Research")], Some(9)).await.unwrap();
        assert_eq!(name(&warehouse), "Acme Research");

        // Reopening keeps the rows; other declarations would start it afresh.
        drop(warehouse);
        let warehouse = SqliteWarehouse::open(&dir.path().join("warehouse.db"), None).unwrap();
        assert_eq!(warehouse.checkpoint().unwrap(), Some(9));
        warehouse
            .db
            .write(|conn| set_meta(conn, "schema", "CREATE TABLE older (x TEXT);"))
            .await
            .unwrap();
        drop(warehouse);
        let warehouse = SqliteWarehouse::open(&dir.path().join("warehouse.db"), None).unwrap();
        assert_eq!(warehouse.checkpoint().unwrap(), None);
        assert!(warehouse.counts().unwrap().iter().all(|(_, n)| *n == 0));

        // A report over an empty range is empty, not an error.
        let day = parse_date("2026-12-01").unwrap();
        let query = ReportQuery::new(Report::LotExposure, None, None, day, None).unwrap();
        assert!(warehouse.report(&query).await.unwrap().rows.is_empty());
    }
}
