//! The reports, as SQL over the local warehouse. Every value is a bound parameter: the dates
//! (`?1`, `?2`, both included) and the one account an account's admin may see (`?3`, NULL for
//! staff).

use anyhow::Context;
use async_trait::async_trait;
use portico_core::Result;
use portico_core::warehouse::{
    Cell, Kind, Report, ReportQuery, ReportTable, TABLES, Warehouse, WarehouseStatus, date_text,
};
use rusqlite::params;
use rusqlite::types::ValueRef;

use super::{SqliteWarehouse, corrupt};

fn sql(report: Report) -> &'static str {
    match report {
        Report::AlertsByAccount => {
            "SELECT d.week_start, f.account_id, COALESCE(a.name, f.account_id),
                    COALESCE(f.severity, 'unknown'), COUNT(*)
             FROM fact_alerts f
             JOIN dim_dates d ON d.date = f.raised_on
             LEFT JOIN dim_accounts a ON a.account_id = f.account_id
             WHERE f.raised_on BETWEEN ?1 AND ?2 AND (?3 IS NULL OR f.account_id = ?3)
             GROUP BY d.week_start, f.account_id, f.severity
             ORDER BY d.week_start, f.account_id, f.severity"
        }
        Report::ShipmentsByProduct => {
            "SELECT COALESCE(l.sku, '(unknown)'), COALESCE(p.name, l.sku, '(unknown)'), COUNT(*),
                    COALESCE(SUM(f.quantity), 0), COUNT(DISTINCT f.to_account_id)
             FROM fact_shipments f
             LEFT JOIN dim_lots l ON l.lot_number = f.lot_number
             LEFT JOIN dim_products p ON p.sku = l.sku
             WHERE f.shipped_on BETWEEN ?1 AND ?2
               AND (?3 IS NULL OR f.to_account_id = ?3 OR f.from_account_id = ?3)
             GROUP BY l.sku
             ORDER BY l.sku"
        }
        Report::LotExposure => {
            "WITH reach (lot_number, account_id, serial) AS (
                 SELECT lot_number, to_account_id, NULL FROM fact_shipments
                 WHERE shipped_on BETWEEN ?1 AND ?2
                 UNION ALL
                 SELECT lot_number, account_id, serial FROM fact_lot_uses
                 WHERE loaded_on BETWEEN ?1 AND ?2
             )
             SELECT r.lot_number, l.sku, COALESCE(l.recalled, 0),
                    COUNT(DISTINCT r.account_id), COUNT(DISTINCT r.serial)
             FROM reach r
             LEFT JOIN dim_lots l ON l.lot_number = r.lot_number
             WHERE r.lot_number IS NOT NULL AND (?3 IS NULL OR r.account_id = ?3)
             GROUP BY r.lot_number
             ORDER BY r.lot_number"
        }
        Report::UploadsByAccount => {
            "SELECT f.account_id, COALESCE(a.name, f.account_id), COUNT(*),
                    SUM(f.status = 'ready'), SUM(f.status = 'failed'),
                    SUM(f.status IS NULL OR f.status NOT IN ('ready', 'failed'))
             FROM fact_uploads f
             LEFT JOIN dim_accounts a ON a.account_id = f.account_id
             WHERE f.created_on BETWEEN ?1 AND ?2 AND f.account_id IS NOT NULL
               AND (?3 IS NULL OR f.account_id = ?3)
             GROUP BY f.account_id
             ORDER BY f.account_id"
        }
        Report::ActiveUsers => {
            "SELECT d.week_start, f.account_id,
                    CASE WHEN f.account_id IS NULL THEN '(platform staff)'
                         ELSE COALESCE(a.name, f.account_id) END,
                    COUNT(DISTINCT f.user_id), COUNT(*)
             FROM fact_sign_ins f
             JOIN dim_dates d ON d.date = f.signed_in_on
             LEFT JOIN dim_accounts a ON a.account_id = f.account_id
             WHERE f.signed_in_on BETWEEN ?1 AND ?2 AND (?3 IS NULL OR f.account_id = ?3)
             GROUP BY d.week_start, f.account_id
             ORDER BY d.week_start, f.account_id"
        }
    }
}

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
                conn.prepare_cached(sql(query.report)).context("preparing a report")?;
            let mut rows =
                statement.query(params![from, to, account]).context("running a report")?;
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
        Ok(ReportTable {
            report: query.report,
            from: query.from,
            to: query.to,
            account_id: query.account_id.clone(),
            rows,
            as_of: self.as_of()?,
        })
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
