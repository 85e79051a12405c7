//! The database handle: opening, migrating, and running closures on a connection off the async
//! runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use portico_core::{Error, Result};
use rusqlite::Connection;

/// Readers kept open; WAL lets them run beside the writer.
const READERS: usize = 4;

/// Schema versions, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    account_number TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    region         TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE TABLE users (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    sub          TEXT NOT NULL,
    sub_key      TEXT NOT NULL UNIQUE,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    account_id   TEXT REFERENCES accounts(id),
    roles        TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX users_by_account ON users(account_id, seq);
CREATE TABLE sequences (
    name       TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE user_roles (
    role       TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    account_id TEXT,
    PRIMARY KEY (role, user_id)
);
CREATE INDEX user_roles_by_account ON user_roles(role, account_id);
INSERT INTO user_roles (role, user_id, account_id)
    SELECT r.role, u.id, u.account_id
    FROM users u
    JOIN (SELECT 'admin' AS role UNION ALL SELECT 'support' UNION ALL SELECT 'account_admin'
          UNION ALL SELECT 'lab_manager' UNION ALL SELECT 'scientist') r
      ON (',' || u.roles || ',') LIKE ('%,' || r.role || ',%');
CREATE TABLE instruments (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    serial      TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL,
    name        TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX instruments_by_account ON instruments(account_id, seq);
CREATE TABLE notifications (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at    TEXT
);
CREATE INDEX notifications_by_user ON notifications(user_id, seq);
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body_text  TEXT NOT NULL,
    category   TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"#,
    r#"
CREATE TABLE documents (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    uploaded_by    TEXT NOT NULL,
    filename       TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    size           INTEGER NOT NULL,
    status         TEXT NOT NULL,
    failure_reason TEXT,
    metadata       TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX documents_by_account ON documents(account_id, seq);
CREATE TABLE queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX queue_ready ON queue_messages(queue, visible_at, seq);
CREATE INDEX queue_receipts ON queue_messages(receipt);
"#,
    r#"
ALTER TABLE outbox ADD COLUMN body_html TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN provider_message_id TEXT;
ALTER TABLE outbox ADD COLUMN sent_at TEXT;
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
"#,
    r#"
CREATE TABLE products (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    sku        TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    category   TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE lots (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    lot_number      TEXT NOT NULL UNIQUE,
    sku             TEXT NOT NULL REFERENCES products(sku),
    manufactured_on TEXT NOT NULL,
    expires_on      TEXT NOT NULL,
    qc_tests        TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE shipments (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    lot_number TEXT NOT NULL REFERENCES lots(lot_number),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    shipped_on TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX shipments_by_lot ON shipments(lot_number, seq);
CREATE INDEX shipments_by_account ON shipments(account_id, seq);
"#,
    // Subjects match byte for byte after ASCII case folding (`portico_core::domain::sub_key`);
    // keys made before were trimmed and Unicode-folded. SQLite's lower() folds ASCII only.
    r#"
UPDATE users SET sub_key = lower(sub);
"#,
    // Traceability: onward shipments, lot uses, recalls, run files' instruments; the change
    // table every domain write appends to in its own transaction, its consumers' checkpoints, and
    // the graph those changes project to.
    r#"
ALTER TABLE shipments ADD COLUMN from_account_id TEXT REFERENCES accounts(id);
CREATE INDEX shipments_received ON shipments(account_id, lot_number);
CREATE INDEX shipments_sent ON shipments(from_account_id, lot_number);
ALTER TABLE documents ADD COLUMN instrument_serial TEXT;
ALTER TABLE lots ADD COLUMN recall TEXT;
CREATE TABLE lot_uses (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    lot_number TEXT NOT NULL REFERENCES lots(lot_number),
    serial     TEXT NOT NULL,
    account_id TEXT NOT NULL,
    loaded_at  TEXT NOT NULL
);
CREATE TABLE changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    body  TEXT NOT NULL
);
CREATE TABLE change_checkpoints (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);
CREATE TABLE graph_vertices (
    id      TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    version TEXT NOT NULL,
    props   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE graph_edges (
    id      TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    out_id  TEXT NOT NULL,
    in_id   TEXT NOT NULL,
    version TEXT NOT NULL,
    props   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX graph_edges_out ON graph_edges(out_id, label);
CREATE INDEX graph_edges_in ON graph_edges(in_id, label);
CREATE TABLE graph_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    newest_ms INTEGER NOT NULL
);
"#,
    // A trace follows onward shipments of one lot: a distributor sends many lots on, so its
    // `shipped` edges are found by sender and lot, not by sender alone (the expression is the
    // one `graph.rs` queries with).
    r#"
CREATE INDEX graph_edges_shipped ON graph_edges(out_id, json_extract(props, '$.lot_number'))
    WHERE label = 'shipped';
"#,
    // The audit trail: one hash-chained record per change, written beside it (`changes.rs`),
    // naming the change it records, so a target's previous state (for the diff) is its last
    // audit record's change. Every index is a page more in each write's commit, so there are
    // three: by target, by actor, by account (a time range is a range of `seq`). The triggers
    // make the trail append-only for everything that goes through SQLite; the chain makes
    // whatever goes around it show (`portico audit verify`).
    r#"
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    change_seq  INTEGER NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    account_id  TEXT,
    body        TEXT NOT NULL,
    prev        TEXT NOT NULL,
    digest      TEXT NOT NULL
);
CREATE INDEX audit_target ON audit(target_kind, target_id, seq);
CREATE INDEX audit_actor ON audit(actor_id, seq);
CREATE INDEX audit_account ON audit(account_id, seq) WHERE account_id IS NOT NULL;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"#,
    // Alerts and sign-ins: facts the reporting warehouse counts, recorded once each (by an id
    // derived from the event or the token), kept whole as JSON.
    r#"
CREATE TABLE alerts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    serial     TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE sign_ins (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    body       TEXT NOT NULL
);
"#,
    // Readiness: `/readyz` proves the database takes writes by writing this one row.
    r#"
CREATE TABLE readiness (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
);
"#,
];

/// A SQLite database shared by the local adapters.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    /// Write jobs, for the writer thread (which owns the writer connection).
    jobs: std::sync::mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

/// What a write job leaves to do once its batch is committed: answer its caller, with the
/// commit's error if the commit failed.
type Deliver = Box<dyn FnOnce(Option<String>) + Send>;
/// A write, run by the writer thread inside the batch's transaction; given the reason instead of
/// a connection when the batch's transaction could not start, it answers that without running.
type Job = Box<dyn FnOnce(std::result::Result<&Connection, &str>) -> Deliver + Send>;

/// Writes waiting together are committed together, at most this many at a time.
const BATCH: usize = 256;

impl Database {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Database> {
        Database::open_with(path, migrate)
    }

    /// Opens the database at `path` with a schema of its own (`setup` brings it up to date).
    pub(crate) fn open_with(
        path: &Path,
        setup: fn(&mut Connection) -> Result<()>,
    ) -> Result<Database> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut writer = open_connection(path)?;
        setup(&mut writer)?;
        let readers = (0..READERS).map(|_| open_connection(path)).collect::<Result<Vec<_>>>()?;
        let (jobs, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("portico-db-writer".into())
            .spawn(move || write_batches(writer, queue))
            .context("starting the database writer")?;
        Ok(Database {
            inner: Arc::new(Inner { jobs, readers: Mutex::new(readers), path: path.to_owned() }),
        })
    }

    /// Runs `f` on the writer connection, inside a transaction (a savepoint of its own in the
    /// batch it is committed with: an error undoes `f`'s writes and nothing else); answers once
    /// the batch is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        // Who is acting goes with the write to the writer thread (the audit trail reads it).
        let acting = portico_core::audit::current();
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: std::result::Result<&Connection, &str>| {
            let result = match conn {
                Ok(conn) => portico_core::audit::within(acting, || in_savepoint(conn, f)),
                // Busy, not broken: another process held the write lock past the busy timeout,
                // and the caller may try again.
                Err(reason) => Err(Error::Unavailable(format!(
                    "the database cannot take writes now: {reason}"
                ))),
            };
            Box::new(move |commit_error: Option<String>| {
                let result = match commit_error {
                    None => result,
                    Some(e) => Err(Error::Unexpected(anyhow::anyhow!("committing: {e}"))),
                };
                let _ = answer.send(result);
            })
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the database writer has stopped"))?;
        answered.await.map_err(|_| anyhow::anyhow!("the database writer dropped a write"))?
    }

    /// Runs `f` as one write (all of it or none of it); `what` names it in errors.
    pub(crate) async fn transaction<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write(move |conn| {
            f(conn).map_err(|e| match e {
                Error::Unexpected(e) => Error::Unexpected(e.context(what)),
                other => other,
            })
        })
        .await
    }

    /// Runs one statement on the writer connection; answers how many rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        values: Vec<rusqlite::types::Value>,
        what: &'static str,
    ) -> Result<usize> {
        self.write(move |conn| {
            Ok(conn.execute(sql, rusqlite::params_from_iter(values)).context(what)?)
        })
        .await
    }

    /// Proves the database takes writes: one row written through the writer, as every write
    /// goes (so a full disk, a read-only file or a lock held elsewhere past the busy timeout
    /// fail it).
    pub async fn probe_write(&self) -> Result<()> {
        self.execute(
            "INSERT INTO readiness (id, at_ms) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
            vec![rusqlite::types::Value::Integer(crate::rows::now_ms())],
            "probing the database",
        )
        .await
        .map(|_| ())
    }

    /// Runs `f` on a reader connection, on the calling thread (so it is not async).
    ///
    /// Reads are indexed point lookups and short pages that take microseconds, and in WAL mode
    /// they never wait for the writer; handing them to the blocking pool costs more (two thread
    /// switches) than the read itself. Writes, which can wait for the lock, do go there.
    pub(crate) fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let pooled = self.inner.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.inner.path)?,
        };
        let result = f(&conn);
        if let Ok(mut readers) = self.inner.readers.lock()
            && readers.len() < READERS
        {
            readers.push(conn);
        }
        result
    }
}

/// `f` inside a savepoint: released when it succeeds, rolled back when it fails or panics.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    run(conn, "SAVEPOINT write").context("starting a write")?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)));
    let result = match outcome {
        Ok(result) => result,
        Err(_) => Err(Error::Unexpected(anyhow::anyhow!("a database write panicked"))),
    };
    if result.is_err() {
        // Undo this write only; the batch's other writes stand.
        let _ = run(conn, "ROLLBACK TO write");
    }
    run(conn, "RELEASE write").context("ending a write")?;
    result
}

/// Runs a statement without parameters through the connection's statement cache: the writer's
/// transaction statements run once or twice per write, and `execute_batch` parses them each time.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: takes the writes waiting, runs them in one transaction (each in its own
/// savepoint), commits once, then answers each. One commit for many concurrent writes is what
/// makes them cheap: a commit appends every page it touched to the WAL, and a batch touches
/// the same pages once. Nobody hears "done" before the commit.
fn write_batches(conn: Connection, queue: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run(&conn, "BEGIN IMMEDIATE") {
            // (Another process held the write lock past the busy timeout.) The writes are not
            // run, and each caller hears why.
            tracing::warn!(error = %e, writes = jobs.len(), "cannot start a write transaction");
            let reason = e.to_string();
            for job in jobs {
                job(Err(&reason))(None);
            }
            continue;
        }
        let delivers: Vec<Deliver> = jobs.into_iter().map(|job| job(Ok(&conn))).collect();
        let commit_error = match run(&conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = run(&conn, "ROLLBACK");
                Some(e.to_string())
            }
        };
        for deliver in delivers {
            deliver(commit_error.clone());
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
    // WAL: readers never block the writer. synchronous=NORMAL: a committed transaction survives a
    // process crash (kill -9); only an OS crash or power loss can drop the last commits.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .context("configuring database connection")?;
    // Every statement a write makes is prepared once per connection: the default cache (16)
    // is smaller than the statements the writer uses, and a miss parses the SQL again.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// The schema version this Portico brings a database to.
pub(crate) fn schema_version() -> usize {
    MIGRATIONS.len()
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("reading schema version")?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        // Checked before anything else in the data dir is touched: an older Portico must not
        // write to a newer one's data.
        return Err(Error::Unexpected(anyhow::anyhow!(
            "the database schema (version {applied}) is newer than this Portico {} (version {}): this data dir was used by a newer Portico; run that one, or restore a backup made before the upgrade",
            env!("CARGO_PKG_VERSION"),
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().context("starting migration")?;
        tx.execute_batch(sql).with_context(|| format!("applying migration {}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .context("recording schema version")?;
        tx.commit().context("committing migration")?;
    }
    match applied {
        // A new data dir is the common case (every test, every first run): not worth a line.
        0 => tracing::debug!(schema_version = MIGRATIONS.len(), "database created"),
        n if n < MIGRATIONS.len() => tracing::info!(
            from_version = n,
            schema_version = MIGRATIONS.len(),
            "database schema upgraded from version {n} to {}",
            MIGRATIONS.len()
        ),
        _ => {}
    }
    Ok(())
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A write that cannot start because another process holds the write lock past the busy
    /// timeout is answered "unavailable", saying why; once the lock is let go, writes go on.
    #[tokio::test]
    async fn a_write_blocked_by_another_process_is_answered_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portico.db");
        let db = Database::open(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let err = db.probe_write().await.unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("cannot take writes now")),
            "{err:?}"
        );
        other.execute_batch("ROLLBACK").unwrap();
        db.probe_write().await.unwrap();
    }
}
