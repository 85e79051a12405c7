//! The warehouse on Snowflake, against the SQL API stand-in (`scripts/snowflake_standin.py` on
//! fakesnow): the same fixture loads the same rows as the local warehouse; a redelivered, a
//! reversed and a late older batch change nothing; the client's JWT, retry, polling and
//! request-id paths do what Snowflake expects.

use portico_core::graph::{Change, ChangeRecord, batch};
use portico_core::warehouse::{TABLES, Upsert, upserts};
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

/// Every table of the local warehouse loaded with `records`, as text rows.
async fn local_tables(records: &[ChangeRecord]) -> Vec<(String, Vec<Vec<String>>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = portico_sqlite::SqliteWarehouse::open(&dir.path().join("warehouse.db"), None)
        .expect("warehouse");
    local.load(records, Some(1)).await.expect("local load");
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
