//! The `Accounts` port on the table.

use async_trait::async_trait;
use portico_core::domain::Account;
use portico_core::ports::{NewAccount, Page, PageRequest};
use portico_core::{Accounts, Error, Result};

use super::keys::{self, GSI1, ONE};
use super::{DynamoStore, decode_cursor, item};

/// The account-number sequence (the same name the local store uses).
const ACCOUNT_NUMBERS: &str = "account_number";

#[async_trait]
impl Accounts for DynamoStore {
    async fn create_account(&self, account: &NewAccount) -> Result<Account> {
        let conflict = || format!("account `{}` already exists", account.id);
        // Refuse a known id before taking a number, so a repeat does not use one up.
        if self.get(keys::account(&account.id), ONE).await?.is_some() {
            return Err(Error::Conflict(conflict()));
        }
        let number = self.account_numbers.next(ACCOUNT_NUMBERS).await?;
        let created = Account {
            id: account.id.clone(),
            account_number: number.to_string(),
            name: account.name.clone(),
            kind: account.kind,
            region: account.region.clone(),
            created_at: account.created_at,
        };
        let sort = keys::order(created.created_at, &created.id);
        let item = item(
            keys::account(&created.id),
            ONE,
            &created,
            &[(GSI1, keys::ACCOUNTS.into(), sort)],
        )?;
        self.create(item, conflict()).await?;
        Ok(created)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        self.get_record(keys::account(id), ONE).await
    }

    async fn list_accounts(&self, only: Option<&str>, page: &PageRequest) -> Result<Page<Account>> {
        match only {
            Some(id) => {
                // One account at most: the cursor is checked like any other.
                decode_cursor(page.cursor.as_deref(), GSI1, keys::ACCOUNTS)?;
                Ok(Page { items: self.account(id).await?.into_iter().collect(), next_cursor: None })
            }
            None => self.page(GSI1, keys::ACCOUNTS.into(), false, page).await,
        }
    }
}
