//! The `GraphStore` port on Amazon Neptune, in Gremlin: [`NeptuneGraph`] writes and reads the
//! graph through a [`GremlinServer`] ([`NeptuneData`]: `ExecuteGremlinQuery` of
//! `aws-sdk-neptunedata`, SigV4-signed, untyped GraphSON 3). Every query is made by the typed
//! builder in `gremlin.rs`.
//!
//! The model is the one `portico_core::graph` describes, element for element: vertex ids
//! `<label>:<key>`, edge ids from their records, a `version` property (fixed-width decimal text,
//! so `P.gte` compares it) guarding every upsert, bare vertices for edges that come first, and one
//! `portico:graph` vertex holding the newest change's time.

pub mod gremlin;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use portico_core::domain::{Role, from_unix_ms, unix_ms};
use portico_core::graph::{
    Batch, Edge, EdgeLabel, Element, GraphStore, MAX_CHAIN, Props, Trace, TracedAccount,
    TracedDocument, TracedInstrument, TracedUser, Value as PropValue, Vertex, VertexLabel,
    VertexRef,
};
use portico_core::{Error, Result};
use serde_json::Value;
use time::OffsetDateTime;

use gremlin::{Arg, Traversal};

/// Where Gremlin queries are run: Neptune, or (in the tests) an embedded engine.
#[async_trait]
pub trait GremlinServer: Send + Sync + 'static {
    /// Runs `query` and answers its results (the list a `toList()` gives), as untyped JSON.
    async fn submit(&self, query: &Traversal) -> Result<Vec<Value>>;
}

/// Elements per write request: small enough for Neptune's request limits, large enough that a
/// projector batch of 500 changes takes a handful of requests.
const ELEMENTS_PER_QUERY: usize = 40;
/// The vertex that holds the graph's own state.
const STATE: &str = "portico:graph";

pub struct NeptuneGraph<S> {
    server: S,
}

impl<S: GremlinServer> NeptuneGraph<S> {
    pub fn new(server: S) -> Self {
        NeptuneGraph { server }
    }
}

fn version(version: u128) -> Arg {
    Arg::Str(format!("{version:039}"))
}

fn prop(value: &PropValue) -> Arg {
    match value {
        PropValue::Bool(b) => Arg::Bool(*b),
        PropValue::Int(n) => Arg::Int(*n),
        PropValue::Str(s) => Arg::Str(s.clone()),
    }
}

fn anon() -> Traversal {
    Traversal::anon()
}

/// `__.V(id).fold().coalesce(__.unfold(), __.addV(label).property(T.id, id)…)`: the vertex, made
/// bare (version 0) if it is missing.
fn vertex_or_bare(vertex: &VertexRef) -> Traversal {
    let id = vertex.id();
    let make = anon()
        .step("addV", &[vertex.label.as_str().into()])
        .step("property", &[Arg::Id, Arg::str(&id)])
        .single("version", version(0));
    anon().v(&[id]).then("fold").step("coalesce", &[anon().then("unfold").into(), make.into()])
}

/// The property that holds an element whole, as the warehouse's JSON (`Element`): Neptune
/// Streams then carry every version of every element as one record, which the `stream-poller`
/// forwards as it is (the other properties are what queries read).
pub const ELEMENT_PROPERTY: &str = "element";

/// Sets `props`, the version and the whole element unless the element already has this version
/// or a newer one.
fn guarded(current: Traversal, at: u128, props: &Props, whole: String, vertex: bool) -> Traversal {
    let mut set = anon();
    set = if vertex {
        set.single("version", version(at))
    } else {
        set.step("property", &["version".into(), version(at)])
    };
    for (name, value) in props {
        set = if vertex {
            set.single(name, prop(value))
        } else {
            set.step("property", &[Arg::str(name), prop(value)])
        };
    }
    set = if vertex {
        set.single(ELEMENT_PROPERTY, Arg::Str(whole))
    } else {
        set.step("property", &[ELEMENT_PROPERTY.into(), Arg::Str(whole)])
    };
    let newer = anon().step("has", &["version".into(), Arg::Gte(Box::new(version(at)))]);
    current.step("coalesce", &[newer.into(), set.into()])
}

/// The element as the warehouse's JSON (a serialization of plain data cannot fail).
fn whole(element: &Element) -> String {
    serde_json::to_string(element).unwrap_or_default()
}

fn upsert_vertex(v: &Vertex) -> Traversal {
    let text = whole(&Element::Vertex(v.clone()));
    guarded(vertex_or_bare(&v.vertex), v.version, &v.props, text, true)
}

fn upsert_edge(e: &Edge) -> Vec<Traversal> {
    let make = anon()
        .v(&[e.from.id()])
        .step("addE", &[e.label.as_str().into()])
        .step("to", &[anon().v(&[e.to.id()]).into()])
        .step("property", &[Arg::Id, Arg::str(&e.id)])
        .step("property", &["version".into(), version(0)]);
    let edge = anon()
        .step("E", &[Arg::str(&e.id)])
        .then("fold")
        .step("coalesce", &[anon().then("unfold").into(), make.into()]);
    let text = whole(&Element::Edge(e.clone()));
    vec![
        vertex_or_bare(&e.from),
        vertex_or_bare(&e.to),
        guarded(edge, e.version, &e.props, text, false),
    ]
}

fn newest(ms: i64) -> Traversal {
    let make = anon()
        .step("addV", &["graph_state".into()])
        .step("property", &[Arg::Id, STATE.into()])
        .single("newest_ms", Arg::Int(0));
    let state = anon()
        .v(&[STATE.to_string()])
        .then("fold")
        .step("coalesce", &[anon().then("unfold").into(), make.into()]);
    let newer = anon().step("has", &["newest_ms".into(), Arg::Gte(Box::new(Arg::Int(ms)))]);
    state.step("coalesce", &[newer.into(), anon().single("newest_ms", Arg::Int(ms)).into()])
}

/// `g.inject(0).sideEffect(…)…toList()`: the writes of one request, in order.
fn writes(parts: Vec<Traversal>) -> Traversal {
    let mut query = Traversal::g().step("inject", &[Arg::Int(0)]);
    for part in parts {
        query = query.step("sideEffect", &[part.into()]);
    }
    query.then("toList")
}

/// `__.values(name).fold()`: the property as a list of zero or one value (bare vertices have none).
fn maybe(name: &str) -> Traversal {
    anon().step("values", &[name.into()]).then("fold")
}

/// `__.out(label).id().fold()`: where the vertex's `label` edges lead (zero or one, here).
fn out_ids(label: EdgeLabel) -> Traversal {
    anon().step("out", &[label.as_str().into()]).then("id").then("fold")
}

fn unexpected(what: &str, value: &Value) -> Error {
    Error::Unexpected(anyhow::anyhow!("Neptune answered {what} in an unexpected shape: {value}"))
}

fn field<'a>(row: &'a Value, name: &str) -> &'a Value {
    row.get(name).unwrap_or(&Value::Null)
}

/// The first value of a `maybe` list.
fn first(row: &Value, name: &str) -> Option<Value> {
    match field(row, name) {
        Value::Array(values) => values.first().cloned(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn first_text(row: &Value, name: &str) -> String {
    first(row, name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn first_int(row: &Value, name: &str) -> Option<i64> {
    first(row, name).and_then(|v| v.as_i64())
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn key_of(vertex_id: &str) -> String {
    vertex_id.split_once(':').map_or(vertex_id, |(_, key)| key).to_string()
}

fn from_ms(ms: i64) -> Result<OffsetDateTime> {
    from_unix_ms(ms)
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("a graph time is out of range: {ms}")))
}

/// Ids per `V(…)` call, and `V` calls per `union(…)`: the dialect's common ground (Neptune takes
/// any number; the test engine, like TinkerPop's DSLs for some languages, up to 10 arguments).
const IDS_PER_CALL: usize = 10;

/// The vertices `ids` (at most `IDS_PER_CALL` squared): `g.V(ids)`, or
/// `g.inject(0).union(__.V(first ten), __.V(next ten), …)`.
fn vertices(ids: &[String]) -> Traversal {
    if ids.len() <= IDS_PER_CALL {
        return Traversal::g().v(ids);
    }
    let parts: Vec<Arg> = ids.chunks(IDS_PER_CALL).map(|chunk| anon().v(chunk).into()).collect();
    Traversal::g().step("inject", &[Arg::Int(0)]).step("union", &parts)
}

impl<S: GremlinServer> NeptuneGraph<S> {
    /// The rows `then` makes of the vertices `ids`, a hundred per request; none for no ids
    /// (`g.V()` would be every vertex).
    async fn rows(
        &self,
        ids: &[String],
        then: impl Fn(Traversal) -> Traversal,
    ) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL * IDS_PER_CALL) {
            rows.extend(self.server.submit(&then(vertices(chunk)).then("toList")).await?);
        }
        Ok(rows)
    }
}

#[async_trait]
impl<S: GremlinServer> GraphStore for NeptuneGraph<S> {
    async fn upsert(&self, batch: &Batch) -> Result<()> {
        let mut parts: Vec<Traversal> = Vec::new();
        for element in &batch.elements {
            match element {
                Element::Vertex(v) => parts.push(upsert_vertex(v)),
                Element::Edge(e) => parts.extend(upsert_edge(e)),
            }
        }
        if let Some(at) = batch.newest {
            parts.push(newest(unix_ms(at)));
        }
        let mut parts = parts.into_iter().peekable();
        while parts.peek().is_some() {
            let chunk: Vec<Traversal> = parts.by_ref().take(ELEMENTS_PER_QUERY).collect();
            self.server.submit(&writes(chunk)).await?;
        }
        Ok(())
    }

    async fn trace(&self, lot_number: &str) -> Result<Trace> {
        let lot = VertexRef::new(VertexLabel::Lot, lot_number).id();
        // Every account the lot reached, with each path (vertex and edge ids alternate; the
        // accounts are every second one after the lot).
        let hop = anon()
            .step("outE", &[EdgeLabel::Shipped.as_str().into()])
            .step("has", &["lot_number".into(), Arg::str(lot_number)])
            .then("inV")
            .then("simplePath");
        let reach = Traversal::g()
            .v(std::slice::from_ref(&lot))
            .step("repeat", &[hop.into()])
            .then("emit")
            .step("times", &[Arg::Int(MAX_CHAIN as i64)])
            .step("map", &[anon().then("path").by(Arg::Id).then("unfold").then("fold").into()])
            .then("toList");
        let mut paths: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
        for path in self.server.submit(&reach).await? {
            let ids: Vec<String> = path
                .as_array()
                .ok_or_else(|| unexpected("a path", &path))?
                .iter()
                .filter_map(text)
                .collect();
            let accounts: Vec<String> = ids.iter().skip(2).step_by(2).cloned().collect();
            if let Some(account) = accounts.last() {
                let keys = accounts.iter().map(|a| key_of(a)).collect();
                paths.entry(account.clone()).or_default().insert(keys);
            }
        }

        let loaded = Traversal::g()
            .v(std::slice::from_ref(&lot))
            .step("inE", &[EdgeLabel::Loaded.as_str().into()])
            .step("project", &["instrument".into(), "at".into()])
            .by(anon().then("outV").then("id"))
            .by(maybe("loaded_at_ms"))
            .then("toList");
        let mut loads: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in self.server.submit(&loaded).await? {
            let instrument =
                text(field(&row, "instrument")).ok_or_else(|| unexpected("a lot use", &row))?;
            let Some(at) = first_int(&row, "at") else { continue };
            let entry = loads.entry(instrument).or_insert((at, at));
            entry.0 = entry.0.min(at);
            entry.1 = entry.1.max(at);
        }
        let instrument_ids: Vec<String> = loads.keys().cloned().collect();
        let project = |t: Traversal| {
            t.step("project", &["id".into(), "name".into(), "account".into()])
                .by(Arg::Id)
                .by(maybe("name"))
                .by(out_ids(EdgeLabel::HeldBy))
        };
        let mut instruments = Vec::new();
        for row in self.rows(&instrument_ids, project).await? {
            let id = text(field(&row, "id")).ok_or_else(|| unexpected("an instrument", &row))?;
            let Some(account) = first(&row, "account").as_ref().and_then(text) else { continue };
            let (first_at, last_at) = loads.get(&id).copied().unwrap_or_default();
            paths.entry(account.clone()).or_default();
            instruments.push(TracedInstrument {
                serial: key_of(&id),
                name: first_text(&row, "name"),
                account_id: key_of(&account),
                first_loaded_at: from_ms(first_at)?,
                last_loaded_at: from_ms(last_at)?,
            });
        }

        // Candidate run files: those that name the lot, and those produced on a loading
        // instrument (kept if their run ended at or after its first load).
        let named = Traversal::g()
            .v(std::slice::from_ref(&lot))
            .step("in", &[EdgeLabel::Names.as_str().into()])
            .then("id")
            .then("toList");
        let mut candidates: BTreeMap<String, bool> = BTreeMap::new();
        for id in self.server.submit(&named).await? {
            candidates.insert(text(&id).ok_or_else(|| unexpected("a document id", &id))?, true);
        }
        let produced =
            |t: Traversal| t.step("in", &[EdgeLabel::ProducedOn.as_str().into()]).then("id");
        for id in self.rows(&instrument_ids, produced).await? {
            candidates
                .entry(text(&id).ok_or_else(|| unexpected("a document id", &id))?)
                .or_insert(false);
        }
        let document_ids: Vec<String> = candidates.keys().cloned().collect();
        let project = |t: Traversal| {
            t.step(
                "project",
                &[
                    "id".into(),
                    "filename".into(),
                    "status".into(),
                    "created_at_ms".into(),
                    "run_end_ms".into(),
                    "account".into(),
                    "instrument".into(),
                ],
            )
            .by(Arg::Id)
            .by(maybe("filename"))
            .by(maybe("status"))
            .by(maybe("created_at_ms"))
            .by(maybe("run_end_ms"))
            .by(out_ids(EdgeLabel::OwnedBy))
            .by(out_ids(EdgeLabel::ProducedOn))
        };
        let mut documents = Vec::new();
        for row in self.rows(&document_ids, project).await? {
            let id = text(field(&row, "id")).ok_or_else(|| unexpected("a document", &row))?;
            let names_lot = candidates.get(&id).copied().unwrap_or(false);
            let instrument = first(&row, "instrument").as_ref().and_then(text);
            if !names_lot {
                let run_end = first_int(&row, "run_end_ms").unwrap_or(i64::MIN);
                let since = instrument.as_ref().and_then(|i| loads.get(i)).map(|(f, _)| *f);
                if since.is_none_or(|first_load| run_end < first_load) {
                    continue;
                }
            }
            if first_text(&row, "status") != "ready" {
                continue;
            }
            let Some(account) = first(&row, "account").as_ref().and_then(text) else { continue };
            paths.entry(account.clone()).or_default();
            documents.push(TracedDocument {
                document_id: key_of(&id),
                account_id: key_of(&account),
                filename: first_text(&row, "filename"),
                instrument_serial: instrument.map(|i| key_of(&i)),
                names_lot,
                created_at: from_ms(first_int(&row, "created_at_ms").unwrap_or(0))?,
            });
        }

        let account_ids: Vec<String> = paths.keys().cloned().collect();
        let member = anon()
            .step("in", &[EdgeLabel::MemberOf.as_str().into()])
            .step("project", &["id".into(), "display_name".into(), "email".into(), "roles".into()])
            .by(Arg::Id)
            .by(maybe("display_name"))
            .by(maybe("email"))
            .by(maybe("roles"))
            .then("fold");
        let project = |t: Traversal| {
            t.step("project", &["id".into(), "name".into(), "kind".into(), "members".into()])
                .by(Arg::Id)
                .by(maybe("name"))
                .by(maybe("kind"))
                .by(member.clone())
        };
        let mut accounts = Vec::new();
        let mut members = Vec::new();
        for row in self.rows(&account_ids, project).await? {
            let id = text(field(&row, "id")).ok_or_else(|| unexpected("an account", &row))?;
            let account_id = key_of(&id);
            for user in field(&row, "members").as_array().into_iter().flatten() {
                let user_id =
                    text(field(user, "id")).ok_or_else(|| unexpected("a member", user))?;
                members.push(TracedUser {
                    user_id: key_of(&user_id),
                    account_id: account_id.clone(),
                    display_name: first_text(user, "display_name"),
                    email: first_text(user, "email"),
                    roles: first_text(user, "roles").split(' ').filter_map(Role::parse).collect(),
                });
            }
            accounts.push(TracedAccount {
                account_id,
                name: first_text(&row, "name"),
                kind: first_text(&row, "kind"),
                paths: paths
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect(),
            });
        }
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        instruments.sort_by(|a, b| a.serial.cmp(&b.serial));
        documents.sort_by(|a, b| a.document_id.cmp(&b.document_id));
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));

        let state = Traversal::g()
            .v(&[STATE.to_string()])
            .step("values", &["newest_ms".into()])
            .then("toList");
        let as_of = self
            .server
            .submit(&state)
            .await?
            .first()
            .and_then(Value::as_i64)
            .map(from_ms)
            .transpose()?;
        Ok(Trace { accounts, instruments, documents, members, as_of })
    }

    async fn clear(&self) -> Result<()> {
        self.server.submit(&Traversal::g().then("V").then("drop").then("toList")).await?;
        Ok(())
    }
}

/// Neptune's data API: `ExecuteGremlinQuery` (`POST /gremlin`), signed by the SDK, answering
/// untyped GraphSON 3 (plain JSON lists, maps and scalars).
pub struct NeptuneData {
    client: aws_sdk_neptunedata::Client,
}

/// Untyped GraphSON 3, the serializer AWS's own SDK examples ask for.
const SERIALIZER: &str = "application/vnd.gremlin-v3.0+json;types=false";

impl NeptuneData {
    /// The cluster's endpoint, e.g. `https://my-cluster.cluster-xyz.eu-central-1.neptune.amazonaws.com:8182`.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> NeptuneData {
        let config = aws_sdk_neptunedata::config::Builder::from(sdk).endpoint_url(endpoint).build();
        NeptuneData { client: aws_sdk_neptunedata::Client::from_conf(config) }
    }
}

#[async_trait]
impl GremlinServer for NeptuneData {
    async fn submit(&self, query: &Traversal) -> Result<Vec<Value>> {
        let output = self
            .client
            .execute_gremlin_query()
            .gremlin_query(query.text())
            .serializer(SERIALIZER)
            .send()
            .await
            .map_err(|e| crate::error::sdk_error("running a Gremlin query", e))?;
        results(output.result().map(json).unwrap_or(Value::Null))
    }
}

/// The result list of a Gremlin answer: `{"data": [...]}` (a typed `g:List` is unwrapped too).
pub fn results(result: Value) -> Result<Vec<Value>> {
    let data = match result {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        other => other,
    };
    match data {
        Value::Array(items) => Ok(items),
        Value::Object(mut typed) => match typed.remove("@value") {
            Some(Value::Array(items)) => Ok(items),
            other => Err(unexpected("a result", &other.unwrap_or(Value::Null))),
        },
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![other]),
    }
}

/// An SDK document as JSON.
fn json(document: &aws_smithy_types::Document) -> Value {
    use aws_smithy_types::{Document, Number};
    match document {
        Document::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
        Document::Array(items) => Value::Array(items.iter().map(json).collect()),
        Document::Number(Number::PosInt(n)) => Value::from(*n),
        Document::Number(Number::NegInt(n)) => Value::from(*n),
        Document::Number(Number::Float(f)) => Value::from(*f),
        Document::String(s) => Value::String(s.clone()),
        Document::Bool(b) => Value::Bool(*b),
        Document::Null => Value::Null,
    }
}
