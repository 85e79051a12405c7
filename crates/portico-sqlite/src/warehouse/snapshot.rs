//! CSV snapshots of the warehouse's tables, for reporting tools that read files (Power BI's
//! Folder and Text/CSV connectors, spreadsheets): `<dir>/<table>.csv`, UTF-8 without a byte
//! order mark, a header row, the key first and then the columns in their declared order (the
//! versions stay out), ISO dates, `true` / `false`, empty for nothing. Each file is written
//! beside its final name and renamed over it, so a reader never sees half a file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use portico_core::Result;
use portico_core::csv;
use portico_core::warehouse::{Kind, TABLES, Table};

use super::SqliteWarehouse;
use super::reports::cell;

/// Writes the snapshot of every table named in `tables` (all of them when `None`) into `dir`;
/// answers the rows written.
pub fn snapshot(
    warehouse: &SqliteWarehouse,
    dir: &Path,
    tables: Option<&std::collections::BTreeSet<&'static str>>,
) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rows = 0;
    for table in TABLES.iter().filter(|t| tables.is_none_or(|names| names.contains(t.name))) {
        rows += write_table(warehouse, table, dir)?;
    }
    Ok(rows)
}

fn write_table(warehouse: &SqliteWarehouse, table: &Table, dir: &Path) -> Result<u64> {
    let path = dir.join(format!("{}.csv", table.name));
    let partial = dir.join(format!(".{}.csv.partial", table.name));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let kinds: Vec<Kind> =
        std::iter::once(Kind::Text).chain(table.columns().map(|c| c.kind)).collect();
    let header: Vec<&str> =
        std::iter::once(table.key).chain(table.columns().map(|c| c.name)).collect();
    out.write_all(csv::line(header.iter().copied()).as_bytes()).context("writing a snapshot")?;
    let select = format!("SELECT {} FROM {} ORDER BY {}", header.join(", "), table.name, table.key);
    let rows = warehouse.database().read(|conn| {
        let mut statement = conn.prepare(&select).context("reading a table to snapshot")?;
        let mut rows = statement.query([]).context("reading a table to snapshot")?;
        let mut n = 0u64;
        while let Some(row) = rows.next().context("reading a table to snapshot")? {
            let mut cells = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                cells.push(cell(row.get_ref(i).context("reading a cell")?, *kind).text());
            }
            out.write_all(csv::line(cells.iter().map(String::as_str)).as_bytes())
                .context("writing a snapshot")?;
            n += 1;
        }
        Ok(n)
    })?;
    let file = out.into_inner().map_err(|e| anyhow::anyhow!("writing a snapshot: {e}"))?;
    file.sync_all().context("syncing a snapshot")?;
    std::fs::rename(&partial, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(rows)
}
