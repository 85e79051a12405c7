//! Lot traceability through the API and MQTT: a three-level distributor chain, lot uses reported
//! by instruments, run files that name the lot, the impact, the recall, and a rebuilt graph.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fields, id, put, request, settled, spawn_app};
use crate::mqtt::{WAIT, as_instrument, listening};

/// One account of the chain, with tokens for its lab manager, account admin and scientist.
pub(crate) struct Org {
    pub(crate) account: Value,
    pub(crate) lab: String,
    pub(crate) admin: String,
    pub(crate) scientist: String,
}

impl Org {
    pub(crate) fn id(&self) -> String {
        id(&self.account)
    }
}

pub(crate) async fn org(app: &TestApp, name: &str, kind: &str) -> Org {
    let (status, account) =
        app.post("/v1/accounts", &app.admin_token(), json!({"name": name, "kind": kind})).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let slug = name.to_lowercase();
    Org {
        lab: app.add_user(&account, &format!("lab@{slug}.example"), &["lab_manager"]).await,
        admin: app.add_user(&account, &format!("admin@{slug}.example"), &["account_admin"]).await,
        scientist: app.add_user(&account, &format!("sci@{slug}.example"), &["scientist"]).await,
        account,
    }
}

pub(crate) async fn ship(
    app: &TestApp,
    token: &str,
    lot: &str,
    from: Option<&Org>,
    to: &Org,
    n: u32,
) -> (StatusCode, Value) {
    let mut body = json!({"lot_number": lot, "account_id": to.id(), "shipped_on": "2026-11-20", "quantity": n});
    if let Some(from) = from {
        body["from_account_id"] = json!(from.id());
    }
    app.post("/v1/shipments", token, body).await
}

/// Uploads `text` as a CSV run file and waits until the worker has checked it.
pub(crate) async fn upload_run(
    app: &TestApp,
    token: &str,
    name: &str,
    serial: Option<&str>,
    text: &str,
) -> Value {
    let (status, ticket) = match serial {
        None => request(app, token, name, "text/csv", text.len()).await,
        Some(serial) => {
            let body = json!({"filename": name, "content_type": "text/csv", "size": text.len(),
                              "instrument_serial": serial});
            app.post("/v1/documents/uploads", token, body).await
        }
    };
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let url = ticket["upload_url"].as_str().expect("url").to_string();
    let (status, _) = put(app, &url, "text/csv", text.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let document = settled(app, token, ticket["document_id"].as_str().expect("id")).await;
    assert_eq!(document["status"], "ready", "{document}");
    document
}

/// The impact, polled until `done` holds (the graph follows the API within moments).
async fn impact_until(app: &TestApp, lot: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, impact) = app.get(&format!("/v1/lots/{lot}/impact"), &app.admin_token()).await;
        assert_eq!(status, StatusCode::OK, "{impact}");
        if done(&impact) {
            return impact;
        }
        last = impact;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the impact never got there: {last:#}");
}

/// How many `lot_recall` notifications the token's user has.
async fn recalls_of(app: &TestApp, token: &str) -> usize {
    let (_, page) = app.get("/v1/notifications", token).await;
    page["items"].as_array().expect("items").iter().filter(|n| n["kind"] == "lot_recall").count()
}

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item[key].as_str().expect(key).to_string())
        .collect()
}

#[tokio::test]
async fn a_lot_is_traced_through_distributors_to_instruments_and_runs_and_recalled_once() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let d1 = org(&app, "Dist-One", "distributor").await;
    let d2 = org(&app, "Dist-Two", "distributor").await;
    let c3 = org(&app, "Clinic-Three", "customer").await;
    let c4 = org(&app, "Lab-Four", "customer").await;
    let unrelated = org(&app, "Elsewhere", "customer").await;
    let secret_c3 = app.register_instrument(&c3.account, "SN-C3").await;
    let secret_c4 = app.register_instrument(&c4.account, "SN-C4").await;
    let secret_u = app.register_instrument(&unrelated.account, "SN-U").await;

    let (status, _) = app
        .post(
            "/v1/products",
            &admin,
            json!({"sku": "RGT-7", "name": "Master Mix", "category": "Reagents"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for lot in ["L-TRACE", "L-OTHER"] {
        let body = json!({"lot_number": lot, "sku": "RGT-7", "manufactured_on": "2026-10-01", "expires_on": "2027-10-01",
            "qc_tests": [{"name": "Purity", "method": "HPLC", "specification": ">= 98 %", "result": "99", "unit": "%", "pass": true}]});
        let (status, created) = app.post("/v1/lots", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }

    // Manufacturer -> D1 -> D2 -> C3, and manufacturer -> C4; the other lot to the unrelated one.
    assert_eq!(ship(&app, &admin, "L-TRACE", None, &d1, 100).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &d1.admin, "L-TRACE", Some(&d1), &d2, 60).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &d2.admin, "L-TRACE", Some(&d2), &c3, 30).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &admin, "L-TRACE", None, &c4, 10).await.0, StatusCode::CREATED);
    assert_eq!(ship(&app, &admin, "L-OTHER", None, &unrelated, 5).await.0, StatusCode::CREATED);
    // Not more than was received: D2 holds 30 now.
    let (status, problem) = ship(&app, &d2.admin, "L-TRACE", Some(&d2), &c3, 31).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["quantity"]);
    // Only the sender's account admins (and admins) ship on; only distributors ship on.
    assert_eq!(ship(&app, &d1.admin, "L-TRACE", Some(&d2), &c3, 1).await.0, StatusCode::FORBIDDEN);
    assert_eq!(ship(&app, &d2.lab, "L-TRACE", Some(&d2), &c3, 1).await.0, StatusCode::FORBIDDEN);
    assert_eq!(ship(&app, &d1.admin, "L-TRACE", None, &c3, 1).await.0, StatusCode::FORBIDDEN);
    let (status, problem) = ship(&app, &admin, "L-TRACE", Some(&c3), &c4, 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields(&problem), ["from_account_id"]);

    // A run file from before the lot was loaded does not count.
    let before =
        upload_run(&app, &c3.scientist, "before.csv", Some("SN-C3"), "sample,value\nA,1\n").await;
    // Someone else's instrument cannot be named.
    let (status, problem) = app
        .post("/v1/documents/uploads", &c3.scientist,
              json!({"filename": "x.csv", "content_type": "text/csv", "size": 4, "instrument_serial": "SN-C4"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    // Instruments report loading lots; a duplicate delivery and an unknown lot change nothing.
    let c3_instrument = as_instrument(&app, "SN-C3", &secret_c3).await;
    let loaded =
        json!({"type": "lot_loaded", "lot_number": "L-TRACE", "event_id": "load-1"}).to_string();
    c3_instrument.send("instruments/SN-C3/events", loaded.as_bytes()).await;
    c3_instrument.send("instruments/SN-C3/events", loaded.as_bytes()).await;
    let unknown = json!({"type": "lot_loaded", "lot_number": "L-NOPE"}).to_string();
    c3_instrument.send("instruments/SN-C3/events", unknown.as_bytes()).await;
    let c4_instrument = as_instrument(&app, "SN-C4", &secret_c4).await;
    c4_instrument
        .send(
            "instruments/SN-C4/events",
            json!({"type": "lot_loaded", "lot_number": "L-TRACE"}).to_string().as_bytes(),
        )
        .await;
    let u_instrument = as_instrument(&app, "SN-U", &secret_u).await;
    u_instrument
        .send(
            "instruments/SN-U/events",
            json!({"type": "lot_loaded", "lot_number": "L-OTHER"}).to_string().as_bytes(),
        )
        .await;
    impact_until(&app, "L-TRACE", |i| i["instruments"].as_array().is_some_and(|a| a.len() == 2))
        .await;
    let ignored = app.metric("portico_lot_uses_ignored_total{reason=\"unknown_lot\"}").await;
    assert!(ignored.is_some_and(|n| n >= 1.0), "the unknown lot is counted: {ignored:?}");

    // Runs after loading: on the instrument, and a file that names the lot.
    let after =
        upload_run(&app, &c3.scientist, "after.csv", Some("SN-C3"), "sample,value\nA,1\nB,2\n")
            .await;
    let named =
        upload_run(&app, &c4.scientist, "named.csv", None, "sample,lot,value\nA,L-TRACE,1\n").await;
    assert_eq!(named["metadata"]["csv"]["lots"], json!(["L-TRACE"]));
    upload_run(
        &app,
        &unrelated.scientist,
        "other.csv",
        Some("SN-U"),
        "sample,lot_number\nA,L-OTHER\n",
    )
    .await;

    let impact =
        impact_until(&app, "L-TRACE", |i| i["documents"].as_array().is_some_and(|d| d.len() == 2))
            .await;
    assert_eq!(impact["product"]["sku"], "RGT-7");
    assert_eq!(impact["recalled"], false);
    assert!(impact["as_of"].is_string(), "{impact}");
    let accounts = ids(&impact["accounts"], "account_id");
    assert_eq!(accounts, [&d1, &d2, &c3, &c4].iter().map(|o| o.id()).collect());
    let c3_entry = impact["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["account_id"] == c3.id().as_str())
        .expect("c3")
        .clone();
    assert_eq!(c3_entry["paths"], json!([[d1.id(), d2.id(), c3.id()]]));
    assert_eq!(ids(&impact["instruments"], "serial"), ["SN-C3", "SN-C4"].map(String::from).into());
    let documents = ids(&impact["documents"], "document_id");
    assert_eq!(documents, [id(&after), id(&named)].into());
    assert!(!documents.contains(&id(&before)));
    let mut told = BTreeSet::new();
    for o in [&d1, &d2, &c3, &c4] {
        told.insert(app.user_id(&o.lab).await);
        told.insert(app.user_id(&o.admin).await);
    }
    assert_eq!(ids(&impact["users"], "user_id"), told);

    // Who may look: staff only; a scientist (or an account admin) gets 404.
    let (status, _) = app.get("/v1/lots/L-TRACE/impact", &app.support_token()).await;
    assert_eq!(status, StatusCode::OK);
    for token in [&c3.scientist, &c3.admin] {
        let (status, _) = app.get("/v1/lots/L-TRACE/impact", token).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let csv = app
        .client
        .get(app.url("/v1/lots/L-TRACE/impact?format=csv"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert!(csv.headers()["content-type"].to_str().expect("type").starts_with("text/csv"));
    let csv = csv.text().await.expect("text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "kind,id,name,account_id,detail,at");
    assert_eq!(lines.len(), 1 + 4 + 2 + 2 + 8, "{csv}");
    let (status, _) = app.get("/v1/lots/L-TRACE/impact?format=xml", &admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The recall: support may not; the admin records it once and everyone is told once.
    let (mut c3_lab_client, _) = listening(&app, "c3-lab", &c3.lab).await;
    let (status, _) =
        app.post("/v1/lots/L-TRACE/recall", &app.support_token(), json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        app.post("/v1/lots/L-TRACE/recall", &c3.scientist, json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, first) = app
        .post("/v1/lots/L-TRACE/recall", &admin, json!({"reason": "Endotoxin above limit"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["notified"].as_array().expect("notified").len(), 8);
    let (topic, payload, qos) =
        c3_lab_client.next(WAIT).await.expect("the recall arrives over MQTT");
    assert!(topic.ends_with("/notifications"));
    assert_eq!(qos, QoS::AtLeastOnce);
    let note: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(note["kind"], "lot_recall");
    assert_eq!(note["data"]["lot_number"], "L-TRACE");

    let (status, second) =
        app.post("/v1/lots/L-TRACE/recall", &admin, json!({"reason": "another reason"})).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["recall"], first["recall"], "the same recall");
    assert!(c3_lab_client.next(Duration::from_millis(700)).await.is_none(), "told once");
    for o in [&d1, &d2, &c3, &c4] {
        for token in [&o.lab, &o.admin] {
            let (_, page) = app.get("/v1/notifications", token).await;
            let recalls: Vec<&Value> = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter(|n| n["kind"] == "lot_recall")
                .collect();
            assert_eq!(recalls.len(), 1, "{page}");
            assert_eq!(recalls[0]["body"], "Endotoxin above limit");
        }
        assert_eq!(recalls_of(&app, &o.scientist).await, 0, "scientists are not told");
    }
    assert_eq!(recalls_of(&app, &unrelated.lab).await, 0, "the unrelated account is not told");
    let notices = app.outbox("lot_recall").await;
    assert_eq!(notices.len(), 8, "{notices:?}");
    assert!(notices.iter().any(|(to, _)| to == "lab@clinic-three.example"));

    // Members see the recall on the lot and its certificate.
    let (status, lot) = app.get("/v1/lots/L-TRACE", &c3.scientist).await;
    assert_eq!(status, StatusCode::OK, "{lot}");
    assert_eq!(lot["recalled"], true);
    assert_eq!(lot["recall"]["reason"], "Endotoxin above limit");
    let pdf = app
        .client
        .get(app.url("/v1/lots/L-TRACE/certificate.pdf"))
        .bearer_auth(&c3.scientist)
        .send()
        .await
        .expect("sent");
    assert_eq!(pdf.status(), StatusCode::OK);
    let text = crate::catalogue::pdf_text(&pdf.bytes().await.expect("pdf"));
    assert!(text.contains("RECALLED") && text.contains("Endotoxin above limit"), "{text}");

    // Rebuilt from the records (by the CLI, while the server runs): the same answers.
    let recalled = impact_until(&app, "L-TRACE", |i| i["lot"]["recall"].is_object()).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["graph", "rebuild"])
        .env("PORTICO_DATA_DIR", &app.data_dir)
        .env("PORTICO_LOG", "warn")
        .output()
        .await
        .expect("portico graph rebuild runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("graph rebuilt") && said.contains("5 shipments"), "{said}");
    let (_, rebuilt) = app.get("/v1/lots/L-TRACE/impact", &admin).await;
    let without_time = |mut v: Value| {
        v["as_of"] = Value::Null;
        v
    };
    assert_eq!(without_time(rebuilt), without_time(recalled));
}
