//! The traceability graph: change records (what the domain wrote), the graph they project to, the
//! `GraphStore` port, and what a lot's trace answers.
//!
//! The graph is a projection, never a source of truth. Every domain write that adds or changes an
//! account, user, instrument, product, lot, shipment, lot use, document, alert or sign-in is also a
//! `ChangeRecord` (locally a row written in the same transaction; on AWS the DynamoDB stream
//! record of the item). A projector turns each record into vertices and edges
//! (`portico_functions::graph::elements`) and upserts them. Upserts are idempotent and keep the
//! newest version of every element, so records may arrive twice and in any order.
//!
//! Vertices have ids `<label>:<key>` (`account:<id>`, `lot:<lot number>`, ...). Edges:
//!
//! | edge | from -> to | props |
//! |---|---|---|
//! | `member_of` | user -> account | |
//! | `held_by` | instrument -> account | |
//! | `of` | lot -> product | |
//! | `shipped` | lot -> account (from the manufacturer), account -> account (onward) | `lot_number`, `quantity`, `shipped_on` |
//! | `loaded` | instrument -> lot | `loaded_at_ms`, `account_id` (the instrument's then) |
//! | `produced_on` | document -> instrument | |
//! | `owned_by` | document -> account | |
//! | `names` | document -> lot (a run file's lot column) | |
//! | `raised_on` | alert -> instrument | |
//!
//! Alerts and sign-ins are vertices too (`alert:<id>`, `sign_in:<id>`): nothing traces through
//! a sign-in, but the graph's change stream is what the reporting warehouse is loaded from, on
//! both hosts, so every fact the warehouse holds passes through the graph.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use time::format_description::well_known::Rfc3339;

use crate::domain::{
    Account, Alert, Document, Instrument, Lot, LotUse, Product, Shipment, SignIn, User, unix_ms,
};
use crate::error::Result;

/// One domain write, as its record stood after the write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum Change {
    Account(Account),
    User(User),
    Instrument(Instrument),
    Product(Product),
    Lot(Lot),
    Shipment(Shipment),
    LotUse(LotUse),
    Document(Document),
    Alert(Alert),
    SignIn(SignIn),
}

/// A change with its place in the history of its record.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// Grows with every write of the same record (locally the change table's sequence; on AWS
    /// the stream record's sequence number), so the newest state wins whatever the arrival order.
    pub version: u128,
    /// When the write was committed.
    pub at: OffsetDateTime,
    pub change: Change,
}

/// What a vertex stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VertexLabel {
    Account,
    User,
    Instrument,
    Product,
    Lot,
    Document,
    Alert,
    SignIn,
}

impl VertexLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            VertexLabel::Account => "account",
            VertexLabel::User => "user",
            VertexLabel::Instrument => "instrument",
            VertexLabel::Product => "product",
            VertexLabel::Lot => "lot",
            VertexLabel::Document => "document",
            VertexLabel::Alert => "alert",
            VertexLabel::SignIn => "sign_in",
        }
    }
}

/// What an edge says (see the table in the module's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeLabel {
    MemberOf,
    HeldBy,
    Of,
    Shipped,
    Loaded,
    ProducedOn,
    OwnedBy,
    Names,
    RaisedOn,
}

impl EdgeLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeLabel::MemberOf => "member_of",
            EdgeLabel::HeldBy => "held_by",
            EdgeLabel::Of => "of",
            EdgeLabel::Shipped => "shipped",
            EdgeLabel::Loaded => "loaded",
            EdgeLabel::ProducedOn => "produced_on",
            EdgeLabel::OwnedBy => "owned_by",
            EdgeLabel::Names => "names",
            EdgeLabel::RaisedOn => "raised_on",
        }
    }
}

/// A vertex, by label and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VertexRef {
    pub label: VertexLabel,
    pub key: String,
}

impl VertexRef {
    pub fn new(label: VertexLabel, key: impl Into<String>) -> VertexRef {
        VertexRef { label, key: key.into() }
    }

    /// The vertex id every graph store uses: `<label>:<key>`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.label.as_str(), self.key)
    }
}

/// A property value. Single-valued: a newer version replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// Properties by name.
pub type Props = BTreeMap<String, Value>;

/// Properties from `(name, value)` pairs.
pub fn props<const N: usize>(pairs: [(&str, Value); N]) -> Props {
    pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
}

/// A vertex as one version of its record has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    pub vertex: VertexRef,
    #[serde(with = "version_text")]
    pub version: u128,
    pub props: Props,
}

/// An edge as one version of its record has it. Edges are never removed (nothing in the domain
/// is deleted); their ids are derived from what they stand for, so a repeat is the same edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub id: String,
    pub label: EdgeLabel,
    pub from: VertexRef,
    pub to: VertexRef,
    #[serde(with = "version_text")]
    pub version: u128,
    pub props: Props,
}

/// What a projector upserts. As JSON (`{"vertex": {...}}` / `{"edge": {...}}`, versions as
/// decimal text) it is what the AWS host's warehouse stream carries: the `stream-poller` puts
/// elements on Kinesis and the `kinesis` function loads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    Vertex(Vertex),
    Edge(Edge),
}

/// Versions as decimal text on the wire: a `u128` is past what JSON numbers carry safely.
mod version_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(version: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&version.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("not a version: {text:?}")))
    }
}

/// The elements of some change records, and the commit time of the newest of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub elements: Vec<Element>,
    pub newest: Option<OffsetDateTime>,
}

/// An account the lot reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TracedAccount {
    pub account_id: String,
    pub name: String,
    pub kind: String,
    /// Every way the lot travelled here: account ids from the first receiver to this account.
    /// Empty when the account never received the lot but used it (an instrument loaded it, a run
    /// file named it).
    pub paths: Vec<Vec<String>>,
}

/// An instrument that loaded the lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TracedInstrument {
    pub serial: String,
    pub name: String,
    pub account_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_loaded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_loaded_at: OffsetDateTime,
}

/// A ready run document the lot may have affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TracedDocument {
    pub document_id: String,
    pub account_id: String,
    pub filename: String,
    pub instrument_serial: Option<String>,
    /// The file names the lot (a `lot` or `lot_number` column); otherwise it was produced on an
    /// instrument after the instrument loaded the lot.
    pub names_lot: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// A member of an account the lot reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TracedUser {
    pub user_id: String,
    pub account_id: String,
    pub display_name: String,
    pub email: String,
    pub roles: Vec<crate::domain::Role>,
}

/// Where a lot went, as far as the graph knows. Every list is sorted by its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    pub accounts: Vec<TracedAccount>,
    pub instruments: Vec<TracedInstrument>,
    pub documents: Vec<TracedDocument>,
    /// Every member of the accounts above (whom to tell is the policy's business).
    pub members: Vec<TracedUser>,
    /// The commit time of the newest change the graph holds.
    pub as_of: Option<OffsetDateTime>,
}

/// How far a trace follows onward shipments (a cycle of shipments ends there too).
pub const MAX_CHAIN: usize = 16;

/// A graph store: the projection's elements in, traceability answers out.
///
/// Every adapter promises: an element whose version is not newer than the stored one changes
/// nothing; an edge may arrive before its vertices (they are created bare, and filled in when
/// their own record arrives); and the same elements in any order give the same graph.
#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    async fn upsert(&self, batch: &Batch) -> Result<()>;
    /// The trace of `lot_number` (empty lists when the graph does not know it).
    async fn trace(&self, lot_number: &str) -> Result<Trace>;
    /// Removes every element (before a rebuild).
    async fn clear(&self) -> Result<()>;
}

// The projection: what each version of a record is in the graph. Pure, so every projector (the
// local worker, the `graph-projector` Lambda, a rebuild) makes the same elements.

fn str_value(s: impl Into<String>) -> Value {
    Value::Str(s.into())
}

/// The elements of all `records`, newest commit time included.
pub fn batch(records: &[ChangeRecord]) -> Batch {
    let mut batch = Batch::default();
    for record in records {
        batch.elements.extend(elements(&record.change, record.version));
        batch.newest = Some(batch.newest.map_or(record.at, |n: OffsetDateTime| n.max(record.at)));
    }
    batch
}

/// What one version of a record is in the graph.
pub fn elements(change: &Change, version: u128) -> Vec<Element> {
    let vertex = |label, key: &str, props: Props| {
        Element::Vertex(Vertex { vertex: VertexRef::new(label, key), version, props })
    };
    let edge = |label: EdgeLabel, id: String, from: VertexRef, to: VertexRef, props: Props| {
        Element::Edge(Edge {
            id: format!("{}:{id}", label.as_str()),
            label,
            from,
            to,
            version,
            props,
        })
    };
    let account = |id: &str| VertexRef::new(VertexLabel::Account, id);
    match change {
        Change::Account(a) => vec![vertex(
            VertexLabel::Account,
            &a.id,
            props([
                ("name", str_value(&a.name)),
                ("kind", str_value(a.kind.as_str())),
                ("account_number", str_value(&a.account_number)),
            ]),
        )],
        Change::User(u) => {
            let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
            let mut out = vec![vertex(
                VertexLabel::User,
                &u.id,
                props([
                    ("display_name", str_value(&u.display_name)),
                    ("email", str_value(&u.email)),
                    ("roles", str_value(roles.join(" "))),
                ]),
            )];
            if let Some(account_id) = &u.account_id {
                let user = VertexRef::new(VertexLabel::User, &u.id);
                out.push(edge(
                    EdgeLabel::MemberOf,
                    u.id.clone(),
                    user,
                    account(account_id),
                    Props::new(),
                ));
            }
            out
        }
        Change::Instrument(i) => vec![
            vertex(
                VertexLabel::Instrument,
                &i.serial,
                props([("name", str_value(&i.name)), ("model", str_value(&i.model))]),
            ),
            edge(
                EdgeLabel::HeldBy,
                i.serial.clone(),
                VertexRef::new(VertexLabel::Instrument, &i.serial),
                account(&i.account_id),
                Props::new(),
            ),
        ],
        Change::Product(p) => vec![vertex(
            VertexLabel::Product,
            &p.sku,
            props([("name", str_value(&p.name)), ("category", str_value(&p.category))]),
        )],
        Change::Lot(l) => lot(l, version),
        Change::Shipment(s) => vec![shipment(s, version)],
        Change::LotUse(u) => vec![lot_use(u, version)],
        Change::Document(d) => document(d, version),
        Change::Alert(a) => vec![
            vertex(
                VertexLabel::Alert,
                &a.id,
                props([
                    ("serial", str_value(&a.serial)),
                    ("account_id", str_value(&a.account_id)),
                    ("severity", str_value(&a.severity)),
                    ("code", str_value(a.code.as_deref().unwrap_or(""))),
                    ("raised_at_ms", Value::Int(unix_ms(a.raised_at))),
                ]),
            ),
            edge(
                EdgeLabel::RaisedOn,
                a.id.clone(),
                VertexRef::new(VertexLabel::Alert, &a.id),
                VertexRef::new(VertexLabel::Instrument, &a.serial),
                Props::new(),
            ),
        ],
        Change::SignIn(s) => vec![vertex(
            VertexLabel::SignIn,
            &s.id,
            props([
                ("user_id", str_value(&s.user_id)),
                ("account_id", str_value(s.account_id.as_deref().unwrap_or(""))),
                ("signed_in_at_ms", Value::Int(unix_ms(s.signed_in_at))),
            ]),
        )],
    }
}

fn lot(l: &Lot, version: u128) -> Vec<Element> {
    let this = VertexRef::new(VertexLabel::Lot, &l.lot_number);
    vec![
        Element::Vertex(Vertex { vertex: this.clone(), version, props: lot_props(l) }),
        Element::Edge(Edge {
            id: format!("of:{}", l.lot_number),
            label: EdgeLabel::Of,
            from: this,
            to: VertexRef::new(VertexLabel::Product, &l.sku),
            version,
            props: Props::new(),
        }),
    ]
}

fn lot_props(l: &Lot) -> Props {
    let mut out = props([
        ("sku", str_value(&l.sku)),
        ("manufactured_on", str_value(&l.manufactured_on)),
        ("expires_on", str_value(&l.expires_on)),
        ("recalled", Value::Bool(l.recall.is_some())),
    ]);
    if let Some(recall) = &l.recall {
        out.insert("recalled_at_ms".into(), Value::Int(unix_ms(recall.recalled_at)));
        out.insert("recall_reason".into(), str_value(&recall.reason));
    }
    out
}

fn shipment(s: &Shipment, version: u128) -> Element {
    let from = match &s.from_account_id {
        Some(sender) => VertexRef::new(VertexLabel::Account, sender),
        None => VertexRef::new(VertexLabel::Lot, &s.lot_number),
    };
    Element::Edge(Edge {
        id: format!("shipped:{}", s.id),
        label: EdgeLabel::Shipped,
        from,
        to: VertexRef::new(VertexLabel::Account, &s.account_id),
        version,
        props: props([
            ("lot_number", str_value(&s.lot_number)),
            ("quantity", Value::Int(i64::from(s.quantity))),
            ("shipped_on", str_value(&s.shipped_on)),
        ]),
    })
}

fn lot_use(u: &LotUse, version: u128) -> Element {
    Element::Edge(Edge {
        id: format!("loaded:{}", u.id),
        label: EdgeLabel::Loaded,
        from: VertexRef::new(VertexLabel::Instrument, &u.serial),
        to: VertexRef::new(VertexLabel::Lot, &u.lot_number),
        version,
        props: props([
            ("loaded_at_ms", Value::Int(unix_ms(u.loaded_at))),
            ("account_id", str_value(&u.account_id)),
        ]),
    })
}

/// The lots a run file names (its `lot` or `lot_number` column), as the worker found them.
pub fn lots_named(document: &Document) -> Vec<String> {
    let lots = document.metadata.as_ref().and_then(|m| m.pointer("/csv/lots"));
    lots.and_then(serde_json::Value::as_array)
        .map(|lots| lots.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// When a run file's run ended: its last timestamp, else when it was uploaded.
fn run_end(document: &Document) -> OffsetDateTime {
    document
        .metadata
        .as_ref()
        .and_then(|m| m.pointer("/csv/last_timestamp"))
        .and_then(serde_json::Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or(document.created_at)
}

fn document(d: &Document, version: u128) -> Vec<Element> {
    let this = VertexRef::new(VertexLabel::Document, &d.id);
    let edge = |label: EdgeLabel, id: String, to: VertexRef| {
        Element::Edge(Edge {
            id: format!("{}:{id}", label.as_str()),
            label,
            from: this.clone(),
            to,
            version,
            props: Props::new(),
        })
    };
    let mut out = vec![
        Element::Vertex(Vertex {
            vertex: this.clone(),
            version,
            props: props([
                ("filename", str_value(&d.filename)),
                ("status", str_value(d.status.as_str())),
                ("created_at_ms", Value::Int(unix_ms(d.created_at))),
                ("run_end_ms", Value::Int(unix_ms(run_end(d)))),
            ]),
        }),
        edge(EdgeLabel::OwnedBy, d.id.clone(), VertexRef::new(VertexLabel::Account, &d.account_id)),
    ];
    if let Some(serial) = &d.instrument_serial {
        out.push(edge(
            EdgeLabel::ProducedOn,
            d.id.clone(),
            VertexRef::new(VertexLabel::Instrument, serial),
        ));
    }
    for lot in lots_named(d) {
        out.push(edge(
            EdgeLabel::Names,
            format!("{}:{lot}", d.id),
            VertexRef::new(VertexLabel::Lot, &lot),
        ));
    }
    out
}
