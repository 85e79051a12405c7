//! The reports over the local warehouse: `warehouse::report_sql` with its parameters bound by
//! name.

use anyhow::Context;
use async_trait::async_trait;
use portico_core::Result;
use portico_core::warehouse::{
    Cell, Kind, ReportQuery, ReportTable, TABLES, Warehouse, WarehouseStatus, date_text, report_sql,
};
use rusqlite::named_params;
use rusqlite::types::ValueRef;

use super::{SqliteWarehouse, corrupt};

/// A SQLite value as a cell of a column of `kind`.
pub(super) fn cell(value: ValueRef<'_>, kind: Kind) -> Cell {
    match (value, kind) {
        (ValueRef::Null, _) => Cell::Null,
        (ValueRef::Integer(i), Kind::Bool) => Cell::Bool(i != 0),
        (ValueRef::Integer(i), _) => Cell::Int(i),
        (ValueRef::Real(r), _) => Cell::Int(r as i64),
        (ValueRef::Text(t) | ValueRef::Blob(t), _) => {
            Cell::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

#[async_trait]
impl Warehouse for SqliteWarehouse {
    async fn report(&self, query: &ReportQuery) -> Result<ReportTable> {
        let columns = query.report.columns();
        let (from, to) = (date_text(query.from), date_text(query.to));
        let account = query.account_id.clone();
        let rows = self.db.read(|conn| {
            let mut statement =
                conn.prepare_cached(report_sql(query.report)).context("preparing a report")?;
            let mut rows = statement
                .query(named_params! {":from": from, ":to": to, ":account": account})
                .context("running a report")?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().context("reading a report")? {
                let cells = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Ok(cell(row.get_ref(i)?, c.kind)))
                    .collect::<rusqlite::Result<Vec<Cell>>>()
                    .context("reading a report row")?;
                out.push(cells);
            }
            Ok(out)
        })?;
        Ok(ReportTable::answer(query, rows, self.as_of()?))
    }

    async fn status(&self) -> Result<WarehouseStatus> {
        let checkpoint = self.checkpoint()?;
        let lag = match (&self.feed, checkpoint) {
            (Some(feed), Some(at)) => Some(feed.latest()?.saturating_sub(at).max(0) as u64),
            (Some(feed), None) => Some(feed.latest()?.max(0) as u64),
            (None, _) => None,
        };
        let rows = self.counts()?;
        if rows.len() != TABLES.len() {
            return Err(corrupt("a table is missing".into()));
        }
        Ok(WarehouseStatus {
            checkpoint: checkpoint.map(|c| c.to_string()),
            lag,
            rows,
            as_of: self.as_of()?,
        })
    }
}
