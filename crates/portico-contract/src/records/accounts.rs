//! The `Accounts` port.

use portico_core::{Accounts, Error};

use super::{at, new_account, page, walk};

/// Accounts get ascending numbers from the store's range (which must start at 500), list oldest
/// first across pages, and refuse cursors the store did not make.
pub async fn numbered_and_paged(accounts: &dyn Accounts) {
    for n in 0..5 {
        let created = accounts.create_account(&new_account(n)).await.unwrap();
        assert_eq!(created.account_number, (500 + n).to_string());
        assert_eq!(created.created_at, at(n));
    }
    assert!(matches!(accounts.create_account(&new_account(1)).await, Err(Error::Conflict(_))));
    let account = accounts.account("acc-3").await.unwrap().unwrap();
    assert_eq!(account.name, "Account 3");
    assert_eq!(accounts.account("acc-404").await.unwrap(), None);

    let ids: Vec<String> = walk(2, |p| async move { accounts.list_accounts(None, &p).await })
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, (0..5).map(|n| format!("acc-{n}")).collect::<Vec<_>>());
    let only = accounts.list_accounts(Some("acc-2"), &page(10, None)).await.unwrap();
    assert_eq!(only.items.len(), 1);
    assert_eq!(only.items[0].id, "acc-2");
    assert_eq!(only.next_cursor, None);
    let bad = accounts.list_accounts(None, &page(2, Some("garbage".into()))).await;
    assert!(matches!(bad, Err(Error::Validation(_))), "{bad:?}");
}
