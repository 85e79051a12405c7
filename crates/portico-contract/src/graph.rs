//! The `GraphStore` port: a fixture history of change records (a three-level distributor chain
//! with a cycle, a direct customer, an unrelated account with another lot, lot uses and run
//! files), projected once, twice, backwards and shuffled: every order gives the same trace, and
//! the trace names exactly what the lot reached.

use portico_core::domain::{
    Account, AccountKind, Document, DocumentStatus, Instrument, Lot, LotUse, Product, Role,
    Shipment, User,
};
use portico_core::graph::{
    Change, ChangeRecord, GraphStore, Trace, TracedAccount, TracedDocument, TracedInstrument, batch,
};
use serde_json::json;
use time::OffsetDateTime;

/// `n` seconds after a fixed instant.
fn at(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000 + n).unwrap()
}

/// The accounts of the fixture: the lot `L1` goes manufacturer -> D1 -> D2 -> C3 and
/// manufacturer -> C4; `L2` goes to D1 and on to U, which `L1` never reaches.
const ACCOUNTS: [(&str, AccountKind); 5] = [
    ("acc-d1", AccountKind::Distributor),
    ("acc-d2", AccountKind::Distributor),
    ("acc-c3", AccountKind::Customer),
    ("acc-c4", AccountKind::Customer),
    ("acc-u", AccountKind::Customer),
];

const MEMBER_ROLES: [(&str, Role); 3] =
    [("lab", Role::LabManager), ("admin", Role::AccountAdmin), ("sci", Role::Scientist)];

fn shipment(id: &str, lot: &str, from: Option<&str>, to: &str) -> Change {
    Change::Shipment(Shipment {
        id: id.into(),
        lot_number: lot.into(),
        from_account_id: from.map(str::to_string),
        account_id: to.into(),
        shipped_on: "2026-03-01".into(),
        quantity: 10,
        created_at: at(500),
    })
}

fn lot_use(id: &str, serial: &str, account: &str, lot: &str, when: i64) -> Change {
    Change::LotUse(LotUse {
        id: id.into(),
        lot_number: lot.into(),
        serial: serial.into(),
        account_id: account.into(),
        loaded_at: at(when),
    })
}

fn document(
    id: &str,
    account: &str,
    instrument: Option<&str>,
    status: DocumentStatus,
    metadata: Option<serde_json::Value>,
) -> Document {
    Document {
        id: id.into(),
        account_id: account.into(),
        uploaded_by: format!("u-{account}-sci"),
        filename: format!("{id}.csv"),
        content_type: "text/csv".into(),
        size: 100,
        status,
        failure_reason: None,
        metadata,
        instrument_serial: instrument.map(str::to_string),
        created_at: at(1000),
        updated_at: at(1000),
    }
}

/// A run file's metadata as the worker records it.
fn run(last: i64, lots: &[&str]) -> serde_json::Value {
    let last = at(last).format(&time::format_description::well_known::Rfc3339).unwrap();
    json!({"csv": {"rows": 3, "last_timestamp": last, "lots": lots}})
}

/// The fixture's history in commit order: each record's version is its place in it.
pub fn history() -> Vec<ChangeRecord> {
    let mut changes = Vec::new();
    for (n, (id, kind)) in ACCOUNTS.iter().enumerate() {
        changes.push(Change::Account(Account {
            id: id.to_string(),
            account_number: format!("{}", 1000 + n),
            name: format!("Account {id}"),
            kind: *kind,
            region: "eu-central-1".into(),
            created_at: at(n as i64),
        }));
        for (suffix, role) in MEMBER_ROLES {
            changes.push(Change::User(User {
                id: format!("u-{id}-{suffix}"),
                sub: format!("{id}-{suffix}"),
                email: format!("{suffix}@{id}.example"),
                display_name: format!("{suffix} of {id}"),
                account_id: Some(id.to_string()),
                roles: vec![role],
                created_at: at(10),
            }));
        }
    }
    changes.push(Change::User(User {
        id: "u-staff".into(),
        sub: "staff".into(),
        email: "staff@maker.example".into(),
        display_name: "Staff".into(),
        account_id: None,
        roles: vec![Role::Support],
        created_at: at(10),
    }));
    for (serial, account) in [("SN-C3", "acc-c3"), ("SN-C4", "acc-c4"), ("SN-U", "acc-u")] {
        changes.push(Change::Instrument(Instrument {
            serial: serial.into(),
            model: "Cycler".into(),
            name: format!("Cycler {serial}"),
            account_id: account.into(),
            created_at: at(20),
        }));
    }
    changes.push(Change::Product(Product {
        sku: "P-1".into(),
        name: "Polymerase".into(),
        category: "enzymes".into(),
        created_at: at(30),
    }));
    for lot in ["L1", "L2"] {
        changes.push(Change::Lot(Lot {
            lot_number: lot.into(),
            sku: "P-1".into(),
            manufactured_on: "2026-01-01".into(),
            expires_on: "2027-01-01".into(),
            qc_tests: vec![],
            created_at: at(40),
            recall: None,
        }));
    }
    changes.extend([
        shipment("s-1", "L1", None, "acc-d1"),
        shipment("s-2", "L1", Some("acc-d1"), "acc-d2"),
        shipment("s-3", "L1", Some("acc-d2"), "acc-c3"),
        shipment("s-4", "L1", None, "acc-c4"),
        // A cycle: the trace must end, and D1 keeps its one path.
        shipment("s-5", "L1", Some("acc-d2"), "acc-d1"),
        // Another lot through the same distributor to an account L1 never reaches.
        shipment("s-6", "L2", None, "acc-d1"),
        shipment("s-7", "L2", Some("acc-d1"), "acc-u"),
        lot_use("use-1", "SN-C3", "acc-c3", "L1", 2000),
        lot_use("use-2", "SN-C3", "acc-c3", "L1", 3000),
        lot_use("use-3", "SN-C4", "acc-c4", "L1", 2500),
        lot_use("use-4", "SN-U", "acc-u", "L2", 2000),
    ]);
    let pending = document("doc-c3-after", "acc-c3", Some("SN-C3"), DocumentStatus::Pending, None);
    changes.push(Change::Document(pending));
    changes.extend(
        [
            document(
                "doc-c3-after",
                "acc-c3",
                Some("SN-C3"),
                DocumentStatus::Ready,
                Some(run(2100, &[])),
            ),
            document(
                "doc-c3-before",
                "acc-c3",
                Some("SN-C3"),
                DocumentStatus::Ready,
                Some(run(1500, &[])),
            ),
            document(
                "doc-c4-names",
                "acc-c4",
                None,
                DocumentStatus::Ready,
                Some(run(100, &["L1"])),
            ),
            document(
                "doc-c4-failed",
                "acc-c4",
                None,
                DocumentStatus::Failed,
                Some(run(2600, &["L1"])),
            ),
            document(
                "doc-u",
                "acc-u",
                Some("SN-U"),
                DocumentStatus::Ready,
                Some(run(2600, &["L2"])),
            ),
        ]
        .map(Change::Document),
    );
    changes
        .into_iter()
        .enumerate()
        .map(|(n, change)| ChangeRecord { version: n as u128 + 1, at: at(5000 + n as i64), change })
        .collect()
}

/// What `trace("L1")` must answer for the whole history.
pub fn expected_l1(newest: OffsetDateTime) -> Trace {
    let account = |id: &str, kind: &str, paths: &[&[&str]]| TracedAccount {
        account_id: id.into(),
        name: format!("Account {id}"),
        kind: kind.into(),
        paths: paths.iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect(),
    };
    let mut members = Vec::new();
    for id in ["acc-c3", "acc-c4", "acc-d1", "acc-d2"] {
        for (suffix, role) in MEMBER_ROLES {
            members.push(portico_core::graph::TracedUser {
                user_id: format!("u-{id}-{suffix}"),
                account_id: id.into(),
                display_name: format!("{suffix} of {id}"),
                email: format!("{suffix}@{id}.example"),
                roles: vec![role],
            });
        }
    }
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Trace {
        accounts: vec![
            account("acc-c3", "customer", &[&["acc-d1", "acc-d2", "acc-c3"]]),
            account("acc-c4", "customer", &[&["acc-c4"]]),
            account("acc-d1", "distributor", &[&["acc-d1"]]),
            account("acc-d2", "distributor", &[&["acc-d1", "acc-d2"]]),
        ],
        instruments: vec![
            TracedInstrument {
                serial: "SN-C3".into(),
                name: "Cycler SN-C3".into(),
                account_id: "acc-c3".into(),
                first_loaded_at: at(2000),
                last_loaded_at: at(3000),
            },
            TracedInstrument {
                serial: "SN-C4".into(),
                name: "Cycler SN-C4".into(),
                account_id: "acc-c4".into(),
                first_loaded_at: at(2500),
                last_loaded_at: at(2500),
            },
        ],
        documents: vec![
            TracedDocument {
                document_id: "doc-c3-after".into(),
                account_id: "acc-c3".into(),
                filename: "doc-c3-after.csv".into(),
                instrument_serial: Some("SN-C3".into()),
                names_lot: false,
                created_at: at(1000),
            },
            TracedDocument {
                document_id: "doc-c4-names".into(),
                account_id: "acc-c4".into(),
                filename: "doc-c4-names.csv".into(),
                instrument_serial: None,
                names_lot: true,
                created_at: at(1000),
            },
        ],
        members,
        as_of: Some(newest),
    }
}

/// Applies `records` one batch at a time, `size` records per batch.
async fn apply(graph: &dyn GraphStore, records: &[ChangeRecord], size: usize) {
    for chunk in records.chunks(size) {
        graph.upsert(&batch(chunk)).await.unwrap();
    }
}

/// A deterministic shuffle (no RNG dependency): a fixed permutation by stride.
fn shuffled(records: &[ChangeRecord]) -> Vec<ChangeRecord> {
    let n = records.len();
    let stride = (1..n).rev().find(|s| gcd(*s, n) == 1 && *s > n / 3).unwrap_or(1);
    (0..n).map(|i| records[(i * stride) % n].clone()).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The whole contract on graphs from `fresh` (each empty).
pub async fn projection_is_idempotent_and_order_free<G, F, Fut>(mut fresh: F)
where
    G: GraphStore,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = G>,
{
    let history = history();
    let newest = history.iter().map(|r| r.at).max().unwrap();
    let expected = expected_l1(newest);

    let graph = fresh().await;
    assert_eq!(graph.trace("L1").await.unwrap(), Trace::default(), "an empty graph knows nothing");
    apply(&graph, &history, 7).await;
    assert_eq!(graph.trace("L1").await.unwrap(), expected, "in commit order");
    // Redelivered, all of it: nothing changes.
    apply(&graph, &history, 100).await;
    assert_eq!(graph.trace("L1").await.unwrap(), expected, "after redelivery");
    let l2 = graph.trace("L2").await.unwrap();
    let reached: Vec<&str> = l2.accounts.iter().map(|a| a.account_id.as_str()).collect();
    assert_eq!(reached, ["acc-d1", "acc-u"]);
    assert_eq!(graph.trace("L-unknown").await.unwrap().accounts, vec![]);
    graph.clear().await.unwrap();
    assert_eq!(graph.trace("L1").await.unwrap(), Trace::default(), "cleared");

    // Backwards, one record at a time: edges before their vertices, older versions last.
    let graph = fresh().await;
    let backwards: Vec<ChangeRecord> = history.iter().rev().cloned().collect();
    apply(&graph, &backwards, 1).await;
    assert_eq!(graph.trace("L1").await.unwrap(), expected, "backwards");

    let graph = fresh().await;
    apply(&graph, &shuffled(&history), 5).await;
    apply(&graph, &shuffled(&history), 3).await;
    assert_eq!(graph.trace("L1").await.unwrap(), expected, "shuffled and redelivered");
}
