//! The reporting warehouse: a small star schema kept from the graph's elements, the reports
//! that answer from it, and the `Warehouse` port.
//!
//! The warehouse is loaded from graph elements (`graph::elements` of each change record), not
//! from the domain records: on AWS what reaches the warehouse is Neptune's change stream, whose
//! records are elements, so loading from elements on both hosts is what makes them hold the same
//! rows. Each element fills one group of columns of one row (`upserts`); every group that comes
//! from a versioned element carries that element's version in a column of its own, and a row's
//! group is replaced only by a newer version. So a replayed or redelivered element changes no
//! row, and a late older one never overwrites a newer value, whatever the order. The date
//! dimension is derived from the dates the facts name, and only ever inserted.
//!
//! | table | key | from |
//! |---|---|---|
//! | `dim_accounts` | `account_id` | account vertices |
//! | `dim_users` | `user_id` | user vertices; `account_id` from `member_of` |
//! | `dim_instruments` | `serial` | instrument vertices; `account_id` from `held_by` |
//! | `dim_products` | `sku` | product vertices |
//! | `dim_lots` | `lot_number` | lot vertices |
//! | `dim_dates` | `date` | every date a fact names |
//! | `fact_shipments` | `shipment_id` | `shipped` edges |
//! | `fact_lot_uses` | `lot_use_id` | `loaded` edges |
//! | `fact_uploads` | `document_id` | document vertices; `account_id` from `owned_by`, `serial` from `produced_on` |
//! | `fact_recalls` | `lot_number` | recalled lot vertices |
//! | `fact_alerts` | `alert_id` | alert vertices |
//! | `fact_sign_ins` | `sign_in_id` | sign-in vertices |
//!
//! Users' e-mail addresses stay out: the warehouse's files are read by reporting tools, and no
//! report needs them.

use async_trait::async_trait;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

use crate::domain::from_unix_ms;
use crate::error::Result;
use crate::graph::{EdgeLabel, Element, Props, Value, VertexLabel};

/// What a column holds. Dates are `YYYY-MM-DD`, timestamps ISO 8601 in UTC with milliseconds
/// (`2026-12-01T09:30:00.000Z`), so they sort as text and every reporting tool reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Int,
    Bool,
    Date,
    Timestamp,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// Columns that one kind of element fills, with the column that holds its version (`None` for
/// derived columns, which never change once inserted).
#[derive(Debug, PartialEq, Eq)]
pub struct Group {
    pub version: Option<&'static str>,
    pub columns: &'static [Column],
}

#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    /// The one key column (text).
    pub key: &'static str,
    pub groups: &'static [Group],
}

impl Table {
    /// The data columns in their stable order (the key first is not among them).
    pub fn columns(&self) -> impl Iterator<Item = &'static Column> + use<> {
        self.groups.iter().flat_map(|g| g.columns.iter())
    }

    /// The version columns, in group order.
    pub fn versions(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.groups.iter().filter_map(|g| g.version)
    }
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

const fn group(version: &'static str, columns: &'static [Column]) -> Group {
    Group { version: Some(version), columns }
}

use Kind::{Bool, Date as D, Int, Text, Timestamp as Ts};

pub static ACCOUNTS: Table = Table {
    name: "dim_accounts",
    key: "account_id",
    groups: &[group(
        "v_account",
        &[col("name", Text), col("kind", Text), col("account_number", Text)],
    )],
};
pub static USERS: Table = Table {
    name: "dim_users",
    key: "user_id",
    groups: &[
        group("v_user", &[col("display_name", Text), col("roles", Text)]),
        group("v_member_of", &[col("account_id", Text)]),
    ],
};
pub static INSTRUMENTS: Table = Table {
    name: "dim_instruments",
    key: "serial",
    groups: &[
        group("v_instrument", &[col("name", Text), col("model", Text)]),
        group("v_held_by", &[col("account_id", Text)]),
    ],
};
pub static PRODUCTS: Table = Table {
    name: "dim_products",
    key: "sku",
    groups: &[group("v_product", &[col("name", Text), col("category", Text)])],
};
pub static LOTS: Table = Table {
    name: "dim_lots",
    key: "lot_number",
    groups: &[group(
        "v_lot",
        &[col("sku", Text), col("manufactured_on", D), col("expires_on", D), col("recalled", Bool)],
    )],
};
pub static DATES: Table = Table {
    name: "dim_dates",
    key: "date",
    groups: &[Group {
        version: None,
        columns: &[
            col("year", Int),
            col("quarter", Int),
            col("month", Int),
            col("iso_year", Int),
            col("iso_week", Int),
            col("week_start", D),
            col("weekday", Int),
        ],
    }],
};
pub static SHIPMENTS: Table = Table {
    name: "fact_shipments",
    key: "shipment_id",
    groups: &[group(
        "v_shipment",
        &[
            col("lot_number", Text),
            col("from_account_id", Text),
            col("to_account_id", Text),
            col("quantity", Int),
            col("shipped_on", D),
        ],
    )],
};
pub static LOT_USES: Table = Table {
    name: "fact_lot_uses",
    key: "lot_use_id",
    groups: &[group(
        "v_lot_use",
        &[
            col("serial", Text),
            col("lot_number", Text),
            col("account_id", Text),
            col("loaded_at", Ts),
            col("loaded_on", D),
        ],
    )],
};
pub static UPLOADS: Table = Table {
    name: "fact_uploads",
    key: "document_id",
    groups: &[
        group(
            "v_document",
            &[
                col("filename", Text),
                col("status", Text),
                col("created_at", Ts),
                col("created_on", D),
                col("run_end", Ts),
            ],
        ),
        group("v_owned_by", &[col("account_id", Text)]),
        group("v_produced_on", &[col("serial", Text)]),
    ],
};
pub static RECALLS: Table = Table {
    name: "fact_recalls",
    key: "lot_number",
    groups: &[group(
        "v_recall",
        &[col("reason", Text), col("recalled_at", Ts), col("recalled_on", D)],
    )],
};
pub static ALERTS: Table = Table {
    name: "fact_alerts",
    key: "alert_id",
    groups: &[group(
        "v_alert",
        &[
            col("serial", Text),
            col("account_id", Text),
            col("severity", Text),
            col("code", Text),
            col("raised_at", Ts),
            col("raised_on", D),
        ],
    )],
};
pub static SIGN_INS: Table = Table {
    name: "fact_sign_ins",
    key: "sign_in_id",
    groups: &[group(
        "v_sign_in",
        &[
            col("user_id", Text),
            col("account_id", Text),
            col("signed_in_at", Ts),
            col("signed_in_on", D),
        ],
    )],
};

/// Every table, dimensions first.
pub static TABLES: [&Table; 12] = [
    &ACCOUNTS,
    &USERS,
    &INSTRUMENTS,
    &PRODUCTS,
    &LOTS,
    &DATES,
    &SHIPMENTS,
    &LOT_USES,
    &UPLOADS,
    &RECALLS,
    &ALERTS,
    &SIGN_INS,
];

/// One cell's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Cell {
    /// As CSV text: empty for null, `true` / `false`.
    pub fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Bool(b) => b.to_string(),
        }
    }

    pub fn as_int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            _ => 0,
        }
    }
}

/// One group of one row, as one version of an element has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    pub table: &'static Table,
    /// Index into `table.groups`.
    pub group: usize,
    pub key: String,
    /// The group's columns' values, in its order.
    pub values: Vec<Cell>,
    pub version: u128,
}

impl Upsert {
    pub fn group(&self) -> &'static Group {
        &self.table.groups[self.group]
    }
}

/// The fixed-width text of a version, which compares as the number does (every store keeps
/// versions so, since no SQL integer type holds a `u128`).
pub fn version_text(version: u128) -> String {
    format!("{version:039}")
}

/// `ms` after the epoch as the warehouse's timestamp text, and its date.
fn timestamp(ms: i64) -> (Cell, Cell) {
    let Some(at) = from_unix_ms(ms) else {
        return (Cell::Null, Cell::Null);
    };
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    );
    (Cell::Text(text), Cell::Text(date_text(at.date())))
}

pub fn date_text(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).ok()
}

/// The date dimension's row for `date`.
pub fn date_row(date: Date) -> Upsert {
    let (iso_year, iso_week, _) = date.to_iso_week_date();
    let weekday = date.weekday().number_from_monday();
    let week_start = date - Duration::days(i64::from(weekday) - 1);
    let month = u8::from(date.month());
    Upsert {
        table: &DATES,
        group: 0,
        key: date_text(date),
        values: vec![
            Cell::Int(i64::from(date.year())),
            Cell::Int(i64::from((month - 1) / 3 + 1)),
            Cell::Int(i64::from(month)),
            Cell::Int(i64::from(iso_year)),
            Cell::Int(i64::from(iso_week)),
            Cell::Text(date_text(week_start)),
            Cell::Int(i64::from(weekday)),
        ],
        version: 0,
    }
}

fn text(props: &Props, name: &str) -> Cell {
    match props.get(name) {
        Some(Value::Str(s)) if !s.is_empty() => Cell::Text(s.clone()),
        Some(Value::Int(i)) => Cell::Text(i.to_string()),
        Some(Value::Bool(b)) => Cell::Text(b.to_string()),
        _ => Cell::Null,
    }
}

fn int(props: &Props, name: &str) -> Option<i64> {
    match props.get(name) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

fn date(props: &Props, name: &str) -> Cell {
    match props.get(name) {
        Some(Value::Str(s)) if parse_date(s).is_some() => Cell::Text(s.clone()),
        _ => Cell::Null,
    }
}

/// What one element is in the warehouse: the groups it fills, and the date rows of the dates
/// it names. Elements the warehouse does not hold (`of`, `names`, `raised_on`) give nothing.
pub fn upserts(element: &Element) -> Vec<Upsert> {
    let mut out = Vec::new();
    let mut put = |table: &'static Table, group: usize, key: &str, values: Vec<Cell>, version| {
        out.push(Upsert { table, group, key: key.to_string(), values, version });
    };
    match element {
        Element::Vertex(v) => {
            let (p, key, version) = (&v.props, v.vertex.key.as_str(), v.version);
            match v.vertex.label {
                VertexLabel::Account => put(
                    &ACCOUNTS,
                    0,
                    key,
                    vec![text(p, "name"), text(p, "kind"), text(p, "account_number")],
                    version,
                ),
                VertexLabel::User => {
                    put(&USERS, 0, key, vec![text(p, "display_name"), text(p, "roles")], version)
                }
                VertexLabel::Instrument => {
                    put(&INSTRUMENTS, 0, key, vec![text(p, "name"), text(p, "model")], version)
                }
                VertexLabel::Product => {
                    put(&PRODUCTS, 0, key, vec![text(p, "name"), text(p, "category")], version)
                }
                VertexLabel::Lot => {
                    let recalled = matches!(p.get("recalled"), Some(Value::Bool(true)));
                    put(
                        &LOTS,
                        0,
                        key,
                        vec![
                            text(p, "sku"),
                            date(p, "manufactured_on"),
                            date(p, "expires_on"),
                            Cell::Bool(recalled),
                        ],
                        version,
                    );
                    if let (true, Some(ms)) = (recalled, int(p, "recalled_at_ms")) {
                        let (at, on) = timestamp(ms);
                        put(&RECALLS, 0, key, vec![text(p, "recall_reason"), at, on], version);
                    }
                }
                VertexLabel::Document => {
                    let (created_at, created_on) = timestamp(int(p, "created_at_ms").unwrap_or(0));
                    let (run_end, _) = timestamp(int(p, "run_end_ms").unwrap_or(0));
                    put(
                        &UPLOADS,
                        0,
                        key,
                        vec![
                            text(p, "filename"),
                            text(p, "status"),
                            created_at,
                            created_on,
                            run_end,
                        ],
                        version,
                    );
                }
                VertexLabel::Alert => {
                    let (at, on) = timestamp(int(p, "raised_at_ms").unwrap_or(0));
                    put(
                        &ALERTS,
                        0,
                        key,
                        vec![
                            text(p, "serial"),
                            text(p, "account_id"),
                            text(p, "severity"),
                            text(p, "code"),
                            at,
                            on,
                        ],
                        version,
                    );
                }
                VertexLabel::SignIn => {
                    let (at, on) = timestamp(int(p, "signed_in_at_ms").unwrap_or(0));
                    put(
                        &SIGN_INS,
                        0,
                        key,
                        vec![text(p, "user_id"), text(p, "account_id"), at, on],
                        version,
                    );
                }
            }
        }
        Element::Edge(e) => {
            let (p, version) = (&e.props, e.version);
            let from = e.from.key.as_str();
            let to = Cell::Text(e.to.key.clone());
            // An edge's own key is its id without the label (`shipped:<id>` -> `<id>`).
            let own = e.id.split_once(':').map_or(e.id.as_str(), |(_, id)| id);
            match e.label {
                EdgeLabel::MemberOf => put(&USERS, 1, from, vec![to], version),
                EdgeLabel::HeldBy => put(&INSTRUMENTS, 1, from, vec![to], version),
                EdgeLabel::OwnedBy => put(&UPLOADS, 1, from, vec![to], version),
                EdgeLabel::ProducedOn => put(&UPLOADS, 2, from, vec![to], version),
                EdgeLabel::Shipped => {
                    let sender = match e.from.label {
                        VertexLabel::Account => Cell::Text(from.to_string()),
                        _ => Cell::Null,
                    };
                    let quantity = int(p, "quantity").map_or(Cell::Null, Cell::Int);
                    put(
                        &SHIPMENTS,
                        0,
                        own,
                        vec![text(p, "lot_number"), sender, to, quantity, date(p, "shipped_on")],
                        version,
                    );
                }
                EdgeLabel::Loaded => {
                    let (at, on) = timestamp(int(p, "loaded_at_ms").unwrap_or(0));
                    let values =
                        vec![Cell::Text(from.to_string()), to, text(p, "account_id"), at, on];
                    put(&LOT_USES, 0, own, values, version);
                }
                EdgeLabel::Of | EdgeLabel::Names | EdgeLabel::RaisedOn => {}
            }
        }
    }
    let dates: Vec<Date> = out
        .iter()
        .flat_map(|u| {
            u.group().columns.iter().zip(&u.values).filter_map(|(c, v)| match (c.kind, v) {
                (Kind::Date, Cell::Text(t)) => parse_date(t),
                _ => None,
            })
        })
        .collect();
    out.extend(dates.into_iter().map(date_row));
    out
}

/// Where the warehouse stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarehouseStatus {
    /// The newest change loaded (the change feed's sequence, or the stream's position).
    pub checkpoint: Option<String>,
    /// Changes written but not yet loaded, where the host can tell.
    pub lag: Option<u64>,
    /// Rows per table, in `TABLES` order.
    pub rows: Vec<(String, u64)>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
}

/// The warehouse as reports see it. Loading is each host's own business (the local worker
/// from the change table, the `kinesis` handler on AWS), so the port only answers.
#[async_trait]
pub trait Warehouse: Send + Sync + 'static {
    async fn report(&self, query: &ReportQuery) -> Result<ReportTable>;
    async fn status(&self) -> Result<WarehouseStatus>;
}

mod reports;

pub use reports::{MAX_RANGE_DAYS, Report, ReportQuery, ReportTable, report_sql};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Vertex, VertexRef};

    #[test]
    fn every_group_fills_its_columns_and_dates_follow() {
        let shipped = Element::Edge(Edge {
            id: "shipped:s1".into(),
            label: EdgeLabel::Shipped,
            from: VertexRef::new(VertexLabel::Account, "dist"),
            to: VertexRef::new(VertexLabel::Account, "lab"),
            version: 7,
            props: crate::graph::props([
                ("lot_number", Value::Str("L1".into())),
                ("quantity", Value::Int(3)),
                ("shipped_on", Value::Str("2026-11-30".into())),
            ]),
        });
        let rows = upserts(&shipped);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].table.name, "fact_shipments");
        assert_eq!(rows[0].key, "s1");
        assert_eq!(rows[0].values[1], Cell::Text("dist".into()));
        assert_eq!(rows[1].table.name, "dim_dates");
        // 2026-11-30 is the Monday of ISO week 49.
        assert_eq!(rows[1].values[4], Cell::Int(49));
        assert_eq!(rows[1].values[5], Cell::Text("2026-11-30".into()));

        let lot = Element::Vertex(Vertex {
            vertex: VertexRef::new(VertexLabel::Lot, "L1"),
            version: 9,
            props: crate::graph::props([
                ("sku", Value::Str("P1".into())),
                ("recalled", Value::Bool(true)),
                ("recalled_at_ms", Value::Int(1_764_547_200_000)),
                ("recall_reason", Value::Str("sterility".into())),
            ]),
        });
        let rows = upserts(&lot);
        assert_eq!(rows[1].table.name, "fact_recalls");
        assert_eq!(rows[1].values[1], Cell::Text("2025-12-01T00:00:00.000Z".into()));
        for table in TABLES {
            for (i, g) in table.groups.iter().enumerate() {
                assert!(!g.columns.is_empty(), "{} group {i}", table.name);
            }
        }
    }

    #[test]
    fn report_ranges() {
        let today = parse_date("2026-12-01").unwrap();
        let q = ReportQuery::new(Report::ActiveUsers, None, None, today, None).unwrap();
        assert_eq!((q.to - q.from).whole_days(), 363);
        assert!(
            ReportQuery::new(
                Report::ActiveUsers,
                Some(today),
                parse_date("2026-01-01"),
                today,
                None
            )
            .is_err()
        );
        assert_eq!(Report::parse("lot-exposure"), Some(Report::LotExposure));
        assert_eq!(Report::parse("nope"), None);
    }
}
