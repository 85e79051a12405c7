//! Online copies of SQLite databases, for `portico backup`: `VACUUM INTO` reads the database in
//! one read transaction, so the copy holds exactly what was committed when it began, while the
//! server's writers go on (WAL mode: readers never block writers). Copying the files instead can
//! tear: the WAL and the main file would come from different moments.

use std::path::Path;

use anyhow::Context;
use portico_core::Result;
use rusqlite::{Connection, OpenFlags, params};

/// Copies the database at `src` into the new file `dest`.
pub fn copy_database(src: &Path, dest: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", src.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).context("setting a busy timeout")?;
    let target = dest.to_str().context("a backup path must be UTF-8")?;
    conn.execute("VACUUM INTO ?1", params![target])
        .with_context(|| format!("copying {} into {}", src.display(), dest.display()))?;
    Ok(())
}

/// The schema version (`PRAGMA user_version`) of the database at `path`.
pub fn schema_version(path: &Path) -> Result<i64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .context("reading the schema version")?)
}

/// The schema version this Portico writes (the number of its migrations).
pub fn current_schema_version() -> i64 {
    crate::db::schema_version() as i64
}
