//! The Neptune adapter's Gremlin without Neptune: every query it writes is parsed with TinkerPop's
//! own grammar (`gremlin-rs`) and run on an embedded engine that takes the same dialect
//! (`graphersal`). On that engine the adapter must keep the graph contract the SQLite adapter
//! keeps, on the same fixture history, and give the same traces.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use graphersal::prelude::{Graph, GraphSource};
use graphersal::script::rhai::Dynamic;
use portico_aws::neptune::gremlin::{Arg, Traversal, quote};
use portico_aws::neptune::{GremlinServer, NeptuneGraph};
use portico_core::GraphStore;
use portico_core::domain::{Account, AccountKind, Role, Shipment, User};
use portico_core::graph::{Change, ChangeRecord, batch};
use serde_json::Value;

/// An in-memory Gremlin engine that first checks each query against TinkerPop's grammar.
#[derive(Clone)]
struct Engine {
    graph: Arc<Graph>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl Engine {
    fn new() -> Engine {
        Engine { graph: Arc::new(GraphSource::empty()), queries: Arc::default() }
    }
}

/// A script value as the untyped JSON Neptune would answer.
fn json(value: Dynamic) -> Value {
    if value.is_unit() {
        return Value::Null;
    }
    if let Ok(b) = value.as_bool() {
        return Value::Bool(b);
    }
    if let Ok(n) = value.as_int() {
        return Value::from(n);
    }
    if let Ok(f) = value.as_float() {
        return Value::from(f);
    }
    if value.is_string() {
        return Value::String(value.into_string().unwrap_or_default());
    }
    if value.is_array() {
        let items = value.into_array().unwrap_or_default();
        return Value::Array(items.into_iter().map(json).collect());
    }
    if value.is_map() {
        let map = value.cast::<graphersal::script::rhai::Map>();
        return Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), json(v))).collect());
    }
    Value::String(value.to_string())
}

#[async_trait]
impl GremlinServer for Engine {
    async fn submit(&self, query: &Traversal) -> portico_core::Result<Vec<Value>> {
        let text = query.text().to_string();
        if let Err(e) = gremlin_rs::parse_query(&text) {
            panic!("TinkerPop's grammar refuses {text}: {e:?}");
        }
        self.queries.lock().unwrap().push(text.clone());
        let value = graphersal::script::eval_value(self.graph.clone(), &text)
            .unwrap_or_else(|e| panic!("the engine refuses {text}: {e}"));
        portico_aws::neptune::results(json(value))
    }
}

#[tokio::test]
async fn the_gremlin_adapter_keeps_the_graph_contract_on_the_fixture() {
    portico_contract::graph::projection_is_idempotent_and_order_free(|| async {
        NeptuneGraph::new(Engine::new())
    })
    .await;
}

#[tokio::test]
async fn gremlin_and_sqlite_give_the_same_answers_lot_by_lot() {
    let history = portico_contract::graph::history();
    let dir = tempfile::tempdir().unwrap();
    let db = portico_sqlite::Database::open(&dir.path().join("graph.db")).unwrap();
    let sqlite = portico_sqlite::SqliteGraph::new(db);
    let gremlin = NeptuneGraph::new(Engine::new());
    for graph in [&sqlite as &dyn GraphStore, &gremlin] {
        graph.upsert(&batch(&history)).await.unwrap();
    }
    for lot in ["L1", "L2", "L-unknown"] {
        assert_eq!(gremlin.trace(lot).await.unwrap(), sqlite.trace(lot).await.unwrap(), "{lot}");
    }
}

/// Text that would end the literal, add a step or a statement, or read as Groovy, were it
/// spliced into a query.
const HOSTILE: &[&str] = &[
    r#"x"), g.V().drop(), ("#,
    r#"\"); g.V().drop(); //"#,
    "back\\slash\\",
    "')",
    "${7*7} #{x} `id`",
    "new File('/etc/passwd').text",
    "line\nbreak\r\ttab",
    "nul\u{0} esc\u{1b} sep\u{2028}",
    "Größe 日本語 🧪",
    "\"",
    "",
];

#[tokio::test]
async fn every_literal_is_escaped_and_comes_back_as_it_went_in() {
    for text in HOSTILE {
        let quoted = quote(text);
        let query = Traversal::g().step("inject", &[Arg::str(*text)]).then("toList");
        assert_eq!(query.text(), format!("g.inject({quoted}).toList()"));
        let engine = Engine::new();
        let answer = engine.submit(&query).await.unwrap();
        assert_eq!(answer, vec![Value::String(text.to_string())], "{quoted}");
    }

    // Through the adapter: hostile names, ids and lot numbers in every element it writes.
    let engine = Engine::new();
    let graph = NeptuneGraph::new(engine.clone());
    let at = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    let mut changes = Vec::new();
    for (n, text) in HOSTILE.iter().enumerate() {
        let account = format!("acc-{n}-{text}");
        changes.push(Change::Account(Account {
            id: account.clone(),
            account_number: n.to_string(),
            name: text.to_string(),
            kind: AccountKind::Customer,
            region: "eu-central-1".into(),
            created_at: at,
        }));
        changes.push(Change::User(User {
            id: format!("u-{n}-{text}"),
            sub: format!("s-{n}"),
            email: format!("{text}@example.com"),
            display_name: text.to_string(),
            account_id: Some(account.clone()),
            roles: vec![Role::LabManager],
            created_at: at,
        }));
        changes.push(Change::Shipment(Shipment {
            id: format!("s-{n}-{text}"),
            lot_number: "L-\"1\")".into(),
            from_account_id: None,
            account_id: account,
            shipped_on: text.to_string(),
            quantity: 1,
            created_at: at,
        }));
    }
    let records: Vec<ChangeRecord> = changes
        .into_iter()
        .enumerate()
        .map(|(n, change)| ChangeRecord { version: n as u128 + 1, at, change })
        .collect();
    graph.upsert(&batch(&records)).await.unwrap();
    let trace = graph.trace("L-\"1\")").await.unwrap();
    assert_eq!(trace.accounts.len(), HOSTILE.len());
    for (n, text) in HOSTILE.iter().enumerate() {
        let id = format!("acc-{n}-{text}");
        let account = trace.accounts.iter().find(|a| a.account_id == id).expect("account traced");
        assert_eq!(account.name, *text);
        assert_eq!(account.paths, vec![vec![id.clone()]]);
        let member = trace.members.iter().find(|m| m.account_id == id).expect("member traced");
        assert_eq!(member.display_name, *text);
        assert_eq!(member.email, format!("{text}@example.com"));
    }
    // And nothing was dropped or added on the way: the vertices are exactly those written.
    let count = Traversal::g().then("V").then("count").then("toList");
    let vertices = engine.submit(&count).await.unwrap();
    // Accounts, users, the lot and the graph's state vertex.
    assert_eq!(vertices, vec![Value::from(2 * HOSTILE.len() as i64 + 2)]);
    let queries = engine.queries.lock().unwrap().len();
    assert!(queries > 3, "{queries}");
}
