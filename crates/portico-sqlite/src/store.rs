//! `SqliteStore`: every record port on the one database. Each port's implementation is in its
//! aggregate's module (`accounts.rs`, `users.rs`, ...); what they share is in `rows.rs`.

use portico_core::ports::SequenceRange;

use crate::Database;

pub struct SqliteStore {
    pub(crate) db: Database,
    /// This region's part of the account-number space (see `accounts.rs`).
    pub(crate) account_numbers: SequenceRange,
}

impl SqliteStore {
    /// A store whose accounts are numbered from `account_numbers`, this region's range.
    pub fn new(db: Database, account_numbers: SequenceRange) -> Self {
        SqliteStore {
            db,
            account_numbers,
        }
    }
}
