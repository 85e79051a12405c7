//! The warehouse's reports (`GET /v1/reports/{name}`): staff see every account, an account's
//! admin the same reports limited to their account (`policy::read_reports`). They answer from
//! the warehouse, which trails the API by the loader's lag (`as_of` says how far it got).

use portico_core::domain::Caller;
use portico_core::policy;
use portico_core::warehouse::{Report, ReportQuery, ReportTable, date_text, parse_date};
use portico_core::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::Context;

/// Runs report `name` over `from..=to` (dates, `YYYY-MM-DD`; by default the 52 weeks to today).
pub async fn report(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<ReportTable> {
    let account = policy::read_reports(caller)?;
    let report = Report::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Report::ALL.iter().map(|r| r.name()).collect();
        Error::NotFound(format!("no report `{name}` (reports: {})", names.join(", ")))
    })?;
    let date = |field: &'static str, value: Option<&str>| {
        value
            .map(|v| parse_date(v).ok_or_else(|| Error::invalid(field, "a date, YYYY-MM-DD")))
            .transpose()
    };
    let today = OffsetDateTime::now_utc().date();
    let query = ReportQuery::new(report, date("from", from)?, date("to", to)?, today, account)?;
    ctx.warehouse.report(&query).await
}

/// A report as JSON.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportBody {
    /// The report's name, e.g. `alerts-by-account`.
    pub report: String,
    pub title: String,
    /// First day covered (`YYYY-MM-DD`).
    pub from: String,
    /// Last day covered (`YYYY-MM-DD`, included).
    pub to: String,
    /// The one account covered (an account admin's), or none for every account.
    pub account_id: Option<String>,
    /// The commit time of the newest change the warehouse holds.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub as_of: Option<OffsetDateTime>,
    /// The columns in order, with what they hold (`text`, `int`, `bool`, `date`).
    #[schema(value_type = Vec<Object>)]
    pub columns: Vec<Value>,
    /// One object per row, by column name.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
}

pub fn body(table: &ReportTable) -> ReportBody {
    let columns = table.report.columns();
    ReportBody {
        report: table.report.name().into(),
        title: table.report.title().into(),
        from: date_text(table.from),
        to: date_text(table.to),
        account_id: table.account_id.clone(),
        as_of: table.as_of,
        columns: columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "kind": c.kind}))
            .collect(),
        rows: table
            .rows
            .iter()
            .map(|row| {
                let fields: Map<String, Value> = columns
                    .iter()
                    .zip(row)
                    .map(|(c, cell)| {
                        (c.name.to_string(), serde_json::to_value(cell).unwrap_or(Value::Null))
                    })
                    .collect();
                Value::Object(fields)
            })
            .collect(),
    }
}

/// A report as CSV: a header row of the column names, a line per row.
pub fn csv(table: &ReportTable) -> String {
    let mut out = portico_core::csv::line(table.report.columns().iter().map(|c| c.name));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| c.text()).collect();
        out.push_str(&portico_core::csv::line(cells.iter().map(String::as_str)));
    }
    out
}
