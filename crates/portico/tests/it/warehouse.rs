//! The reporting warehouse end to end on the local host: API writes, MQTT events and uploads
//! reach the warehouse tables and their CSV snapshots within moments; the reports answer from
//! there and agree with the API's own counts; a replay of every change (in order, reversed)
//! writes nothing; a rebuild gives the same snapshots; the policy keeps an account admin to
//! their account.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, run_portico, spawn_app};
use crate::mqtt::as_instrument;
use crate::traceability::{org, ship, upload_run};

const RANGE: &str = "from=2026-01-01&to=2027-12-31";

/// The report's rows, polled until `done` holds (the warehouse follows the API within moments).
async fn report_until(
    app: &TestApp,
    token: &str,
    name: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, report) = app.get(&format!("/v1/reports/{name}?{RANGE}"), token).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        let rows = report["rows"].as_array().expect("rows").clone();
        if done(&rows) {
            return rows;
        }
        last = report;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the report never got there: {last:#}");
}

fn sum(rows: &[Value], column: &str) -> i64 {
    rows.iter().map(|r| r[column].as_i64().unwrap_or(0)).sum()
}

/// Every CSV snapshot's text, by file name.
fn snapshots(app: &TestApp) -> Vec<(String, String)> {
    let dir = app.data_dir.join("warehouse");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the snapshot folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("csv"))
        })
        .collect();
    files.sort();
    files
}

/// Waits until the snapshot of `table` has `rows` data lines.
async fn snapshot_has(app: &TestApp, table: &str, rows: usize) -> String {
    let path = app.data_dir.join("warehouse").join(format!("{table}.csv"));
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.lines().count() == rows + 1
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{table}.csv never had {rows} rows: {:?}", std::fs::read_to_string(&path));
}

#[tokio::test]
async fn writes_reach_the_warehouse_and_its_reports_which_agree_with_the_api() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let acme = org(&app, "Acme", "customer").await;
    let globex = org(&app, "Globex", "customer").await;
    let secret_a = app.register_instrument(&acme.account, "SN-WA").await;
    let secret_g = app.register_instrument(&globex.account, "SN-WG").await;
    let product = json!({"sku": "RGT-9", "name": "Polymerase, 500 U", "category": "Reagents"});
    assert_eq!(app.post("/v1/products", &admin, product).await.0, StatusCode::CREATED);
    for lot in ["L-W1", "L-W2"] {
        let body = json!({"lot_number": lot, "sku": "RGT-9", "manufactured_on": "2026-10-01", "expires_on": "2027-10-01",
            "qc_tests": [{"name": "Purity", "method": "HPLC", "specification": ">= 98 %", "result": "99", "unit": "%", "pass": true}]});
        assert_eq!(app.post("/v1/lots", &admin, body).await.0, StatusCode::CREATED);
    }
    assert_eq!(ship(&app, &admin, "L-W1", None, &acme, 10).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &admin, "L-W1", None, &globex, 4).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &admin, "L-W2", None, &acme, 7).await.0, StatusCode::CREATED);

    // Both instruments load L-W1; Acme's raises one critical alert, delivered twice.
    let a = as_instrument(&app, "SN-WA", &secret_a).await;
    let g = as_instrument(&app, "SN-WG", &secret_g).await;
    let loaded =
        json!({"type": "lot_loaded", "lot_number": "L-W1", "event_id": "w-load"}).to_string();
    a.send("instruments/SN-WA/events", loaded.as_bytes()).await;
    g.send("instruments/SN-WG/events", loaded.as_bytes()).await;
    let alert = json!({"severity": "critical", "code": "E-PUMP", "message": "Pump pressure too high", "event_id": "w-alert"}).to_string();
    a.send("instruments/SN-WA/events", alert.as_bytes()).await;
    a.send("instruments/SN-WA/events", alert.as_bytes()).await;
    let error =
        json!({"severity": "error", "message": "Door open", "event_id": "w-door"}).to_string();
    g.send("instruments/SN-WG/events", error.as_bytes()).await;

    // A run file in Acme; sign-ins by Acme's scientist and admin (their tokens' first use).
    upload_run(&app, &acme.scientist, "run.csv", Some("SN-WA"), "sample,value\nA,1\n").await;
    assert_eq!(app.get("/v1/me", &acme.admin).await.0, StatusCode::OK);

    // Shipments: the report agrees with the API's own listing.
    let shipments = app.every_item("/v1/shipments?limit=200", &admin).await;
    let quantity: i64 = shipments.iter().map(|s| s["quantity"].as_i64().expect("quantity")).sum();
    let rows = report_until(&app, &admin, "shipments-by-product", |rows| {
        sum(rows, "quantity") == quantity
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["sku"], "RGT-9");
    assert_eq!(rows[0]["product_name"], "Polymerase, 500 U");
    assert_eq!(rows[0]["shipments"], shipments.len());
    assert_eq!(rows[0]["accounts"], 2);

    // Lot exposure: the impact's accounts and instruments.
    let rows = report_until(&app, &admin, "lot-exposure", |rows| {
        rows.iter().any(|r| r["lot_number"] == "L-W1" && r["instruments"] == 2)
    })
    .await;
    // (The graph follows the API on its own projector: wait for it too.)
    let mut impact = serde_json::Value::Null;
    for _ in 0..200 {
        let (status, answer) = app.get("/v1/lots/L-W1/impact", &admin).await;
        assert_eq!(status, StatusCode::OK);
        impact = answer;
        if impact["instruments"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w1 = rows.iter().find(|r| r["lot_number"] == "L-W1").expect("L-W1");
    assert_eq!(w1["accounts"], impact["accounts"].as_array().expect("accounts").len());
    assert_eq!(w1["instruments"], impact["instruments"].as_array().expect("instruments").len());
    assert_eq!(w1["recalled"], false);

    // Alerts: one per event however often it came, by severity and account.
    let rows =
        report_until(&app, &admin, "alerts-by-account", |rows| sum(rows, "alerts") == 2).await;
    let critical: Vec<&Value> = rows.iter().filter(|r| r["severity"] == "critical").collect();
    assert_eq!(critical.len(), 1, "{rows:?}");
    assert_eq!(critical[0]["account_id"], acme.id());
    assert_eq!(critical[0]["account_name"], "Acme");
    assert_eq!(critical[0]["alerts"], 1);
    let (_, notifications) = app.get("/v1/notifications", &acme.lab).await;
    let told = notifications["items"].as_array().expect("items");
    assert_eq!(told.iter().filter(|n| n["kind"] == "instrument_alert").count(), 1);

    // Uploads, and active users: Acme's scientist (the upload), admin (`/v1/me`) and lab
    // manager (the notifications) each used a token.
    let rows =
        report_until(&app, &admin, "uploads-by-account", |rows| sum(rows, "ready") == 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0]["account_id"], &rows[0]["uploads"]), (&json!(acme.id()), &json!(1)));
    let rows = report_until(&app, &admin, "active-users", |rows| {
        rows.iter().any(|r| r["account_id"] == acme.id() && r["active_users"] == 3)
    })
    .await;
    assert!(
        rows.iter().all(|r| r["account_id"] != globex.id()),
        "nobody of Globex signed in: {rows:?}"
    );

    // A recall reaches the lot dimension and the recalls fact.
    let (status, _) =
        app.post("/v1/lots/L-W2/recall", &admin, json!({"reason": "Sterility failure"})).await;
    assert_eq!(status, StatusCode::CREATED);
    report_until(&app, &admin, "lot-exposure", |rows| {
        rows.iter().any(|r| r["lot_number"] == "L-W2" && r["recalled"] == true)
    })
    .await;
    let recalls = snapshot_has(&app, "fact_recalls", 1).await;
    assert!(
        recalls.starts_with("lot_number,reason,recalled_at,recalled_on\nL-W2,Sterility failure,"),
        "{recalls}"
    );

    // The CSV snapshots: a header row, then a line per row.
    let csv = snapshot_has(&app, "fact_shipments", 3).await;
    assert!(
        csv.starts_with(
            "shipment_id,lot_number,from_account_id,to_account_id,quantity,shipped_on\n"
        ),
        "{csv}"
    );
    snapshot_has(&app, "fact_alerts", 2).await;

    // An account admin gets the same reports, for their account only.
    let rows =
        report_until(&app, &globex.admin, "shipments-by-product", |rows| !rows.is_empty()).await;
    assert_eq!(rows[0]["quantity"], 4);
    let rows =
        report_until(&app, &globex.admin, "alerts-by-account", |rows| !rows.is_empty()).await;
    assert!(rows.iter().all(|r| r["account_id"] == globex.id()), "{rows:?}");
    assert_eq!(
        app.get(&format!("/v1/reports/active-users?{RANGE}"), &globex.lab).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get("/v1/reports/nope", &admin).await.0, StatusCode::NOT_FOUND);
    for bad in [
        "from=2026-13-01",
        "from=2026-05-01&to=2026-04-01",
        "from=2020-01-01&to=2026-01-01",
        "format=xml",
    ] {
        let (status, problem) = app.get(&format!("/v1/reports/active-users?{bad}"), &admin).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
    }

    // The same report as CSV, SVG and PNG.
    let fetch = |format: &'static str| {
        let url = app.url(&format!("/v1/reports/alerts-by-account?{RANGE}&format={format}"));
        let request = app.client.get(url).bearer_auth(&admin);
        async move { request.send().await.expect("sent") }
    };
    let response = fetch("csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/csv")));
    let csv = response.text().await.expect("csv");
    assert!(csv.starts_with("week_start,account_id,account_name,severity,alerts\n"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let response = fetch("svg").await;
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("Alerts per week, by severity"), "{svg}");
    let response = fetch("png").await;
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        (
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            u32::from_be_bytes([png[20], png[21], png[22], png[23]])
        ),
        (800, 450)
    );

    // A replay of every change, in order and backwards, writes nothing.
    let loader = app.composition.warehouse.as_ref().expect("the local warehouse");
    let feed = app.composition.changes.as_ref().expect("the change feed");
    for _ in 0..200 {
        if loader.warehouse().checkpoint().expect("checkpoint")
            == Some(feed.latest().expect("latest"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut every = feed.after(0, 1_000_000).expect("changes");
    assert!(every.len() > 20);
    let replayed = loader.warehouse().load(&every, None).await.expect("replay");
    assert_eq!(replayed.written, 0, "a replay changed {:?}", replayed.tables);
    every.reverse();
    let replayed = loader.warehouse().load(&every, None).await.expect("replay");
    assert_eq!(replayed.written, 0, "a reversed replay changed {:?}", replayed.tables);

    // `portico export rebuild` gives the same snapshots; `status` counts the rows.
    loader.snapshot(None).await.expect("snapshot");
    let before = snapshots(&app);
    let output = run_portico(&app.data_dir, &["export", "rebuild"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(snapshots(&app), before);
    let output = run_portico(&app.data_dir, &["export", "status", "--json"]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    let rows = |table: &str| {
        status["rows"].as_array().expect("rows").iter().find(|r| r[0] == table).expect(table)[1]
            .clone()
    };
    assert_eq!(rows("fact_shipments"), 3);
    assert_eq!(rows("fact_alerts"), 2);
    assert_eq!(rows("dim_accounts"), 2);
    assert_eq!(status["lag"], 0);
}
