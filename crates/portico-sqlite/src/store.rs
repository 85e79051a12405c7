//! `SqliteStore`: every record port on the one database. Each port's implementation is in its
//! aggregate's module (`accounts.rs`, `users.rs`, ...); the queries they all make are here, and
//! what rows and cursors look like is in `rows.rs`.

use anyhow::Context;
use portico_core::Result;
use portico_core::ports::{Page, PageRequest, SequenceRange};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Params, ToSql, params_from_iter};

use portico_core::graph::Change;

use crate::rows::{self, Decoded, RowFn, conflict_or, decode_cursor, decode_cursor_newest_first};
use crate::{Database, changes};

/// The order of a listing, by when its rows were stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Order {
    OldestFirst,
    NewestFirst,
}

pub struct SqliteStore {
    pub(crate) db: Database,
    /// This region's part of the account-number space (see `accounts.rs`).
    pub(crate) account_numbers: SequenceRange,
}

impl SqliteStore {
    /// A store whose accounts are numbered from `account_numbers`, this region's range.
    pub fn new(db: Database, account_numbers: SequenceRange) -> Self {
        SqliteStore { db, account_numbers }
    }

    /// The record `sql` selects, if any. Reads run on the calling thread (see `Database::read`),
    /// so this is not async.
    pub(crate) fn one<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: RowFn<T>,
        what: &'static str,
    ) -> Result<Option<T>> {
        let found = self.db.read(|conn| {
            let mut statement = conn.prepare_cached(sql).context(what)?;
            Ok(statement.query_row(params, row).optional().context(what)?)
        })?;
        found.map(|(_, item)| item).transpose()
    }

    /// Every record `sql` selects.
    pub(crate) fn all<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: RowFn<T>,
        what: &'static str,
    ) -> Result<Vec<T>> {
        self.decoded(sql, params, row, what)?.into_iter().map(|(_, item)| item).collect()
    }

    /// One page of a listing: `select` (a SELECT of a table with `seq`, whose WHERE clause uses
    /// `?2`, `?3`, ... for `filter`) in `order`, from the page's cursor on. The cursor is `?1`.
    pub(crate) fn listing<T>(
        &self,
        select: &str,
        filter: &[&dyn ToSql],
        row: RowFn<T>,
        page: &PageRequest,
        order: Order,
        what: &'static str,
    ) -> Result<Page<T>> {
        let (position, bound) = match order {
            Order::OldestFirst => (decode_cursor(page.cursor.as_deref())?, "seq > ?1 ORDER BY seq"),
            Order::NewestFirst => {
                (decode_cursor_newest_first(page.cursor.as_deref())?, "seq < ?1 ORDER BY seq DESC")
            }
        };
        let limit = i64::from(page.limit) + 1;
        let sql = format!("{select} AND {bound} LIMIT ?{}", filter.len() + 2);
        let mut params: Vec<&dyn ToSql> = vec![&position];
        params.extend_from_slice(filter);
        params.push(&limit);
        rows::paginate(self.decoded(&sql, params.as_slice(), row, what)?, page.limit)
    }

    /// Every row `sql` selects, decoded as far as SQLite goes.
    fn decoded<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: RowFn<T>,
        what: &'static str,
    ) -> Result<Vec<Decoded<T>>> {
        self.db.read(|conn| {
            let mut statement = conn.prepare_cached(sql).context(what)?;
            let rows = statement.query_map(params, row).context(what)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>().context(what)?)
        })
    }

    /// Inserts one row and records `change` in the same transaction; a unique key already taken
    /// is `Error::Conflict(conflict)`.
    pub(crate) async fn insert(
        &self,
        sql: &'static str,
        values: Vec<Value>,
        conflict: String,
        change: Change,
        what: &'static str,
    ) -> Result<()> {
        self.db
            .transaction(what, move |tx| {
                tx.execute(sql, params_from_iter(values))
                    .map_err(|e| conflict_or(e, conflict, what))?;
                changes::record(tx, &change)
            })
            .await
    }

    /// Inserts a record kept whole as JSON (`sql` takes id, one indexed column and the body)
    /// unless its id is known; its change is recorded only when it was new. Answers whether it
    /// was.
    pub(crate) async fn record_once(
        &self,
        sql: &'static str,
        values: Vec<Value>,
        change: Change,
        what: &'static str,
    ) -> Result<bool> {
        self.db
            .transaction(what, move |tx| {
                let added = tx.execute(sql, params_from_iter(values)).context(what)? > 0;
                if added {
                    changes::record(tx, &change)?;
                }
                Ok(added)
            })
            .await
    }
}
