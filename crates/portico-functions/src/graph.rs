//! The projector: change records in, graph elements out (`portico_core::graph::batch` says what
//! each record is in the graph). The same function feeds the local graph (from the change table)
//! and Neptune (from the DynamoDB stream); `rebuild` projects every record anew.

use portico_core::Result;
use portico_core::domain::Role;
use portico_core::graph::{Change, ChangeRecord, GraphStore, batch};
use portico_core::ports::{Page, PageRequest};
use time::OffsetDateTime;

use crate::Context;

/// Applies change records to the graph (any order, any number of times).
pub async fn project(graph: &dyn GraphStore, records: &[ChangeRecord]) -> Result<usize> {
    let batch = batch(records);
    graph.upsert(&batch).await?;
    metrics::counter!("portico_graph_changes_projected_total").increment(records.len() as u64);
    Ok(records.len())
}

/// How many records `rebuild` projected, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub accounts: usize,
    pub users: usize,
    pub instruments: usize,
    pub products: usize,
    pub lots: usize,
    pub shipments: usize,
    pub lot_uses: usize,
    pub documents: usize,
    pub alerts: usize,
    pub sign_ins: usize,
}

/// Clears the graph and projects every record the ports hold, as `version`: the version of the
/// newest change already written, so changes written during the rebuild still win when the
/// projector applies them afterwards.
pub async fn rebuild(ctx: &Context, version: u128) -> Result<Rebuilt> {
    ctx.graph.clear().await?;
    let graph = ctx.graph.as_ref();
    let rebuilt =
        each_record(ctx, version, |records| async move { project(graph, &records).await }).await?;
    tracing::info!(?rebuilt, "graph rebuilt");
    Ok(rebuilt)
}

/// Hands every record the ports hold to `apply`, as change records of `version`, a kind at a
/// time (each account's users and documents, then accounts, platform staff, instruments, products, lots,
/// shipments, lot uses, alerts, sign-ins). What the graph and the warehouse rebuild from.
pub async fn each_record<F, Fut>(ctx: &Context, version: u128, apply: F) -> Result<Rebuilt>
where
    F: Fn(Vec<ChangeRecord>) -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut rebuilt = Rebuilt::default();
    let at = OffsetDateTime::now_utc();
    let apply = |changes: Vec<Change>| {
        let records: Vec<ChangeRecord> =
            changes.into_iter().map(|change| ChangeRecord { version, at, change }).collect();
        apply(records)
    };
    let accounts =
        every(|page| async move { ctx.accounts.list_accounts(None, &page).await }).await?;
    for account in &accounts {
        let id = account.id.as_str();
        let users = every(|page| async move { ctx.users.list_users(id, &page).await }).await?;
        rebuilt.users += apply(users.into_iter().map(Change::User).collect()).await?;
        let documents =
            every(|page| async move { ctx.documents.list_documents(id, &page).await }).await?;
        rebuilt.documents += apply(documents.into_iter().map(Change::Document).collect()).await?;
    }
    rebuilt.accounts = apply(accounts.into_iter().map(Change::Account).collect()).await?;
    // Platform staff belong to no account.
    let mut staff = ctx.users.users_with_role(None, Role::Admin).await?;
    staff.extend(ctx.users.users_with_role(None, Role::Support).await?);
    staff.retain(|u| u.account_id.is_none());
    staff.sort_by(|a, b| a.id.cmp(&b.id));
    staff.dedup_by(|a, b| a.id == b.id);
    rebuilt.users += apply(staff.into_iter().map(Change::User).collect()).await?;
    let instruments =
        every(|page| async move { ctx.instruments.list_instruments(None, &page).await }).await?;
    rebuilt.instruments = apply(instruments.into_iter().map(Change::Instrument).collect()).await?;
    let products = every(|page| async move { ctx.catalogue.list_products(&page).await }).await?;
    rebuilt.products = apply(products.into_iter().map(Change::Product).collect()).await?;
    let lots = every(|page| async move { ctx.catalogue.list_lots(&page).await }).await?;
    rebuilt.lots = apply(lots.into_iter().map(Change::Lot).collect()).await?;
    let shipments =
        every(|page| async move { ctx.catalogue.list_shipments(None, None, &page).await }).await?;
    rebuilt.shipments = apply(shipments.into_iter().map(Change::Shipment).collect()).await?;
    let uses = every(|page| async move { ctx.catalogue.list_lot_uses(&page).await }).await?;
    rebuilt.lot_uses = apply(uses.into_iter().map(Change::LotUse).collect()).await?;
    let alerts = every(|page| async move { ctx.instruments.list_alerts(&page).await }).await?;
    rebuilt.alerts = apply(alerts.into_iter().map(Change::Alert).collect()).await?;
    let sign_ins = every(|page| async move { ctx.users.list_sign_ins(&page).await }).await?;
    rebuilt.sign_ins = apply(sign_ins.into_iter().map(Change::SignIn).collect()).await?;
    Ok(rebuilt)
}

/// Every item of a paged listing.
async fn every<T, F, Fut>(mut list: F) -> Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(PageRequest { limit: PageRequest::MAX_LIMIT, cursor }).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
}
