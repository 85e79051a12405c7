//! The store: `<data_dir>/logs/logs.db`, one SQLite table of lines with an FTS5 index of their
//! text, written by one thread from a bounded queue (a full queue drops the line and counts it,
//! never blocks the caller) and trimmed by age and size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use portico_core::logs::{Bound, LogHit, LogLine, LogSearch, LogStore, Match, Query};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, FieldError, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// Lines the queue holds before new ones are dropped.
const QUEUE: usize = 65_536;
/// Lines written per transaction, at most.
const BATCH: usize = 4_096;
/// How often retention is enforced.
const TRIM_EVERY: Duration = Duration::from_secs(30);
/// The metric of dropped lines.
pub const DROPPED: &str = "portico_log_lines_dropped_total";

/// Fields with their own indexed column: the ones "what happened to X" asks by.
const COLUMNS: [&str; 3] = ["function", "request_id", "serial"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lines (
    id         INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    level      TEXT NOT NULL,
    target     TEXT NOT NULL,
    message    TEXT NOT NULL,
    fields     TEXT NOT NULL,
    function   TEXT,
    request_id TEXT,
    serial     TEXT,
    origin     TEXT
);
CREATE INDEX IF NOT EXISTS lines_ts ON lines(ts_ms);
CREATE INDEX IF NOT EXISTS lines_level ON lines(level, id);
CREATE INDEX IF NOT EXISTS lines_level_function ON lines(level, function, id);
CREATE INDEX IF NOT EXISTS lines_function ON lines(function, id) WHERE function IS NOT NULL;
CREATE INDEX IF NOT EXISTS lines_request ON lines(request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS lines_serial ON lines(serial, id) WHERE serial IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS lines_origin ON lines(origin) WHERE origin IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS lines_fts USING fts5(
    text, content = '', contentless_delete = 1, tokenize = \"unicode61 tokenchars '-_.'\"
);
";

/// How long and how much is kept: `PORTICO_LOGS_RETENTION`, e.g. `7d,1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Retention {
    /// `<age>,<size>`: an age such as `7d` or `12h`, a size such as `1GiB`, `500MB`; either may
    /// be left out (`7d`, `,2GiB`) and keeps its default (7 days, 1 GiB).
    pub fn parse(text: &str) -> std::result::Result<Retention, String> {
        let mut retention =
            Retention { max_age: Duration::from_secs(7 * 86_400), max_bytes: 1 << 30 };
        for part in text.split([',', '/']).map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(bytes) = size(part) {
                retention.max_bytes = bytes;
            } else {
                retention.max_age = humantime::parse_duration(part).map_err(|_| {
                    format!("{part:?} is neither an age (7d, 12h) nor a size (1GiB, 500MB)")
                })?;
            }
        }
        Ok(retention)
    }
}

fn size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Incremental vacuum gives trimmed pages back to the file system (it must be set before the
    // first table). Logs may lose their last lines in an OS crash (synchronous = NORMAL), never
    // in a process crash.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 8192;
         PRAGMA busy_timeout = 5000;",
    )
    .context("configuring the log store")?;
    // Stores made before shipped lines had an origin get the column first.
    let has_lines: bool = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'lines'", [], |r| r.get(0))
        .context("reading the log store's schema")?;
    if has_lines {
        let has_origin: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('lines') WHERE name = 'origin'",
                [],
                |r| r.get(0),
            )
            .context("reading the log store's schema")?;
        if !has_origin {
            conn.execute_batch("ALTER TABLE lines ADD COLUMN origin TEXT")
                .context("adding the origin column to the log store")?;
        }
    }
    conn.execute_batch(SCHEMA).context("creating the log store")?;
    Ok(conn)
}

/// The path of the store in `dir` (`<data_dir>/logs`).
pub fn path(dir: &Path) -> PathBuf {
    dir.join("logs.db")
}

enum Message {
    Line(Box<LogLine>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where log lines go in: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    warned: Arc<AtomicBool>,
}

impl LogWriter {
    /// Queues `line`; when the queue is full the line is dropped and counted.
    pub fn record(&self, line: LogLine) {
        match self.queue.try_send(Message::Line(Box::new(line))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(DROPPED).increment(1);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    // Not through tracing: that would come back here.
                    eprintln!(
                        "portico: the log store cannot keep up; lines are dropped from it (counted in {DROPPED}); stdout still has them"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written (tests, benchmarks, shutdown).
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(30));
        }
    }
}

/// Opens (creating) the store in `dir` and starts its writer thread; the thread ends when every
/// `LogWriter` is dropped.
pub fn open(dir: &Path, retention: Retention) -> Result<(SqliteLogs, LogWriter)> {
    open_with_queue(dir, retention, QUEUE)
}

pub(crate) fn open_with_queue(
    dir: &Path,
    retention: Retention,
    queue_len: usize,
) -> Result<(SqliteLogs, LogWriter)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = path(dir);
    let conn = open_connection(&path)?;
    let (queue, receiver) = std::sync::mpsc::sync_channel(queue_len);
    std::thread::Builder::new()
        .name("portico-logs".into())
        .spawn(move || write_lines(conn, receiver, retention))
        .context("starting the log writer")?;
    let writer = LogWriter { queue, dropped: Arc::default(), warned: Arc::default() };
    Ok((SqliteLogs::open(dir)?, writer))
}

/// The writer's nice value: it yields the CPU to the threads that answer requests. A machine with
/// CPU to spare writes every line; a saturated one lets the queue fill and drops (and counts)
/// lines from the store rather than slow a request (stdout still has them).
const WRITER_NICE: i32 = 10;

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a nice value belongs to a thread, and setpriority takes a thread id.
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), WRITER_NICE) {
        eprintln!("portico: the log writer keeps its priority: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// The writer's page cache, in KiB: the indexes' last pages, which every batch changes, stay in
/// memory (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

fn write_lines(mut conn: Connection, receiver: Receiver<Message>, retention: Retention) {
    lower_priority();
    if let Err(e) = conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB) {
        eprintln!("portico: the log store's cache size is not set: {e}");
    }
    let mut last_trim = Instant::now() - TRIM_EVERY;
    loop {
        let first = match receiver.recv_timeout(Duration::from_millis(500)) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut lines = Vec::new();
        let mut flushes = Vec::new();
        for message in first.into_iter().chain(std::iter::from_fn(|| receiver.try_recv().ok())) {
            match message {
                Message::Line(line) => lines.push(*line),
                Message::Flush(done) => flushes.push(done),
            }
            if lines.len() >= BATCH {
                break;
            }
        }
        let unshipped: Vec<(Option<&str>, &LogLine)> = lines.iter().map(|l| (None, l)).collect();
        if !lines.is_empty()
            && let Err(e) = insert(&mut conn, &unshipped)
        {
            eprintln!("portico: {} log lines not stored: {e:#}", lines.len());
        }
        if last_trim.elapsed() >= TRIM_EVERY {
            last_trim = Instant::now();
            if let Err(e) = trim(&conn, retention) {
                eprintln!("portico: log retention not applied: {e:#}");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The line's text for free-text search: the message and the values of its text fields. Numbers
/// and the indexed columns (`function`, `request_id`, `serial`) are left out: they are searched
/// by field, and unique ids would only bloat the index.
fn text_of(line: &LogLine) -> String {
    let mut text = line.message.clone();
    for (name, value) in &line.fields {
        if let serde_json::Value::String(s) = value
            && !COLUMNS.contains(&name.as_str())
        {
            text.push(' ');
            text.push_str(s);
        }
    }
    text
}

/// Inserts `lines` in one transaction; a line with an origin (where a shipper read it) that is
/// already stored is skipped. Answers how many were new.
fn insert(conn: &mut Connection, lines: &[(Option<&str>, &LogLine)]) -> anyhow::Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut inserted = 0;
    {
        let mut line_insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO lines (ts_ms, level, target, message, fields, function, request_id, serial, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut text_insert =
            tx.prepare_cached("INSERT INTO lines_fts (rowid, text) VALUES (?1, ?2)")?;
        for (origin, line) in lines {
            let column = |name: &str| {
                line.fields
                    .get(name)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            };
            let changed = line_insert.execute(params![
                line.timestamp_ms,
                line.level,
                line.target,
                line.message,
                serde_json::to_string(&line.fields)?,
                column(COLUMNS[0]),
                column(COLUMNS[1]),
                column(COLUMNS[2]),
                origin,
            ])?;
            if changed == 1 {
                text_insert.execute(params![tx.last_insert_rowid(), text_of(line)])?;
                inserted += 1;
            }
        }
    }
    tx.commit()?;
    metrics::counter!("portico_log_lines_stored_total").increment(inserted as u64);
    Ok(inserted)
}

/// Drops lines older than the retention age, then the oldest tenth while the file is over the
/// size, and gives the pages back.
pub(crate) fn trim(conn: &Connection, retention: Retention) -> anyhow::Result<()> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let cutoff = now - retention.max_age.as_millis() as i64;
    let delete_before = |id: i64| -> anyhow::Result<()> {
        conn.execute("DELETE FROM lines_fts WHERE rowid < ?1", params![id])?;
        conn.execute("DELETE FROM lines WHERE id < ?1", params![id])?;
        Ok(())
    };
    let first_kept: Option<i64> = conn
        .query_row("SELECT MIN(id) FROM lines WHERE ts_ms >= ?1", params![cutoff], |r| r.get(0))
        .optional()?
        .flatten();
    match first_kept {
        Some(id) => delete_before(id)?,
        None => delete_before(i64::MAX)?,
    }
    for _ in 0..20 {
        let bytes: i64 = conn.query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get(0),
        )?;
        if (bytes.max(0) as u64) <= retention.max_bytes {
            break;
        }
        let (low, high): (Option<i64>, Option<i64>) =
            conn.query_row("SELECT MIN(id), MAX(id) FROM lines", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let (Some(low), Some(high)) = (low, high) else { break };
        delete_before(low + (high - low) / 10 + 1)?;
    }
    conn.execute_batch("PRAGMA incremental_vacuum;")?;
    Ok(())
}

/// Searches the store; any number of processes may read it while one writes.
pub struct SqliteLogs {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteLogs {
    /// The store in `dir`, for reading (`portico logs search` beside a running server).
    pub fn open(dir: &Path) -> Result<SqliteLogs> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = path(dir);
        open_connection(&path)?;
        Ok(SqliteLogs { path, readers: Mutex::new(Vec::new()) })
    }

    /// Stores lines a shipper read, each under its origin (file fingerprint and offset), in one
    /// transaction, once: an origin already stored is skipped, so a batch sent again after a
    /// crash is harmless. Answers how many lines were new.
    pub fn keep(&self, lines: &[(String, LogLine)]) -> Result<usize> {
        let lines: Vec<(Option<&str>, &LogLine)> =
            lines.iter().map(|(origin, line)| (Some(origin.as_str()), line)).collect();
        self.read(|conn| Ok(insert(conn, &lines).context("storing shipped log lines")?))
    }

    /// Applies `retention` now (the writer thread does it every 30 s; a shipper into a store no
    /// server writes calls this).
    pub fn trim(&self, retention: Retention) -> Result<()> {
        self.read(|conn| Ok(trim(conn, retention).context("applying log retention")?))
    }

    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut r| r.pop());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        if let Ok(mut readers) = self.readers.lock()
            && readers.len() < 4
        {
            readers.push(conn);
        }
        result
    }

    fn select(
        &self,
        search: &LogSearch,
        bound: &str,
        order: &str,
        limit: i64,
    ) -> Result<Vec<LogHit>> {
        let mut sql = Sql::default();
        sql.text.push_str(
            "SELECT id, ts_ms, level, target, message, fields FROM lines WHERE (?1 IS NULL OR ts_ms >= ?1)
             AND (?2 IS NULL OR ts_ms < ?2) AND ",
        );
        sql.params.push(search.from_ms.map_or(Value::Null, Value::Integer));
        sql.params.push(search.to_ms.map_or(Value::Null, Value::Integer));
        sql.text.push_str(bound);
        sql.text.push_str(" AND ");
        expr(&search.query, &mut sql)?;
        sql.text.push_str(order);
        sql.text.push_str(&format!(" LIMIT {limit}"));
        let terms = search.query.free_text();
        self.read(|conn| {
            let mut statement = conn.prepare_cached(&sql.text).context("searching logs")?;
            let rows = statement
                .query_map(params_from_iter(sql.params.iter()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .context("searching logs")?;
            let mut hits = Vec::new();
            for row in rows {
                let (id, timestamp_ms, level, target, message, fields) =
                    row.context("searching logs")?;
                let fields = serde_json::from_str(&fields).unwrap_or_default();
                let highlight = highlight(&message, &terms);
                hits.push(LogHit {
                    id: id.to_string(),
                    line: LogLine { timestamp_ms, level, target, message, fields },
                    highlight,
                });
            }
            Ok(hits)
        })
    }
}

#[async_trait]
impl LogStore for SqliteLogs {
    async fn search(&self, search: &LogSearch, page: &PageRequest) -> Result<Page<LogHit>> {
        let before = match &page.cursor {
            None => i64::MAX,
            Some(cursor) => row_id(cursor, "cursor")?,
        };
        let limit = i64::from(page.limit) + 1;
        let hits = self.select(search, &format!("id < {before}"), " ORDER BY id DESC", limit)?;
        Ok(Page::from_one_extra(hits, page.limit, |h| h.id.clone()))
    }

    async fn after(
        &self,
        search: &LogSearch,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogHit>> {
        let after = after.map(|a| row_id(a, "after")).transpose()?.unwrap_or(0);
        self.select(search, &format!("id > {after}"), " ORDER BY id", i64::from(limit))
    }
}

/// A hit's id (a row number) given back by a caller.
fn row_id(text: &str, field: &str) -> Result<i64> {
    text.parse::<i64>().map_err(|_| {
        Error::Validation(vec![FieldError::new(field, "not a position of this log store")])
    })
}

#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<Value>,
}

impl Sql {
    fn param(&mut self, value: Value) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }
}

/// The column a field is kept in, if it has one.
fn column(field: &str) -> Option<&'static str> {
    match field {
        "level" => Some("level"),
        "target" => Some("target"),
        "message" => Some("message"),
        "function" => Some("function"),
        "request_id" => Some("request_id"),
        "serial" => Some("serial"),
        _ => None,
    }
}

/// `field` as an SQL expression of its value (a column, or the field inside `fields`).
fn value_of(field: &str, sql: &mut Sql) -> String {
    match column(field) {
        Some(column) => column.to_string(),
        None => {
            // Booleans read as `true` / `false`, as they were written (SQLite's JSON gives 1 / 0).
            let path = sql.param(Value::Text(format!("$.\"{field}\"")));
            format!(
                "CASE json_type(fields, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
                 ELSE CAST(json_extract(fields, {path}) AS TEXT) END"
            )
        }
    }
}

/// An FTS5 query for one term: a quoted phrase (quotes doubled), `*` for a prefix.
fn fts(matches: &Match) -> Option<String> {
    let (text, prefix) = match matches {
        Match::Exact(t) => (t, false),
        Match::Prefix(t) => (t, true),
        Match::Wildcard(_) => return None,
    };
    if text.trim().is_empty() {
        return None;
    }
    let quoted = format!("\"{}\"", text.replace('"', "\"\""));
    Some(if prefix { format!("{quoted} *") } else { quoted })
}

fn like_escaped(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

fn like_prefix(text: &str) -> String {
    format!("{}%", like_escaped(text))
}

/// A Kibana wildcard (`*`, `?`) as a LIKE pattern.
fn like_wildcard(pattern: &str) -> String {
    pattern
        .split('*')
        .map(|part| part.split('?').map(like_escaped).collect::<Vec<_>>().join("_"))
        .collect::<Vec<_>>()
        .join("%")
}

fn expr(query: &Query, sql: &mut Sql) -> Result<()> {
    match query {
        Query::All => sql.text.push('1'),
        // A wildcard in free text: over the message itself (the text index has prefixes only).
        Query::Term { field: None, matches: Match::Wildcard(pattern) } => {
            let p = sql.param(Value::Text(like_wildcard(pattern)));
            sql.text.push_str(&format!("message LIKE {p} ESCAPE '\\'"));
        }
        // Free text, and `message:` (the message's words are in the text index).
        Query::Term { field, matches }
            if field.as_deref().is_none_or(|f| f == "message")
                && !matches!(matches, Match::Wildcard(_)) =>
        {
            match fts(matches) {
                Some(fts) => {
                    let p = sql.param(Value::Text(fts));
                    sql.text.push_str(&format!(
                        "id IN (SELECT rowid FROM lines_fts WHERE lines_fts MATCH {p})"
                    ));
                }
                None => sql.text.push('1'),
            }
        }
        Query::Term { field, matches } => {
            let field = field.as_deref().unwrap_or("message");
            let value = value_of(field, sql);
            let level = field == "level";
            match matches {
                Match::Exact(v) => {
                    let v = if level { v.to_ascii_uppercase() } else { v.clone() };
                    let p = sql.param(Value::Text(v));
                    sql.text.push_str(&format!("{value} = {p}"));
                }
                Match::Prefix(v) => {
                    let v = if level { v.to_ascii_uppercase() } else { v.clone() };
                    let p = sql.param(Value::Text(like_prefix(&v)));
                    sql.text.push_str(&format!("{value} LIKE {p} ESCAPE '\\'"));
                }
                Match::Wildcard(v) => {
                    let v = if level { v.to_ascii_uppercase() } else { v.clone() };
                    let p = sql.param(Value::Text(like_wildcard(&v)));
                    sql.text.push_str(&format!("{value} LIKE {p} ESCAPE '\\'"));
                }
            }
        }
        Query::OneOf { field, values } => {
            let parts: Vec<Query> = values
                .iter()
                .map(|v| Query::Term {
                    field: Some(field.clone()),
                    matches: Match::Exact(v.clone()),
                })
                .collect();
            expr(&Query::Or(parts), sql)?;
        }
        Query::Range { field, lower, upper } => {
            let numeric = [lower, upper].iter().all(|b| match b {
                Bound::Inclusive(v) | Bound::Exclusive(v) => v.parse::<f64>().is_ok(),
                Bound::Unbounded => true,
            });
            let raw = value_of(field, sql);
            let value = if numeric { format!("CAST({raw} AS REAL)") } else { raw };
            let mut parts = vec![format!("{value} IS NOT NULL")];
            for (bound, inclusive, exclusive) in [(lower, ">=", ">"), (upper, "<=", "<")] {
                let (op, v) = match bound {
                    Bound::Inclusive(v) => (inclusive, v),
                    Bound::Exclusive(v) => (exclusive, v),
                    Bound::Unbounded => continue,
                };
                let p = match v.parse::<f64>() {
                    Ok(n) if numeric => sql.param(Value::Real(n)),
                    _ => sql.param(Value::Text(v.clone())),
                };
                parts.push(format!("{value} {op} {p}"));
            }
            sql.text.push('(');
            sql.text.push_str(&parts.join(" AND "));
            sql.text.push(')');
        }
        Query::Exists { field } => match column(field) {
            Some("level" | "target" | "message") => sql.text.push('1'),
            Some(column) => sql.text.push_str(&format!("{column} IS NOT NULL")),
            None => {
                let path = sql.param(Value::Text(format!("$.\"{field}\"")));
                sql.text.push_str(&format!("json_type(fields, {path}) IS NOT NULL"));
            }
        },
        Query::And(parts) | Query::Or(parts) => {
            let joiner = if matches!(query, Query::And(_)) { " AND " } else { " OR " };
            sql.text.push('(');
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.text.push_str(joiner);
                }
                expr(part, sql)?;
            }
            if parts.is_empty() {
                sql.text.push('1');
            }
            sql.text.push(')');
        }
        Query::Not(inner) => {
            sql.text.push_str("NOT (");
            expr(inner, sql)?;
            sql.text.push(')');
        }
    }
    Ok(())
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `message` with each free-text term marked (case-insensitive), HTML-escaped; `None` when no
/// term occurs in it.
pub fn highlight(message: &str, terms: &[&Match]) -> Option<String> {
    let lower = message.to_lowercase();
    if lower.len() != message.len() {
        return None; // offsets would not line up; leave such lines unmarked
    }
    let mut marks: Vec<(usize, usize)> = Vec::new();
    for term in terms {
        let needle = match term {
            Match::Exact(t) | Match::Prefix(t) => t.to_lowercase(),
            Match::Wildcard(_) => continue,
        };
        if needle.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            let mut end = start + needle.len();
            if matches!(term, Match::Prefix(_)) {
                end += lower[end..]
                    .find(|c: char| !c.is_alphanumeric() && !"-_.".contains(c))
                    .unwrap_or(lower.len() - end);
            }
            marks.push((start, end));
            from = end.max(start + 1);
        }
    }
    if marks.is_empty() {
        return None;
    }
    marks.sort();
    let mut out = String::new();
    let mut at = 0;
    for (start, end) in marks {
        if start < at {
            continue;
        }
        out.push_str(&escape_html(&message[at..start]));
        out.push_str("<mark>");
        out.push_str(&escape_html(&message[start..end]));
        out.push_str("</mark>");
        at = end;
    }
    out.push_str(&escape_html(&message[at..]));
    Some(out)
}
