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

/// Every record suite, each on a fresh, empty store from `fresh`: for an adapter that serves all
/// the record ports, as the SQLite store and the DynamoDB table do.
pub async fn every_port<S, F, Fut>(mut fresh: F)
where
    S: Accounts + Users + Instruments + Notifications + Documents + Catalogue + Outbox,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    accounts::numbered_and_paged(&fresh().await).await;
    let store = fresh().await;
    users::subjects_and_roles(&store, &store).await;
    let store = fresh().await;
    instruments::serials_and_secrets(&store, &store).await;
    notifications::redelivery_order_and_reads(&fresh().await).await;
    let store = fresh().await;
    documents::listing_and_transitions(&store, &store, &store).await;
    let store = fresh().await;
    catalogue::products_lots_and_shipments(&store, &store).await;
    outbox::leases_and_outcomes(&fresh().await).await;
}

use std::future::Future;

use portico_core::domain::{AccountKind, Role, User};
use portico_core::ports::{NewAccount, Page, PageRequest};
use portico_core::{Accounts, Catalogue, Documents, Instruments, Notifications, Outbox, Users};
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

/// Accounts `acc-1` and `acc-2`, which the other records refer to.
pub(crate) async fn two_accounts(accounts: &dyn Accounts) {
    for n in [1, 2] {
        accounts.create_account(&new_account(n)).await.unwrap();
    }
}
