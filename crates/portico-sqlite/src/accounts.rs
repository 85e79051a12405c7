//! The `Accounts` port on SQLite.

use async_trait::async_trait;
use portico_core::domain::{Account, AccountKind};
use portico_core::graph::Change;
use portico_core::ports::{NewAccount, Page, PageRequest};
use portico_core::{Accounts, Result};
use rusqlite::{Row, params};

use crate::rows::{Decoded, conflict_or, corrupt, parse_timestamp, timestamp};
use crate::sequence;
use crate::store::Order;
use crate::{SqliteStore, changes};

/// The sequence account numbers are taken from.
const ACCOUNT_NUMBERS: &str = "account_number";

const COLUMNS: &str = "seq, id, account_number, name, kind, region, created_at";

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_account(&self, new: &NewAccount) -> Result<Account> {
        let new = new.clone();
        let range = self.account_numbers;
        self.db
            .transaction("account", move |tx| {
                let number = sequence::allocate(tx, ACCOUNT_NUMBERS, range)?;
                let account = Account {
                    id: new.id,
                    account_number: number.to_string(),
                    name: new.name,
                    kind: new.kind,
                    region: new.region,
                    created_at: new.created_at,
                };
                let created_at = timestamp(account.created_at)?;
                tx.prepare_cached(
                    "INSERT INTO accounts (id, account_number, name, kind, region, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        account.id,
                        account.account_number,
                        account.name,
                        account.kind.as_str(),
                        account.region,
                        created_at
                    ])
                })
                .map_err(|e| {
                    conflict_or(
                        e,
                        format!("account `{}` already exists", account.id),
                        "inserting account",
                    )
                })?;
                changes::record(tx, &Change::Account(account.clone()))?;
                Ok(account)
            })
            .await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1");
        self.one(&sql, params![id], account_row, "reading account")
    }

    async fn list_accounts(&self, only: Option<&str>, page: &PageRequest) -> Result<Page<Account>> {
        let select = format!("SELECT {COLUMNS} FROM accounts WHERE (?2 IS NULL OR id = ?2)");
        self.listing(&select, &[&only], account_row, page, Order::OldestFirst, "listing accounts")
    }
}

fn account_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Account>> {
    let seq: i64 = row.get(0)?;
    let (id, account_number, name): (String, String, String) =
        (row.get(1)?, row.get(2)?, row.get(3)?);
    let (kind, region, created): (String, String, String) = (row.get(4)?, row.get(5)?, row.get(6)?);
    let account = AccountKind::parse(&kind)
        .ok_or_else(|| corrupt(format!("unknown account kind {kind:?}")))
        .and_then(|kind| {
            Ok(Account {
                id,
                account_number,
                name,
                kind,
                region,
                created_at: parse_timestamp(&created)?,
            })
        });
    Ok((seq, account))
}
