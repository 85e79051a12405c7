//! A loopback stand-in for OpenSearch (none can be installed here): `_bulk` (NDJSON in, per-item
//! results out, `create` answering 409 for an id already there), `_index_template`, and `_search`
//! for the query DSL Portico sends (bool, term, terms, prefix, wildcard, range, exists,
//! multi_match, match_all; sort, search_after, size, highlight). Answers can be scripted: a
//! status for the whole request, a slow answer, per-item statuses; and the stand-in can be down
//! (503) or gone (connection refused) for a while.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// What the stand-in answers to the next `_bulk` request.
#[derive(Clone, Debug)]
pub enum Script {
    /// This status for the whole request.
    Request(u16),
    /// The normal answer, this late.
    Slow(Duration),
    /// These statuses for these document ids (a 400 comes with a mapping error's reason).
    Items(BTreeMap<String, u16>),
}

#[derive(Default)]
struct Cluster {
    docs: BTreeMap<(String, String), Value>,
    script: VecDeque<Script>,
    bulk_requests: usize,
    auth: Vec<Option<String>>,
    templates: BTreeMap<String, Value>,
    down_until: Option<Instant>,
    /// Ids refused (400) whenever they come.
    refuse_suffix: Option<String>,
    /// Accept a bulk request's documents, then never answer it.
    swallow: bool,
    /// Only count documents (for benchmarks: a cluster that keeps up).
    count_only: bool,
    created: usize,
}

type Shared = Arc<Mutex<Cluster>>;

/// The stand-in, serving on 127.0.0.1 until dropped.
pub struct OpenSearchStandIn {
    pub url: String,
    addr: SocketAddr,
    cluster: Shared,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock(cluster: &Shared) -> std::sync::MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OpenSearchStandIn {
    pub async fn start() -> OpenSearchStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let cluster = Shared::default();
        let server = serve(listener, cluster.clone());
        OpenSearchStandIn {
            url: format!("http://{addr}"),
            addr,
            cluster,
            server: Mutex::new(Some(server)),
        }
    }

    /// A stand-in that only counts what it is sent and creates every document (for throughput
    /// benchmarks; it keeps nothing, so it does not run out of memory).
    pub async fn counting() -> OpenSearchStandIn {
        let stand_in = OpenSearchStandIn::start().await;
        lock(&stand_in.cluster).count_only = true;
        stand_in
    }

    /// Documents created so far.
    pub fn created(&self) -> usize {
        lock(&self.cluster).created
    }

    /// Queues answers for the next `_bulk` requests.
    pub fn script(&self, scripts: impl IntoIterator<Item = Script>) {
        lock(&self.cluster).script.extend(scripts);
    }

    /// Refuses (400, a mapping error) every document whose id ends with `suffix`.
    pub fn refuse_ids_ending_with(&self, suffix: &str) {
        lock(&self.cluster).refuse_suffix = Some(suffix.to_string());
    }

    /// Answers 503 to everything for `how_long`.
    pub fn unavailable_for(&self, how_long: Duration) {
        lock(&self.cluster).down_until = Some(Instant::now() + how_long);
    }

    /// Keeps the documents of bulk requests but never answers them (a crash of the cluster's
    /// reply path: the sender cannot know they are in).
    pub fn swallow_answers(&self, swallow: bool) {
        lock(&self.cluster).swallow = swallow;
    }

    /// Stops listening: connections are refused until `resume`.
    pub fn go_away(&self) {
        if let Some(server) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            server.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn resume(&self) {
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("binding the stand-in's address again");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(serve(listener, self.cluster.clone()));
    }

    /// The stored documents by (index, id).
    pub fn docs(&self) -> BTreeMap<(String, String), Value> {
        lock(&self.cluster).docs.clone()
    }

    /// `_bulk` requests received.
    pub fn bulk_requests(&self) -> usize {
        lock(&self.cluster).bulk_requests
    }

    /// The `authorization` header of each `_bulk` request.
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        lock(&self.cluster).auth.clone()
    }

    /// Installed index templates by name.
    pub fn templates(&self) -> BTreeMap<String, Value> {
        lock(&self.cluster).templates.clone()
    }
}

impl Drop for OpenSearchStandIn {
    fn drop(&mut self) {
        self.go_away();
    }
}

fn serve(listener: tokio::net::TcpListener, cluster: Shared) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/_bulk", axum::routing::post(bulk))
        .route("/_index_template/{name}", axum::routing::put(template))
        .route("/{index}/_search", axum::routing::post(search))
        .with_state(cluster);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn down(cluster: &Shared) -> bool {
    lock(cluster).down_until.is_some_and(|until| Instant::now() < until)
}

fn unavailable() -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "unavailable", "status": 503}).to_string())
}

async fn template(
    State(cluster): State<Shared>,
    Path(name): Path<String>,
    body: String,
) -> impl IntoResponse {
    if down(&cluster) {
        return unavailable();
    }
    match serde_json::from_str::<Value>(&body) {
        Ok(template) => {
            lock(&cluster).templates.insert(name, template);
            (StatusCode::OK, json!({"acknowledged": true}).to_string())
        }
        Err(e) => (StatusCode::BAD_REQUEST, json!({"error": e.to_string()}).to_string()),
    }
}

async fn bulk(
    State(cluster): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    if down(&cluster) {
        return unavailable();
    }
    let next = {
        let mut c = lock(&cluster);
        c.bulk_requests += 1;
        c.auth.push(headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string));
        c.script.pop_front()
    };
    let mut forced = BTreeMap::new();
    match next {
        Some(Script::Request(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, json!({"error": "scripted"}).to_string());
        }
        Some(Script::Slow(wait)) => tokio::time::sleep(wait).await,
        Some(Script::Items(items)) => forced = items,
        None => {}
    }
    if !body.ends_with('\n') {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "The bulk request must be terminated by a newline [\\n]"}).to_string(),
        );
    }
    let lines: Vec<&str> = body.lines().collect();
    let mut items = Vec::new();
    let swallow;
    {
        let mut c = lock(&cluster);
        swallow = c.swallow;
        for pair in lines.chunks(2) {
            let (Ok(action), Some(Ok(source))) = (
                serde_json::from_str::<Value>(pair[0]),
                pair.get(1).map(|s| serde_json::from_str::<Value>(s)),
            ) else {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "malformed bulk body"}).to_string(),
                );
            };
            let index = action["create"]["_index"].as_str().unwrap_or_default().to_string();
            let id = action["create"]["_id"].as_str().unwrap_or_default().to_string();
            let refused = c.refuse_suffix.as_ref().is_some_and(|s| id.ends_with(s.as_str()));
            let status = match forced.get(&id) {
                _ if refused => 400,
                None if c.count_only => 201,
                Some(&status) => status,
                None if c.docs.contains_key(&(index.clone(), id.clone())) => 409,
                None => {
                    c.docs.insert((index.clone(), id.clone()), source);
                    201
                }
            };
            if status == 201 {
                c.created += 1;
            }
            let mut item = json!({"_index": index, "_id": id, "status": status});
            if status == 400 {
                item["error"] = json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [status]"});
            } else if status == 409 {
                item["error"] = json!({"type": "version_conflict_engine_exception", "reason": "document already exists"});
            }
            items.push(json!({"create": item}));
        }
    }
    if swallow {
        // The documents are in; the answer never comes.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let errors = items.iter().any(|i| i["create"]["status"].as_u64() != Some(201));
    (StatusCode::OK, json!({"took": 1, "errors": errors, "items": items}).to_string())
}

/// A document's field, by dotted name.
fn field<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get(name).filter(|v| !v.is_null())
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn equals(value: &Value, wanted: &Value) -> bool {
    match (value, wanted) {
        (Value::Number(a), b) => {
            let b = b.as_f64().or_else(|| b.as_str().and_then(|s| s.parse().ok()));
            a.as_f64().is_some_and(|a| Some(a) == b)
        }
        (a, b) => text_of(a).is_some() && text_of(a) == text_of(b),
    }
}

/// `*` and `?` over a whole string.
fn wildcard(pattern: &[char], text: &[char]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            wildcard(&pattern[1..], text) || (!text.is_empty() && wildcard(pattern, &text[1..]))
        }
        (Some('?'), Some(_)) => wildcard(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => wildcard(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn millis(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as f64)
        }
        _ => None,
    }
}

/// Whether `doc` matches `query`, with the index template's semantics: `message` is text (words,
/// any case), every other string a keyword (whole, exact).
fn matches(query: &Value, doc: &Value) -> bool {
    let Some((kind, body)) = query.as_object().and_then(|o| o.iter().next()) else { return false };
    let single = || body.as_object().and_then(|o| o.iter().next());
    let value_of = |spec: &Value| spec.get("value").cloned().unwrap_or_else(|| spec.clone());
    match kind.as_str() {
        "match_all" => true,
        "bool" => {
            let all = |key: &str| body[key].as_array().cloned().unwrap_or_default();
            let required = all("filter").into_iter().chain(all("must")).all(|q| matches(&q, doc));
            let excluded = all("must_not").iter().any(|q| matches(q, doc));
            let should = all("should");
            let optional = should.is_empty() || should.iter().any(|q| matches(q, doc));
            required && !excluded && optional
        }
        "term" => single()
            .is_some_and(|(f, spec)| field(doc, f).is_some_and(|v| equals(v, &value_of(spec)))),
        "terms" => single().is_some_and(|(f, values)| {
            field(doc, f).is_some_and(|v| {
                values.as_array().is_some_and(|vs| vs.iter().any(|w| equals(v, w)))
            })
        }),
        "prefix" => single().is_some_and(|(f, spec)| {
            let p = value_of(spec).as_str().unwrap_or_default().to_string();
            field(doc, f).and_then(text_of).is_some_and(|v| v.starts_with(&p))
        }),
        "wildcard" => single().is_some_and(|(f, spec)| {
            let pattern = value_of(spec).as_str().unwrap_or_default().to_string();
            let fold = spec["case_insensitive"].as_bool().unwrap_or(false) || f == "message";
            let pattern: Vec<char> =
                if fold { pattern.to_lowercase() } else { pattern }.chars().collect();
            let Some(v) = field(doc, f).and_then(text_of) else { return false };
            let v = if fold { v.to_lowercase() } else { v };
            if f == "message" {
                v.split(|c: char| !c.is_alphanumeric() && !"-_.".contains(c))
                    .any(|w| wildcard(&pattern, &w.chars().collect::<Vec<_>>()))
            } else {
                wildcard(&pattern, &v.chars().collect::<Vec<_>>())
            }
        }),
        "range" => single().is_some_and(|(f, spec)| {
            let Some(v) = field(doc, f) else { return false };
            let date = spec.get("format").is_some() || f == "@timestamp";
            let number = |x: &Value| if date { millis(x) } else { x.as_f64() };
            ["gt", "gte", "lt", "lte"].iter().all(|op| {
                let Some(bound) = spec.get(*op) else { return true };
                let ordering = match (number(v), number(bound)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => text_of(v).zip(text_of(bound)).map(|(a, b)| a.cmp(&b)),
                };
                matches!(
                    (*op, ordering),
                    ("gt", Some(std::cmp::Ordering::Greater))
                        | ("gte", Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
                        | ("lt", Some(std::cmp::Ordering::Less))
                        | ("lte", Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal))
                )
            })
        }),
        "exists" => body["field"].as_str().is_some_and(|f| field(doc, f).is_some()),
        "multi_match" => {
            let wanted = body["query"].as_str().unwrap_or_default();
            let prefix = body["type"] == "phrase_prefix";
            let fields: Vec<String> = body["fields"]
                .as_array()
                .map(|fs| fs.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let names: Vec<String> = if fields.iter().any(|f| f == "*") {
                doc.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
            } else {
                fields
            };
            names.iter().any(|name| {
                let Some(Value::String(v)) = field(doc, name) else { return false };
                if name == "message" {
                    v.to_lowercase().contains(&wanted.to_lowercase())
                } else if prefix {
                    v.starts_with(wanted)
                } else {
                    v == wanted
                }
            })
        }
        _ => false,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The message with every free-text term of `highlight_query` marked, the rest escaped.
fn highlighted(message: &str, highlight: &Value) -> Option<String> {
    let terms: Vec<String> = highlight["highlight_query"]["bool"]["should"]
        .as_array()?
        .iter()
        .filter_map(|q| q["multi_match"]["query"].as_str().map(str::to_lowercase))
        .filter(|t| !t.is_empty())
        .collect();
    let lower = message.to_lowercase();
    let mut marks: Vec<(usize, usize)> = terms
        .iter()
        .flat_map(|t| {
            lower.match_indices(t.as_str()).map(|(at, m)| (at, at + m.len())).collect::<Vec<_>>()
        })
        .collect();
    if marks.is_empty() || lower.len() != message.len() {
        return None;
    }
    marks.sort();
    let (mut out, mut at) = (String::new(), 0);
    for (start, end) in marks {
        if start < at {
            continue;
        }
        out.push_str(&escape(&message[at..start]));
        out.push_str(&format!("<mark>{}</mark>", escape(&message[start..end])));
        at = end;
    }
    out.push_str(&escape(&message[at..]));
    Some(out)
}

async fn search(
    State(cluster): State<Shared>,
    Path(index): Path<String>,
    body: String,
) -> impl IntoResponse {
    if down(&cluster) {
        return unavailable();
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, json!({"error": "parsing_exception"}).to_string());
    };
    let prefix = index.trim_end_matches('*').to_string();
    let descending = request["sort"][0]["@timestamp"]["order"] == "desc";
    let key = |doc: &Value| {
        (
            millis(&doc["@timestamp"]).unwrap_or(0.0) as i64,
            doc["event_id"].as_str().unwrap_or_default().to_string(),
        )
    };
    let mut found: Vec<(String, Value)> = lock(&cluster)
        .docs
        .iter()
        .filter(|((i, _), doc)| i.starts_with(&prefix) && matches(&request["query"], doc))
        .map(|((_, id), doc)| (id.clone(), doc.clone()))
        .collect();
    found.sort_by_key(|(_, doc)| key(doc));
    if descending {
        found.reverse();
    }
    if let Some(after) = request["search_after"].as_array() {
        let at =
            (after[0].as_i64().unwrap_or(0), after[1].as_str().unwrap_or_default().to_string());
        found.retain(|(_, doc)| if descending { key(doc) < at } else { key(doc) > at });
    }
    found.truncate(request["size"].as_u64().unwrap_or(10) as usize);
    let hits: Vec<Value> = found
        .into_iter()
        .map(|(id, doc)| {
            let (ms, event) = key(&doc);
            let mut hit = json!({"_id": id, "_source": doc, "sort": [ms, event]});
            if let Some(marked) =
                doc["message"].as_str().and_then(|m| highlighted(m, &request["highlight"]))
            {
                hit["highlight"] = json!({"message": [marked]});
            }
            hit
        })
        .collect();
    (StatusCode::OK, json!({"took": 1, "timed_out": false, "hits": {"hits": hits}}).to_string())
}
