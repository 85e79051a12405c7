//! The record ports (`Accounts`, `Users`, `Instruments`, `Notifications`, `Documents`,
//! `Catalogue`, `Outbox`): what the functions rely on, whichever database keeps the records. One
//! module per port; each suite takes fresh, empty adapters, and a suite whose records refer to
//! others (a user's account) is handed the ports that create those too.

pub mod accounts;
pub mod catalogue;
pub mod documents;
pub mod instruments;
pub mod notifications;
pub mod outbox;
pub mod users;

use portico_core::domain::{AccountKind, Role, User};
use portico_core::ports::{NewAccount, Page, PageRequest};
use time::OffsetDateTime;

/// `n` seconds after a fixed instant: fixtures made later are later.
pub(crate) fn at(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000 + n).unwrap()
}

pub(crate) fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Every item of a listing, walking its pages `limit` at a time.
pub(crate) async fn walk<T, F, Fut>(limit: u32, mut list: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = portico_core::Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = list(page(limit, cursor)).await.unwrap();
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the listing never ended");
}

pub(crate) fn new_account(n: i64) -> NewAccount {
    NewAccount {
        id: format!("acc-{n}"),
        name: format!("Account {n}"),
        kind: AccountKind::Customer,
        region: "eu-central-1".into(),
        created_at: at(n),
    }
}

pub(crate) fn user(n: i64, account: Option<&str>, roles: &[Role]) -> User {
    User {
        id: format!("u-{n}"),
        sub: format!("User{n}@Example.com"),
        email: format!("user{n}@example.com"),
        display_name: format!("User {n}"),
        account_id: account.map(str::to_owned),
        roles: roles.to_vec(),
        created_at: at(100 + n),
    }
}
