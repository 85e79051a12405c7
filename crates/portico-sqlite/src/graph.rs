//! The `GraphStore` port on SQLite: vertex and edge tables in the one database, traced with
//! recursive queries. Versions are stored as fixed-width decimal text, so SQL compares them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use async_trait::async_trait;
use portico_core::Result;
use portico_core::domain::{Role, from_unix_ms, unix_ms};
use portico_core::graph::{
    Batch, EdgeLabel, Element, GraphStore, MAX_CHAIN, Trace, TracedAccount, TracedDocument,
    TracedInstrument, TracedUser, VertexLabel, VertexRef,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::Database;
use crate::rows::corrupt;

/// The version of a vertex made bare, by an edge that arrived before the vertex's own record.
const BARE: u128 = 0;

#[derive(Clone)]
pub struct SqliteGraph {
    db: Database,
}

impl SqliteGraph {
    pub fn new(db: Database) -> Self {
        SqliteGraph { db }
    }
}

fn version_text(version: u128) -> String {
    format!("{version:039}")
}

fn props_text(props: &portico_core::graph::Props) -> Result<String> {
    Ok(serde_json::to_string(props).context("encoding graph properties")?)
}

fn bare_vertex(tx: &Connection, vertex: &VertexRef) -> Result<()> {
    let mut statement = tx
        .prepare_cached(
            "INSERT INTO graph_vertices (id, label, version, props) VALUES (?1, ?2, ?3, '{}')
             ON CONFLICT (id) DO NOTHING",
        )
        .context("adding a bare vertex")?;
    statement
        .execute(params![vertex.id(), vertex.label.as_str(), version_text(BARE)])
        .context("adding a bare vertex")?;
    Ok(())
}

#[async_trait]
impl GraphStore for SqliteGraph {
    async fn upsert(&self, batch: &Batch) -> Result<()> {
        let batch = batch.clone();
        self.db
            .transaction("graph upsert", move |tx| {
                for element in &batch.elements {
                    match element {
                        Element::Vertex(v) => {
                            let mut statement = tx
                                .prepare_cached(
                                    "INSERT INTO graph_vertices (id, label, version, props)
                                     VALUES (?1, ?2, ?3, ?4)
                                     ON CONFLICT (id) DO UPDATE
                                     SET version = excluded.version, props = excluded.props
                                     WHERE excluded.version > graph_vertices.version",
                                )
                                .context("upserting a vertex")?;
                            statement
                                .execute(params![
                                    v.vertex.id(),
                                    v.vertex.label.as_str(),
                                    version_text(v.version),
                                    props_text(&v.props)?
                                ])
                                .context("upserting a vertex")?;
                        }
                        Element::Edge(e) => {
                            bare_vertex(tx, &e.from)?;
                            bare_vertex(tx, &e.to)?;
                            let mut statement = tx
                                .prepare_cached(
                                    "INSERT INTO graph_edges (id, label, out_id, in_id, version, props)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                                     ON CONFLICT (id) DO UPDATE
                                     SET version = excluded.version, props = excluded.props
                                     WHERE excluded.version > graph_edges.version",
                                )
                                .context("upserting an edge")?;
                            statement
                                .execute(params![
                                    e.id,
                                    e.label.as_str(),
                                    e.from.id(),
                                    e.to.id(),
                                    version_text(e.version),
                                    props_text(&e.props)?
                                ])
                                .context("upserting an edge")?;
                        }
                    }
                }
                if let Some(newest) = batch.newest {
                    let ms = unix_ms(newest);
                    tx.execute(
                        "INSERT INTO graph_state (id, newest_ms) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET newest_ms = max(newest_ms, excluded.newest_ms)",
                        params![ms],
                    )
                    .context("recording the graph's newest change")?;
                }
                Ok(())
            })
            .await
    }

    async fn trace(&self, lot_number: &str) -> Result<Trace> {
        self.db.read(|conn| trace(conn, lot_number))
    }

    async fn clear(&self) -> Result<()> {
        self.db
            .transaction("graph clear", |tx| {
                tx.execute_batch(
                    "DELETE FROM graph_edges; DELETE FROM graph_vertices; DELETE FROM graph_state;",
                )
                .context("clearing the graph")?;
                Ok(())
            })
            .await
    }
}

/// Every account the lot reached through shipments, with each path (vertex ids, first receiver
/// first), at most `MAX_CHAIN` hops and never through an account twice.
const REACH: &str = "
WITH RECURSIVE reach(account, path, depth) AS (
    SELECT in_id, in_id, 1 FROM graph_edges WHERE out_id = ?1 AND label = 'shipped'
  UNION
    SELECT e.in_id, r.path || ' ' || e.in_id, r.depth + 1
    FROM reach r JOIN graph_edges e
      ON e.out_id = r.account AND e.label = 'shipped' AND json_extract(e.props, '$.lot_number') = ?2
    WHERE r.depth < ?3
      AND instr(' ' || r.path || ' ', ' ' || e.in_id || ' ') = 0
)
SELECT account, path FROM reach";

fn trace(conn: &Connection, lot_number: &str) -> Result<Trace> {
    let lot = VertexRef::new(VertexLabel::Lot, lot_number).id();
    let mut paths: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    {
        let mut statement = conn.prepare_cached(REACH).context("tracing shipments")?;
        let rows = statement
            .query_map(params![lot, lot_number, MAX_CHAIN as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .context("tracing shipments")?;
        for row in rows {
            let (account, path) = row.context("tracing shipments")?;
            let path = path.split(' ').map(|v| key_of(v).to_string()).collect();
            paths.entry(account).or_default().insert(path);
        }
    }

    let mut instruments = Vec::new();
    let mut first_loaded: BTreeMap<String, i64> = BTreeMap::new();
    {
        let mut statement = conn
            .prepare_cached(
                "SELECT out_id, MIN(json_extract(props, '$.loaded_at_ms')),
                        MAX(json_extract(props, '$.loaded_at_ms'))
                 FROM graph_edges WHERE in_id = ?1 AND label = 'loaded' GROUP BY out_id",
            )
            .context("tracing lot uses")?;
        let rows = statement
            .query_map(params![lot], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
            .context("tracing lot uses")?;
        for row in rows {
            let (instrument, first, last) = row.context("tracing lot uses")?;
            let Some(account) = one_out(conn, &instrument, EdgeLabel::HeldBy)? else {
                continue;
            };
            let props = props_of(conn, &instrument)?;
            first_loaded.insert(instrument.clone(), first);
            paths.entry(account.clone()).or_default();
            instruments.push(TracedInstrument {
                serial: key_of(&instrument).to_string(),
                name: text(&props, "name"),
                account_id: key_of(&account).to_string(),
                first_loaded_at: from_ms(first)?,
                last_loaded_at: from_ms(last)?,
            });
        }
    }

    // Ready run files that name the lot, or were produced on a loading instrument since it
    // first loaded the lot.
    let mut documents: BTreeMap<String, bool> = BTreeMap::new();
    for document in ins(conn, &lot, EdgeLabel::Names)? {
        documents.insert(document, true);
    }
    for (instrument, first) in &first_loaded {
        for document in ins(conn, instrument, EdgeLabel::ProducedOn)? {
            let props = props_of(conn, &document)?;
            let run_end = props.get("run_end_ms").and_then(Value::as_i64).unwrap_or(i64::MIN);
            if run_end >= *first {
                documents.entry(document).or_insert(false);
            }
        }
    }
    let mut traced_documents = Vec::new();
    for (document, names_lot) in documents {
        let props = props_of(conn, &document)?;
        if props.get("status").and_then(Value::as_str) != Some("ready") {
            continue;
        }
        let Some(account) = one_out(conn, &document, EdgeLabel::OwnedBy)? else {
            continue;
        };
        let instrument = one_out(conn, &document, EdgeLabel::ProducedOn)?;
        paths.entry(account.clone()).or_default();
        traced_documents.push(TracedDocument {
            document_id: key_of(&document).to_string(),
            account_id: key_of(&account).to_string(),
            filename: text(&props, "filename"),
            instrument_serial: instrument.map(|i| key_of(&i).to_string()),
            names_lot,
            created_at: from_ms(props.get("created_at_ms").and_then(Value::as_i64).unwrap_or(0))?,
        });
    }

    let mut accounts = Vec::new();
    let mut members = Vec::new();
    for (account, account_paths) in paths {
        let props = props_of(conn, &account)?;
        let account_id = key_of(&account).to_string();
        members.extend(members_of(conn, &account, &account_id)?);
        accounts.push(TracedAccount {
            account_id,
            name: text(&props, "name"),
            kind: text(&props, "kind"),
            paths: account_paths.into_iter().filter(|p| !p.is_empty()).collect(),
        });
    }
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    instruments.sort_by(|a, b| a.serial.cmp(&b.serial));
    traced_documents.sort_by(|a, b| a.document_id.cmp(&b.document_id));
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));

    let newest: Option<i64> = conn
        .query_row("SELECT newest_ms FROM graph_state WHERE id = 1", [], |r| r.get(0))
        .optional()
        .context("reading the graph's newest change")?;
    Ok(Trace {
        accounts,
        instruments,
        documents: traced_documents,
        members,
        as_of: newest.map(from_ms).transpose()?,
    })
}

/// The members of an account vertex: one query, the properties read by SQLite itself (a lot
/// can reach a hundred accounts of ten members each).
fn members_of(conn: &Connection, account: &str, account_id: &str) -> Result<Vec<TracedUser>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT e.out_id, json_extract(v.props, '$.display_name'),
                    json_extract(v.props, '$.email'), json_extract(v.props, '$.roles')
             FROM graph_edges e JOIN graph_vertices v ON v.id = e.out_id
             WHERE e.in_id = ?1 AND e.label = 'member_of'",
        )
        .context("reading members")?;
    let rows = statement
        .query_map(params![account], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .context("reading members")?;
    let mut members = Vec::new();
    for row in rows {
        let (user, display_name, email, roles) = row.context("reading members")?;
        members.push(TracedUser {
            user_id: key_of(&user).to_string(),
            account_id: account_id.to_string(),
            display_name: display_name.unwrap_or_default(),
            email: email.unwrap_or_default(),
            roles: roles.unwrap_or_default().split(' ').filter_map(Role::parse).collect(),
        });
    }
    Ok(members)
}

/// The key of a vertex id (`account:<id>` -> `<id>`).
fn key_of(vertex_id: &str) -> &str {
    vertex_id.split_once(':').map_or(vertex_id, |(_, key)| key)
}

fn from_ms(ms: i64) -> Result<OffsetDateTime> {
    from_unix_ms(ms).ok_or_else(|| corrupt(format!("a graph time is out of range: {ms}")))
}

fn text(props: &Map<String, Value>, name: &str) -> String {
    props.get(name).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// A vertex's properties (none for a vertex the graph does not hold).
fn props_of(conn: &Connection, vertex_id: &str) -> Result<Map<String, Value>> {
    let mut statement = conn
        .prepare_cached("SELECT props FROM graph_vertices WHERE id = ?1")
        .context("reading a vertex")?;
    let props: Option<String> = statement
        .query_row(params![vertex_id], |r| r.get(0))
        .optional()
        .context("reading a vertex")?;
    match props {
        None => Ok(Map::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("vertex {vertex_id} has bad properties: {e}"))),
    }
}

/// The vertex a `label` edge leads to from `vertex_id` (these edges are one per vertex).
fn one_out(conn: &Connection, vertex_id: &str, label: EdgeLabel) -> Result<Option<String>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT in_id FROM graph_edges WHERE out_id = ?1 AND label = ?2 ORDER BY id LIMIT 1",
        )
        .context("following an edge")?;
    Ok(statement
        .query_row(params![vertex_id, label.as_str()], |r| r.get(0))
        .optional()
        .context("following an edge")?)
}

/// The vertices with a `label` edge into `vertex_id`.
fn ins(conn: &Connection, vertex_id: &str, label: EdgeLabel) -> Result<Vec<String>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT out_id FROM graph_edges WHERE in_id = ?1 AND label = ?2 ORDER BY out_id",
        )
        .context("following edges back")?;
    let rows = statement
        .query_map(params![vertex_id, label.as_str()], |r| r.get(0))
        .context("following edges back")?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>().context("following edges back")?)
}
