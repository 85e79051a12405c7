//! The warehouse's reports: what each one is (`Report`, its columns), what it is asked for
//! (`ReportQuery`), what it answers (`ReportTable`), and its SQL, written once for every store.

use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

use super::{Cell, Column, Kind, col};
use crate::error::{Error, Result};

use Kind::{Bool, Date as D, Int, Text};

/// The warehouse's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Report {
    /// Alerts per ISO week, account and severity.
    AlertsByAccount,
    /// Shipments and quantities per product.
    ShipmentsByProduct,
    /// Per lot: the accounts and instruments it reached.
    LotExposure,
    /// Uploads per account, by outcome.
    UploadsByAccount,
    /// Users who signed in, per ISO week and account.
    ActiveUsers,
}

impl Report {
    pub const ALL: [Report; 5] = [
        Report::AlertsByAccount,
        Report::ShipmentsByProduct,
        Report::LotExposure,
        Report::UploadsByAccount,
        Report::ActiveUsers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Report::AlertsByAccount => "alerts-by-account",
            Report::ShipmentsByProduct => "shipments-by-product",
            Report::LotExposure => "lot-exposure",
            Report::UploadsByAccount => "uploads-by-account",
            Report::ActiveUsers => "active-users",
        }
    }

    pub fn parse(name: &str) -> Option<Report> {
        Report::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            Report::AlertsByAccount => "Alerts per week, by severity",
            Report::ShipmentsByProduct => "Shipments by product",
            Report::LotExposure => "Lot exposure: accounts and instruments reached",
            Report::UploadsByAccount => "Uploads by account",
            Report::ActiveUsers => "Active users per week",
        }
    }

    /// The report's columns, in order.
    pub fn columns(self) -> &'static [Column] {
        const ALERTS_BY_ACCOUNT: &[Column] = &[
            col("week_start", D),
            col("account_id", Text),
            col("account_name", Text),
            col("severity", Text),
            col("alerts", Int),
        ];
        const SHIPMENTS_BY_PRODUCT: &[Column] = &[
            col("sku", Text),
            col("product_name", Text),
            col("shipments", Int),
            col("quantity", Int),
            col("accounts", Int),
        ];
        const LOT_EXPOSURE: &[Column] = &[
            col("lot_number", Text),
            col("sku", Text),
            col("recalled", Bool),
            col("accounts", Int),
            col("instruments", Int),
        ];
        const UPLOADS_BY_ACCOUNT: &[Column] = &[
            col("account_id", Text),
            col("account_name", Text),
            col("uploads", Int),
            col("ready", Int),
            col("failed", Int),
            col("other", Int),
        ];
        const ACTIVE_USERS: &[Column] = &[
            col("week_start", D),
            col("account_id", Text),
            col("account_name", Text),
            col("active_users", Int),
            col("sign_ins", Int),
        ];
        match self {
            Report::AlertsByAccount => ALERTS_BY_ACCOUNT,
            Report::ShipmentsByProduct => SHIPMENTS_BY_PRODUCT,
            Report::LotExposure => LOT_EXPOSURE,
            Report::UploadsByAccount => UPLOADS_BY_ACCOUNT,
            Report::ActiveUsers => ACTIVE_USERS,
        }
    }
}

/// The SQL of a report, written once for every warehouse store (SQLite locally, Snowflake on
/// AWS): plain SQL both run, over the tables above. Its only values are the parameters `:from`
/// and `:to` (dates, both included) and `:account` (the one account an account's admin may
/// see; NULL or empty for staff), which each store binds (never splices). Its columns are
/// `report.columns()`, in order; NULLs sort first on both stores.
pub fn report_sql(report: Report) -> &'static str {
    match report {
        Report::AlertsByAccount => {
            "SELECT d.week_start, f.account_id, COALESCE(a.name, f.account_id),
                    COALESCE(f.severity, 'unknown'), COUNT(*)
             FROM fact_alerts f
             JOIN dim_dates d ON d.date = f.raised_on
             LEFT JOIN dim_accounts a ON a.account_id = f.account_id
             WHERE f.raised_on BETWEEN :from AND :to AND (COALESCE(:account, '') = '' OR f.account_id = :account)
             GROUP BY d.week_start, f.account_id, a.name, f.severity
             ORDER BY d.week_start, f.account_id NULLS FIRST, f.severity NULLS FIRST"
        }
        Report::ShipmentsByProduct => {
            "SELECT COALESCE(l.sku, '(unknown)'), COALESCE(p.name, l.sku, '(unknown)'), COUNT(*),
                    COALESCE(SUM(f.quantity), 0), COUNT(DISTINCT f.to_account_id)
             FROM fact_shipments f
             LEFT JOIN dim_lots l ON l.lot_number = f.lot_number
             LEFT JOIN dim_products p ON p.sku = l.sku
             WHERE f.shipped_on BETWEEN :from AND :to
               AND (COALESCE(:account, '') = '' OR f.to_account_id = :account OR f.from_account_id = :account)
             GROUP BY l.sku, p.name
             ORDER BY l.sku NULLS FIRST"
        }
        Report::LotExposure => {
            "WITH reach (lot_number, account_id, serial) AS (
                 SELECT lot_number, to_account_id, NULL FROM fact_shipments
                 WHERE shipped_on BETWEEN :from AND :to
                 UNION ALL
                 SELECT lot_number, account_id, serial FROM fact_lot_uses
                 WHERE loaded_on BETWEEN :from AND :to
             )
             SELECT r.lot_number, l.sku, COALESCE(l.recalled, FALSE),
                    COUNT(DISTINCT r.account_id), COUNT(DISTINCT r.serial)
             FROM reach r
             LEFT JOIN dim_lots l ON l.lot_number = r.lot_number
             WHERE r.lot_number IS NOT NULL AND (COALESCE(:account, '') = '' OR r.account_id = :account)
             GROUP BY r.lot_number, l.sku, l.recalled
             ORDER BY r.lot_number"
        }
        Report::UploadsByAccount => {
            "SELECT f.account_id, COALESCE(a.name, f.account_id), COUNT(*),
                    SUM(CASE WHEN f.status = 'ready' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN f.status = 'failed' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN f.status IN ('ready', 'failed') THEN 0 ELSE 1 END)
             FROM fact_uploads f
             LEFT JOIN dim_accounts a ON a.account_id = f.account_id
             WHERE f.created_on BETWEEN :from AND :to AND f.account_id IS NOT NULL
               AND (COALESCE(:account, '') = '' OR f.account_id = :account)
             GROUP BY f.account_id, a.name
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
             WHERE f.signed_in_on BETWEEN :from AND :to AND (COALESCE(:account, '') = '' OR f.account_id = :account)
             GROUP BY d.week_start, f.account_id, a.name
             ORDER BY d.week_start, f.account_id NULLS FIRST"
        }
    }
}

/// What a report is asked for: its dates (both included, UTC) and, for an account's own
/// admin, the one account it may cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub report: Report,
    pub from: Date,
    pub to: Date,
    pub account_id: Option<String>,
}

/// The longest range a report may cover.
pub const MAX_RANGE_DAYS: i64 = 3 * 366;

impl ReportQuery {
    /// A query over `from..=to`; by default the 52 weeks up to `today`.
    pub fn new(
        report: Report,
        from: Option<Date>,
        to: Option<Date>,
        today: Date,
        account_id: Option<String>,
    ) -> Result<ReportQuery> {
        let to = to.unwrap_or(today);
        let from = from.unwrap_or(to - Duration::days(7 * 52 - 1));
        if from > to {
            return Err(Error::invalid("from", "must not be after `to`"));
        }
        if (to - from).whole_days() >= MAX_RANGE_DAYS {
            return Err(Error::invalid("from", "a report covers at most three years"));
        }
        Ok(ReportQuery { report, from, to, account_id })
    }
}

/// A report's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportTable {
    pub report: Report,
    pub from: Date,
    pub to: Date,
    pub account_id: Option<String>,
    pub rows: Vec<Vec<Cell>>,
    /// When the newest change the warehouse holds was committed.
    pub as_of: Option<OffsetDateTime>,
}

impl ReportTable {
    /// The answer to `query`: its rows, and how far the warehouse got (if the store knows).
    pub fn answer(
        query: &ReportQuery,
        rows: Vec<Vec<Cell>>,
        as_of: Option<OffsetDateTime>,
    ) -> Self {
        ReportTable {
            report: query.report,
            from: query.from,
            to: query.to,
            account_id: query.account_id.clone(),
            rows,
            as_of,
        }
    }
}
