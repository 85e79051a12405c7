//! The warehouse on Snowflake (the AWS host's, loaded by the `kinesis` function): the star
//! schema of `portico_core::warehouse` as Snowflake tables, and loads as MERGE statements
//! through the SQL API v2 (`api.rs`).
//!
//! A load is one MERGE per group of columns it touches. Its rows travel as one JSON binding
//! (`LATERAL FLATTEN(PARSE_JSON(?))`), never as SQL text; each row's group is replaced only when
//! the incoming version is newer (the same guard as the local warehouse), so a redelivered or
//! replayed batch changes no row and a late older one loses. Each statement's `requestId` is
//! derived from its text and rows: a resend after a lost answer is not run twice.
//!
//! Dates and timestamps are kept as the ISO text the local warehouse and its CSV files hold, so
//! both hosts hold the same values; reporting tools read them as dates.

mod api;

use std::collections::BTreeMap;

use portico_core::warehouse::{
    Cell, Kind, ReportQuery, ReportTable, TABLES, Table, Upsert, Warehouse, WarehouseStatus,
    date_text, report_sql, version_text,
};
use serde_json::{Value, json};

pub use api::{Answer, Settings, SqlApi, SqlError, fingerprint};

/// The namespace of statements' request ids.
const REQUESTS: uuid::Uuid = uuid::Uuid::from_u128(0x2b7e_1516_28ae_d2a6_abf7_1588_09cf_4f3c);
/// Rows per MERGE.
const ROWS_PER_STATEMENT: usize = 1_000;

pub struct SnowflakeWarehouse {
    api: SqlApi,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub statements: usize,
    /// Rows inserted and rows updated, as Snowflake counted them.
    pub inserted: u64,
    pub updated: u64,
}

fn sql_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "NUMBER(38,0)",
        Kind::Bool => "BOOLEAN",
        Kind::Text | Kind::Date | Kind::Timestamp => "VARCHAR",
    }
}

/// `CREATE TABLE IF NOT EXISTS` of every table.
pub fn ddl() -> Vec<String> {
    TABLES
        .iter()
        .map(|table| {
            let mut columns = vec![format!("{} VARCHAR PRIMARY KEY", table.key)];
            columns.extend(table.columns().map(|c| format!("{} {}", c.name, sql_type(c.kind))));
            columns.extend(table.versions().map(|v| format!("{v} VARCHAR")));
            format!("CREATE TABLE IF NOT EXISTS {} ({})", table.name, columns.join(", "))
        })
        .collect()
}

/// The MERGE of one group of `table`; its one binding is a JSON array of rows, each
/// `[key, values..., version]` (no version for derived groups).
pub fn merge_sql(table: &Table, group: usize) -> String {
    let g = &table.groups[group];
    let mut select = vec![format!("f.value[0]::VARCHAR AS {}", table.key)];
    let mut names = vec![table.key];
    for (i, c) in g.columns.iter().enumerate() {
        select.push(format!("f.value[{}]::{} AS {}", i + 1, sql_type(c.kind), c.name));
        names.push(c.name);
    }
    if let Some(v) = g.version {
        select.push(format!("f.value[{}]::VARCHAR AS {v}", g.columns.len() + 1));
        names.push(v);
    }
    let insert = format!(
        "WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})",
        names.join(", "),
        names.iter().map(|n| format!("s.{n}")).collect::<Vec<_>>().join(", ")
    );
    let matched = match g.version {
        None => String::new(),
        Some(v) => format!(
            "WHEN MATCHED AND (t.{v} IS NULL OR t.{v} < s.{v}) THEN UPDATE SET {} ",
            names[1..].iter().map(|n| format!("{n} = s.{n}")).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "MERGE INTO {t} AS t USING (SELECT {} FROM (SELECT PARSE_JSON(?) AS j) AS r, LATERAL FLATTEN(input => r.j) AS f) AS s ON t.{k} = s.{k} {matched}{insert}",
        select.join(", "),
        t = table.name,
        k = table.key,
    )
}

fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(s) => json!(s),
        Cell::Int(i) => json!(i),
        Cell::Bool(b) => json!(b),
    }
}

/// The rows of each (table, group), one per key: the newest version when a batch holds several.
fn grouped(upserts: &[Upsert]) -> BTreeMap<(&'static str, usize), (&'static Table, Vec<&Upsert>)> {
    let mut by_key: BTreeMap<(&'static str, usize, &str), &Upsert> = BTreeMap::new();
    for u in upserts {
        let slot = by_key.entry((u.table.name, u.group, u.key.as_str())).or_insert(u);
        if u.version > slot.version {
            *slot = u;
        }
    }
    let mut out: BTreeMap<(&'static str, usize), (&'static Table, Vec<&Upsert>)> = BTreeMap::new();
    for ((table, group, _), u) in by_key {
        out.entry((table, group)).or_insert_with(|| (u.table, Vec::new())).1.push(u);
    }
    out
}

fn count(answer: &Answer, column: &str) -> u64 {
    let Some(i) = answer.columns.iter().position(|c| c.to_lowercase().contains(column)) else {
        return 0;
    };
    answer
        .rows
        .first()
        .and_then(|r| r.get(i).cloned().flatten())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

impl SnowflakeWarehouse {
    pub fn new(settings: Settings) -> Result<SnowflakeWarehouse, SqlError> {
        Ok(SnowflakeWarehouse { api: SqlApi::new(settings)? })
    }

    /// Creates the tables that do not exist yet.
    pub async fn ensure_schema(&self) -> Result<(), SqlError> {
        for statement in ddl() {
            let id = uuid::Uuid::new_v5(&REQUESTS, statement.as_bytes());
            self.api.execute(&statement, &[], id).await?;
        }
        Ok(())
    }

    /// Empties every table (before a rebuild; `ensure_schema` first).
    pub async fn clear(&self) -> Result<(), SqlError> {
        for table in TABLES {
            let statement = format!("DELETE FROM {}", table.name);
            self.api.execute(&statement, &[], uuid::Uuid::new_v4()).await?;
        }
        Ok(())
    }

    /// Merges `upserts`: one statement per group of columns (and per thousand rows).
    pub async fn load(&self, upserts: &[Upsert]) -> Result<Merged, SqlError> {
        let mut merged = Merged::default();
        for ((_, group), (table, rows)) in grouped(upserts) {
            let sql = merge_sql(table, group);
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let rows: Vec<Value> = chunk
                    .iter()
                    .map(|u| {
                        let mut row = vec![json!(u.key)];
                        row.extend(u.values.iter().map(cell_json));
                        if u.group().version.is_some() {
                            row.push(json!(version_text(u.version)));
                        }
                        Value::Array(row)
                    })
                    .collect();
                let binding = Value::Array(rows).to_string();
                let id = uuid::Uuid::new_v5(&REQUESTS, format!("{sql}\n{binding}").as_bytes());
                let answer = self.api.execute(&sql, &[binding], id).await?;
                merged.statements += 1;
                merged.inserted += count(&answer, "inserted");
                merged.updated += count(&answer, "updated");
            }
        }
        Ok(merged)
    }

    /// Every row of `table` (the key, then the columns in order), ordered by key, as text.
    pub async fn rows(&self, table: &Table) -> Result<Vec<Vec<Option<String>>>, SqlError> {
        let columns: Vec<&str> =
            std::iter::once(table.key).chain(table.columns().map(|c| c.name)).collect();
        let statement =
            format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), table.name, table.key);
        Ok(self.api.execute(&statement, &[], uuid::Uuid::new_v4()).await?.rows)
    }

    /// The SQL API client (for statements of one's own).
    pub fn api(&self) -> &SqlApi {
        &self.api
    }
}

/// `sql` with its `:name` parameters as positional `?`s (the SQL API's binding), and the values
/// in the order they appear.
fn positional(sql: &str, value: impl Fn(&str) -> String) -> (String, Vec<String>) {
    let (mut out, mut values) = (String::with_capacity(sql.len()), Vec::new());
    let mut rest = sql;
    while let Some(at) = rest.find(':') {
        let name: String =
            rest[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        out.push_str(&rest[..at]);
        if rest[at + 1..].starts_with(':') {
            // A cast (`x::VARCHAR`), not a parameter.
            out.push_str("::");
            rest = &rest[at + 2..];
            continue;
        }
        if name.is_empty() {
            out.push(':');
            rest = &rest[at + 1..];
            continue;
        }
        out.push('?');
        values.push(value(&name));
        rest = &rest[at + 1 + name.len()..];
    }
    out.push_str(rest);
    (out, values)
}

/// A text value of the SQL API as a cell of a column of `kind`.
fn cell(value: Option<String>, kind: Kind) -> Cell {
    let Some(text) = value else {
        return Cell::Null;
    };
    match kind {
        Kind::Int => text
            .parse::<i64>()
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
            .map_or(Cell::Null, Cell::Int),
        Kind::Bool => Cell::Bool(matches!(text.as_str(), "true" | "TRUE" | "1")),
        Kind::Text | Kind::Date | Kind::Timestamp => Cell::Text(text),
    }
}

fn port_error(e: SqlError) -> portico_core::Error {
    match e {
        SqlError::Unavailable(why) => portico_core::Error::Unavailable(format!("Snowflake: {why}")),
        SqlError::Refused { status, body } => {
            portico_core::Error::Unavailable(format!("Snowflake answered {status}: {body}"))
        }
        other => portico_core::Error::Unexpected(anyhow::anyhow!("{other}")),
    }
}

#[async_trait::async_trait]
impl Warehouse for SnowflakeWarehouse {
    async fn report(&self, query: &ReportQuery) -> portico_core::Result<ReportTable> {
        let (from, to) = (date_text(query.from), date_text(query.to));
        let account = query.account_id.clone().unwrap_or_default();
        let (sql, bindings) = positional(report_sql(query.report), |name| match name {
            "from" => from.clone(),
            "to" => to.clone(),
            _ => account.clone(),
        });
        let answer =
            self.api.execute(&sql, &bindings, uuid::Uuid::new_v4()).await.map_err(port_error)?;
        let columns = query.report.columns();
        let rows = answer
            .rows
            .into_iter()
            .map(|row| row.into_iter().zip(columns).map(|(v, c)| cell(v, c.kind)).collect())
            .collect();
        Ok(ReportTable::answer(query, rows, None))
    }

    async fn status(&self) -> portico_core::Result<WarehouseStatus> {
        let mut rows = Vec::new();
        for table in TABLES {
            let statement = format!("SELECT COUNT(*) FROM {}", table.name);
            let answer = self
                .api
                .execute(&statement, &[], uuid::Uuid::new_v4())
                .await
                .map_err(port_error)?;
            let n = answer.rows.first().and_then(|r| r.first().cloned().flatten());
            rows.push((table.name.to_string(), n.and_then(|n| n.parse().ok()).unwrap_or(0)));
        }
        // The stream's checkpoint is the stream-poller's (in DynamoDB), not Snowflake's.
        Ok(WarehouseStatus { checkpoint: None, lag: None, rows, as_of: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_core::warehouse::{ACCOUNTS, DATES};

    #[test]
    fn merges_guard_by_version_and_derived_groups_only_insert() {
        let sql = merge_sql(&ACCOUNTS, 0);
        assert!(sql.starts_with("MERGE INTO dim_accounts AS t USING (SELECT f.value[0]::VARCHAR AS account_id, f.value[1]::VARCHAR AS name"), "{sql}");
        assert!(sql.contains("WHEN MATCHED AND (t.v_account IS NULL OR t.v_account < s.v_account) THEN UPDATE SET name = s.name, kind = s.kind, account_number = s.account_number, v_account = s.v_account"), "{sql}");
        assert!(sql.ends_with("WHEN NOT MATCHED THEN INSERT (account_id, name, kind, account_number, v_account) VALUES (s.account_id, s.name, s.kind, s.account_number, s.v_account)"), "{sql}");
        let sql = merge_sql(&DATES, 0);
        assert!(!sql.contains("WHEN MATCHED"), "{sql}");
        assert!(sql.contains("f.value[1]::NUMBER(38,0) AS year"), "{sql}");
        assert_eq!(ddl().len(), TABLES.len());
    }

    #[test]
    fn named_parameters_become_positional_in_order() {
        let (sql, values) = positional(
            "a = :from AND b = :to AND (c = :account OR d = :account) AND x::VARCHAR = 'y'",
            |n| n.to_uppercase(),
        );
        assert_eq!(sql, "a = ? AND b = ? AND (c = ? OR d = ?) AND x::VARCHAR = 'y'");
        assert_eq!(values, ["FROM", "TO", "ACCOUNT", "ACCOUNT"]);
    }

    #[test]
    fn a_batch_keeps_the_newest_version_of_each_row() {
        let upsert = |version, name: &str| Upsert {
            table: &ACCOUNTS,
            group: 0,
            key: "acc-1".into(),
            values: vec![Cell::Text(name.into()), Cell::Null, Cell::Null],
            version,
        };
        let batch = [upsert(3, "old"), upsert(9, "new"), upsert(5, "middle")];
        let groups = grouped(&batch);
        let (_, rows) = &groups[&("dim_accounts", 0)];
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].version, 9);
    }
}
