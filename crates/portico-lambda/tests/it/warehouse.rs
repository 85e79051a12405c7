//! The warehouse on Snowflake, against the SQL API stand-in (`scripts/snowflake_standin.py` on
//! fakesnow): the same fixture loads the same rows as the local warehouse; a redelivered, a
//! reversed and a late older batch change nothing; the client's JWT, retry, polling and
//! request-id paths do what Snowflake expects.

use portico_core::graph::{Change, ChangeRecord, batch};
use portico_core::warehouse::{Report, ReportQuery, TABLES, Upsert, Warehouse, upserts};
use portico_core::{Alert, Recall, SignIn};
use portico_snowflake::{Settings, SnowflakeWarehouse, SqlError};
use portico_testkit::snowflake::{ACCOUNT, SnowflakeStandIn, USER, key_pair};
use time::OffsetDateTime;

fn settings(standin: &SnowflakeStandIn, key: &str) -> Settings {
    Settings {
        account: ACCOUNT.into(),
        user: USER.into(),
        private_key_pem: key.into(),
        base_url: Some(standin.url.clone()),
        database: "PORTICO".into(),
        schema: "WAREHOUSE".into(),
        warehouse: None,
        role: None,
    }
}

/// The graph contract's fixture history, plus a recall, an alert and a sign-in.
fn fixture() -> Vec<ChangeRecord> {
    let mut records = portico_contract::graph::history();
    let at = OffsetDateTime::from_unix_timestamp(1_764_547_200).expect("time");
    let next = records.iter().map(|r| r.version).max().unwrap_or(0) + 1;
    let recalled = records.iter().find_map(|r| match &r.change {
        Change::Lot(lot) => Some(lot.clone()),
        _ => None,
    });
    let mut lot = recalled.expect("the fixture has a lot");
    lot.recall = Some(Recall {
        reason: "Sterility failure".into(),
        recalled_by: "u-staff".into(),
        recalled_at: at,
    });
    records.push(ChangeRecord { version: next + 2, at, change: Change::Lot(lot) });
    records.push(ChangeRecord {
        version: next,
        at,
        change: Change::Alert(Alert {
            id: "alert-1".into(),
            serial: "SN-C3".into(),
            account_id: "acc-c3".into(),
            severity: "critical".into(),
            code: Some("E-PUMP".into()),
            raised_at: at,
        }),
    });
    records.push(ChangeRecord {
        version: next + 1,
        at,
        change: Change::SignIn(SignIn {
            id: "in-1".into(),
            user_id: "u-acc-c3-sci".into(),
            account_id: Some("acc-c3".into()),
            signed_in_at: at,
        }),
    });
    records
}

fn rows_of(records: &[ChangeRecord]) -> Vec<Upsert> {
    batch(records).elements.iter().flat_map(upserts).collect()
}

/// A local warehouse loaded with `records` (and the folder it lives in).
async fn local_warehouse(
    records: &[ChangeRecord],
) -> (tempfile::TempDir, portico_sqlite::SqliteWarehouse) {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = portico_sqlite::SqliteWarehouse::open(&dir.path().join("warehouse.db"), None)
        .expect("warehouse");
    local.load(records, Some(1)).await.expect("local load");
    (dir, local)
}

/// Every table of the local warehouse loaded with `records`, as text rows.
async fn local_tables(records: &[ChangeRecord]) -> Vec<(String, Vec<Vec<String>>)> {
    let (dir, local) = local_warehouse(records).await;
    portico_sqlite::snapshot(&local, &dir.path().join("csv"), None).expect("snapshot");
    let mut out = Vec::new();
    for table in TABLES {
        let text =
            std::fs::read_to_string(dir.path().join("csv").join(format!("{}.csv", table.name)))
                .expect("csv");
        // The snapshots' cells are plain here (no quoting or formula characters in the fixture).
        let rows =
            text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect();
        out.push((table.name.to_string(), rows));
    }
    out
}

async fn snowflake_tables(warehouse: &SnowflakeWarehouse) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows = warehouse.rows(table).await.expect("rows");
        let rows = rows
            .into_iter()
            .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
            .collect();
        out.push((table.name.to_string(), rows));
    }
    out
}

#[tokio::test]
async fn snowflake_holds_the_same_rows_as_the_local_warehouse_and_loads_exactly_once() {
    let standin = SnowflakeStandIn::start();
    let warehouse =
        SnowflakeWarehouse::new(settings(&standin, &standin.private_key_pem)).expect("client");
    warehouse.ensure_schema().await.expect("schema");
    let records = fixture();

    let merged = warehouse.load(&rows_of(&records)).await.expect("load");
    assert!(merged.inserted > 20, "{merged:?}");
    let tables = snowflake_tables(&warehouse).await;
    assert_eq!(tables, local_tables(&records).await);
    assert!(tables.iter().all(|(_, rows)| !rows.is_empty()), "every table has rows: {tables:?}");

    // Every report answers the same on both, for staff and for one account's admin.
    let (_dir, local) = local_warehouse(&records).await;
    let day = |d: &str| portico_core::warehouse::parse_date(d).expect("date");
    for report in Report::ALL {
        for account in [None, Some("acc-c3".to_string()), Some("acc-d1".to_string())] {
            let query = ReportQuery::new(
                report,
                Some(day("2025-06-01")),
                Some(day("2027-05-31")),
                day("2026-12-01"),
                account.clone(),
            )
            .expect("query");
            let here = local.report(&query).await.expect("local report").rows;
            let there = warehouse.report(&query).await.expect("snowflake report").rows;
            assert_eq!(there, here, "{} for {account:?}", report.name());
            if account.is_none() {
                assert!(!here.is_empty(), "{} has rows", report.name());
            }
        }
    }

    // Redelivered (in any order): the same statements with the same request ids, answered by
    // Snowflake without running again; a late older version of everything runs and changes
    // nothing.
    let executed = standin.stats().await["executed"].clone();
    warehouse.load(&rows_of(&records)).await.expect("again");
    let mut reversed = records.clone();
    reversed.reverse();
    warehouse.load(&rows_of(&reversed)).await.expect("reversed");
    let stats = standin.stats().await;
    assert_eq!(stats["executed"], executed);
    assert_eq!(stats["replayed"].as_u64(), Some(2 * merged.statements as u64));
    let older: Vec<ChangeRecord> =
        records.iter().map(|r| ChangeRecord { version: 0, ..r.clone() }).collect();
    let merged = warehouse.load(&rows_of(&older)).await.expect("older");
    // (The date rows are the same statement as before, so Snowflake answers that first run's
    // counts; every versioned group ran and updated nothing.)
    assert_eq!(merged.updated, 0, "{merged:?}");
    assert_eq!(snowflake_tables(&warehouse).await, tables);

    // A 503 is retried (the statement runs once), a 202 is polled to its end.
    let before = standin.stats().await["executed"].as_u64().expect("executed");
    standin.script(&[503, 503, 202]).await;
    let newer: Vec<ChangeRecord> =
        records.iter().take(1).map(|r| ChangeRecord { version: 10_000, ..r.clone() }).collect();
    let merged = warehouse.load(&rows_of(&newer)).await.expect("through 503s and a 202");
    assert!(merged.updated >= 1, "{merged:?}");
    let stats = standin.stats().await;
    assert_eq!(stats["refused"], 2);
    assert_eq!(stats["executed"].as_u64(), Some(before + merged.statements as u64));

    // The same request id with retry=true is answered, not run again.
    let id = uuid::Uuid::new_v4();
    warehouse.api().execute("SELECT 1", &[], id).await.expect("first");
    let before = standin.stats().await;
    warehouse.api().execute("SELECT 1", &[], id).await.expect("again");
    let after = standin.stats().await;
    assert_eq!(after["executed"], before["executed"]);
    assert_eq!(after["replayed"].as_u64(), before["replayed"].as_u64().map(|n| n + 1));

    // A statement error is final; a key Snowflake does not know is refused.
    let wrong =
        warehouse.api().execute("SELECT * FROM no_such_table", &[], uuid::Uuid::new_v4()).await;
    assert!(matches!(wrong, Err(SqlError::Statement(_))), "{wrong:?}");
    let (other_key, _) = key_pair();
    let stranger = SnowflakeWarehouse::new(settings(&standin, &other_key)).expect("client");
    let refused = stranger.api().execute("SELECT 1", &[], uuid::Uuid::new_v4()).await;
    assert!(matches!(refused, Err(SqlError::Refused { status: 401, .. })), "{refused:?}");
}

/// A Kinesis event of `records`' elements, one per record (as the stream-poller puts them), and
/// one record that is not an element.
fn kinesis_event(records: &[ChangeRecord]) -> serde_json::Value {
    use base64::Engine;
    let encode = |value: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD.encode(value.to_string().as_bytes())
    };
    let mut out: Vec<serde_json::Value> = batch(records)
        .elements
        .iter()
        .enumerate()
        .map(|(i, element)| {
            let data = serde_json::to_value(element).expect("element JSON");
            serde_json::json!({"eventID": format!("shardId-000:{i}"),
                "kinesis": {"sequenceNumber": format!("{:020}", i + 1), "partitionKey": "k", "data": encode(&data)}})
        })
        .collect();
    out.push(serde_json::json!({"eventID": "shardId-000:bad",
        "kinesis": {"sequenceNumber": "99999999999999999999", "partitionKey": "k", "data": encode(&serde_json::json!({"not": "an element"}))}}));
    serde_json::json!({ "Records": out })
}

#[tokio::test]
async fn the_kinesis_handler_loads_a_batch_of_elements_once_and_asks_again_when_it_cannot() {
    let standin = SnowflakeStandIn::start();
    let warehouse =
        SnowflakeWarehouse::new(settings(&standin, &standin.private_key_pem)).expect("client");
    warehouse.ensure_schema().await.expect("schema");
    let records = fixture();
    let event = kinesis_event(&records);

    let outcome = portico_lambda::warehouse::load(&event, &warehouse).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(outcome.skipped.len(), 1, "{outcome:?}");
    assert_eq!(outcome.processed, batch(&records).elements.len());
    assert_eq!(snowflake_tables(&warehouse).await, local_tables(&records).await);
    assert_eq!(outcome.response(), serde_json::json!({"batchItemFailures": []}));

    // Snowflake down past the client's six tries: the batch's first record is reported, so Lambda delivers
    // the whole batch again; nothing was half-loaded that a redelivery would not mend.
    standin.script(&[503; 6]).await;
    let newer: Vec<ChangeRecord> =
        records.iter().map(|r| ChangeRecord { version: r.version + 1_000, ..r.clone() }).collect();
    let outcome = portico_lambda::warehouse::load(&kinesis_event(&newer), &warehouse).await;
    assert_eq!(outcome.failed, vec![format!("{:020}", 1)], "{outcome:?}");
    let outcome = portico_lambda::warehouse::load(&kinesis_event(&newer), &warehouse).await;
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(snowflake_tables(&warehouse).await, local_tables(&records).await);
}

// --- the stream-poller: Neptune Streams -> Kinesis ---------------------------------------------

/// A loopback stand-in of Neptune's `GetPropertygraphStream` (`GET /propertygraph/stream`),
/// serving the records the Neptune adapter's writes make: for each element version, its label
/// record, a record per property and the `element` property, in one commit. Records before
/// `trimmed` have expired.
#[derive(Clone, Default)]
struct NeptuneStreamStandIn {
    records: Vec<serde_json::Value>,
    trimmed: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl NeptuneStreamStandIn {
    fn from_history(records: &[ChangeRecord]) -> NeptuneStreamStandIn {
        use portico_core::graph::{Element, Value as Prop};
        let mut out = Vec::new();
        for (commit, element) in batch(records).elements.iter().enumerate() {
            let commit = commit as i64 + 1;
            let (id, kind, label, props) = match element {
                Element::Vertex(v) => (v.vertex.id(), "v", v.vertex.label.as_str(), &v.props),
                Element::Edge(e) => (e.id.clone(), "e", e.label.as_str(), &e.props),
            };
            let mut ops = vec![(
                if kind == "v" { "vl" } else { "e" },
                "label".to_string(),
                serde_json::json!(label),
            )];
            for (name, value) in props {
                let value = match value {
                    Prop::Bool(b) => serde_json::json!(b),
                    Prop::Int(i) => serde_json::json!(i),
                    Prop::Str(s) => serde_json::json!(s),
                };
                ops.push((if kind == "v" { "vp" } else { "ep" }, name.clone(), value));
            }
            let whole = serde_json::to_string(element).expect("element JSON");
            ops.push((
                if kind == "v" { "vp" } else { "ep" },
                "element".into(),
                serde_json::json!(whole),
            ));
            let count = ops.len();
            for (op, (kind, key, value)) in ops.into_iter().enumerate() {
                let mut record = serde_json::json!({
                    "commitTimestamp": 1_764_547_200_000i64 + commit,
                    "eventId": {"commitNum": commit.to_string(), "opNum": (op + 1).to_string()},
                    "data": {"id": id, "type": kind, "key": key,
                             "value": {"value": value, "dataType": "String"}},
                    "op": "ADD",
                });
                if op + 1 == count {
                    record["isLastOp"] = serde_json::json!(true);
                }
                out.push(record);
            }
        }
        NeptuneStreamStandIn { records: out, trimmed: Default::default() }
    }

    fn elements(&self) -> usize {
        self.records.iter().filter(|r| r["data"]["key"] == "element").count()
    }

    async fn serve(self) -> String {
        use axum::extract::{Query, State};
        async fn stream(
            State(standin): State<NeptuneStreamStandIn>,
            Query(query): Query<std::collections::HashMap<String, String>>,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            let number = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
            let limit = number("limit").unwrap_or(10).max(1) as usize;
            let trimmed = standin.trimmed.load(std::sync::atomic::Ordering::SeqCst);
            let position = |r: &serde_json::Value| {
                let n = |k: &str| {
                    r["eventId"][k].as_str().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
                };
                (n("commitNum"), n("opNum"))
            };
            let after = match query.get("iteratorType").map(String::as_str) {
                Some("TRIM_HORIZON") => None,
                Some("AFTER_SEQUENCE_NUMBER") => {
                    Some((number("commitNum").unwrap_or(0), number("opNum").unwrap_or(0)))
                }
                other => {
                    return (axum::http::StatusCode::BAD_REQUEST,
                        [("x-amzn-errortype", "InvalidParameterException")],
                        axum::Json(serde_json::json!({"code": "InvalidParameterException", "detailedMessage": format!("iteratorType {other:?}")})))
                        .into_response();
                }
            };
            if let Some((commit, _)) = after
                && commit < trimmed
            {
                return (axum::http::StatusCode::BAD_REQUEST,
                    [("x-amzn-errortype", "ExpiredStreamException")],
                    axum::Json(serde_json::json!({"code": "ExpiredStreamException", "detailedMessage": "the requested event is past the stream's retention"})))
                    .into_response();
            }
            let page: Vec<serde_json::Value> = standin
                .records
                .iter()
                .filter(|r| position(r).0 >= trimmed)
                .filter(|r| after.is_none_or(|a| position(r) > a))
                .take(limit)
                .cloned()
                .collect();
            let Some(last) = page.last() else {
                return (axum::http::StatusCode::NOT_FOUND,
                    [("x-amzn-errortype", "StreamRecordsNotFoundException")],
                    axum::Json(serde_json::json!({"code": "StreamRecordsNotFoundException", "detailedMessage": "no records"})))
                    .into_response();
            };
            axum::Json(serde_json::json!({
                "lastEventId": last["eventId"],
                "lastTrxTimestamp": last["commitTimestamp"],
                "format": "PG_JSON",
                "records": page,
                "totalRecords": page.len(),
            }))
            .into_response()
        }
        let app = axum::Router::new()
            .route("/propertygraph/stream", axum::routing::get(stream))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

/// Kinesis records read back as the Lambda event the `kinesis` function would get.
fn lambda_event(records: &[(String, String, Vec<u8>)]) -> serde_json::Value {
    use base64::Engine;
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(seq, key, data)| {
            serde_json::json!({
            "eventID": format!("shardId-000000000000:{seq}"),
            "kinesis": {"sequenceNumber": seq, "partitionKey": key,
                        "data": base64::engine::general_purpose::STANDARD.encode(data)}})
        })
        .collect();
    serde_json::json!({ "Records": records })
}

#[tokio::test]
async fn the_stream_poller_moves_the_graph_to_kinesis_once_under_a_lease_and_snowflake_gets_the_local_rows()
 {
    use portico_aws::neptune::stream::NeptuneStream;
    use portico_aws::warehouse::{Ended, KinesisWriter, StreamPoller};
    use std::time::Duration;

    let endpoint = portico_contract::moto::endpoint();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let settings = portico_aws::AwsSettings {
        region: "us-east-1".into(),
        endpoint_url: Some(endpoint),
        iot_endpoint: None,
        table: format!("portico-{run}"),
        bucket: String::new(),
        queue_prefix: String::new(),
    };
    let sdk = portico_aws::sdk_config(&settings).await;
    let dynamodb = portico_aws::dynamodb(&sdk);
    portico_aws::provision::table(&dynamodb, &settings.table).await.expect("table");
    let stream_name = format!("warehouse-{run}");
    portico_aws::provision::kinesis_stream(&sdk, &stream_name).await.expect("stream");

    let records = fixture();
    let neptune = NeptuneStreamStandIn::from_history(&records);
    let trimmed = neptune.trimmed.clone();
    let elements = neptune.elements();
    let neptune_url = neptune.serve().await;
    let poller = |owner: &str| StreamPoller {
        stream: NeptuneStream::new(&sdk, &neptune_url),
        kinesis: KinesisWriter::new(&sdk, &stream_name),
        lease: portico_aws::StreamLease::new(
            dynamodb.clone(),
            &settings.table,
            owner,
            Duration::from_secs(30),
        ),
        page_size: 25,
    };

    // Kinesis refuses some entries: only those are sent again, and nothing twice.
    portico_contract::moto::fail_kinesis_entries(&stream_name, 7);
    let polled = poller("poller-a").run(Duration::from_secs(60)).await.expect("poll");
    assert_eq!(polled.ended, Ended::CaughtUp, "{polled:?}");
    assert_eq!(polled.elements, elements);
    assert_eq!(portico_contract::moto::kinesis_entries_refused(&stream_name), 7);
    let streamed =
        portico_aws::provision::kinesis_records(&sdk, &stream_name).await.expect("records");
    assert_eq!(streamed.len(), elements, "each element once");
    // One element's versions share a partition key (its id), hence a shard and an order.
    assert!(streamed.iter().all(|(_, key, _)| key.contains(':')), "{:?}", &streamed[..1]);

    // A second run finds the checkpoint and nothing new; a lease held by another is respected.
    let again = poller("poller-b").run(Duration::from_secs(60)).await.expect("poll again");
    assert_eq!((again.ended, again.elements), (Ended::CaughtUp, 0), "{again:?}");
    let holder = portico_aws::StreamLease::new(
        dynamodb.clone(),
        &settings.table,
        "holder",
        Duration::from_secs(30),
    );
    assert!(holder.acquire().await.expect("acquire").is_some());
    let busy = poller("poller-c").run(Duration::from_secs(60)).await.expect("busy");
    assert_eq!(busy.ended, Ended::Busy);
    // The holder's lease ends; a checkpoint older than the stream keeps starts it over.
    holder.release().await.expect("release");
    trimmed.store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
    let expired = poller("poller-d").run(Duration::from_secs(60)).await.expect("expired");
    assert_eq!(expired.ended, Ended::Expired, "{expired:?}");

    // The kinesis function loads what the stream holds; Snowflake then holds the local rows.
    let standin = SnowflakeStandIn::start();
    let warehouse = SnowflakeWarehouse::new(settings_of(&standin)).expect("client");
    warehouse.ensure_schema().await.expect("schema");
    for batch in streamed.chunks(100) {
        let outcome = portico_lambda::warehouse::load(&lambda_event(batch), &warehouse).await;
        assert!(outcome.failed.is_empty() && outcome.skipped.is_empty(), "{outcome:?}");
    }
    assert_eq!(snowflake_tables(&warehouse).await, local_tables(&records).await);
}

fn settings_of(standin: &SnowflakeStandIn) -> Settings {
    settings(standin, &standin.private_key_pem)
}
