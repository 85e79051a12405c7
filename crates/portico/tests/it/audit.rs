//! The audit trail as a quality team uses it: every change of a record through the API, MQTT
//! rules and the worker leaves exactly one record with its actor, request and diff; the listing
//! keeps to the policy; and tampering with the database (an edit, a deletion, a reorder) is found
//! by `portico audit verify`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, id, put, request, settled, spawn_app};
use crate::mqtt::as_instrument;

/// Every record, newest first (as an admin).
async fn trail(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/v1/audit?limit=200", &app.admin_token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

/// Runs a POST as the holder of `token`, and answers the body, the request id, and the records it
/// added to the trail (oldest first).
async fn audited(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Value,
) -> (Value, String, Vec<Value>) {
    let before = trail(app).await.len();
    let response =
        app.client.post(app.url(path)).bearer_auth(token).json(&body).send().await.expect("sent");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    let request_id = response.headers()["x-request-id"].to_str().expect("request id").to_string();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let records = trail(app).await;
    let mut added = records[..records.len() - before].to_vec();
    added.reverse();
    (answer, request_id, added)
}

fn change<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    record["changes"].as_array()?.iter().find(|c| c["field"] == field)
}

#[tokio::test]
async fn every_change_leaves_one_attributed_record_and_the_listing_keeps_to_the_policy() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    // Sign-ins write their users' records first: out of the way before counting.
    let _ = app.get("/v1/me", &admin).await;

    let (account, request_id, added) =
        audited(&app, &admin, "/v1/accounts", json!({"name": "Acme Labs", "kind": "customer"}))
            .await;
    assert_eq!(added.len(), 1, "{added:?}");
    let record = &added[0];
    assert_eq!(record["action"], "create");
    assert_eq!(record["target_kind"], "account");
    assert_eq!(record["target_id"], account["id"]);
    assert_eq!(record["account_id"], account["id"]);
    assert_eq!(record["actor"]["kind"], "user");
    assert_eq!(record["actor"]["sub"], "admin@portico.example");
    assert_eq!(record["actor"]["roles"], json!(["admin"]));
    assert_eq!(record["request_id"], request_id.as_str());
    assert_eq!(change(record, "name").expect("name")["new"], "Acme Labs");
    assert!(record["digest"].as_str().is_some_and(|d| d.len() == 64));

    let path = format!("/v1/accounts/{}/users", id(&account));
    let (user, _, added) = audited(
        &app,
        &admin,
        &path,
        json!({"sub": "aa@acme.example", "email": "aa@acme.example", "display_name": "Ann", "roles": ["account_admin"]}),
    )
    .await;
    assert_eq!(added.len(), 1);
    assert_eq!((&added[0]["target_kind"], &added[0]["target_id"]), (&json!("user"), &user["id"]));
    assert_eq!(change(&added[0], "roles").expect("roles")["new"], json!(["account_admin"]));

    let (registered, _, added) = audited(
        &app,
        &admin,
        "/v1/instruments",
        json!({"serial": "SN-A1", "model": "Sequencer X", "account_id": id(&account), "name": "Seq"}),
    )
    .await;
    assert_eq!(added.len(), 1);
    assert_eq!(change(&added[0], "device_secret").expect("secret")["new"], "(changed)");
    let secret = registered["device_secret"].as_str().expect("secret").to_string();
    assert!(
        !serde_json::to_string(&trail(&app).await).expect("json").contains(&secret),
        "a device secret never enters the trail"
    );

    let (_, _, added) = audited(
        &app,
        &admin,
        "/v1/products",
        json!({"sku": "RGT-1", "name": "Buffer", "category": "Reagents"}),
    )
    .await;
    assert_eq!((added.len(), &added[0]["target_kind"]), (1, &json!("product")));
    let lot = json!({"lot_number": "L-A", "sku": "RGT-1", "manufactured_on": "2026-10-01", "expires_on": "2027-10-01",
        "qc_tests": [{"name": "pH", "method": "USP <791>", "specification": "7.2-7.6", "result": "7.4", "unit": "", "pass": true}]});
    let (_, _, added) = audited(&app, &admin, "/v1/lots", lot).await;
    assert_eq!((added.len(), &added[0]["target_id"]), (1, &json!("L-A")));
    let (_, _, added) = audited(
        &app,
        &admin,
        "/v1/shipments",
        json!({"lot_number": "L-A", "account_id": id(&account), "shipped_on": "2026-11-01", "quantity": 5}),
    )
    .await;
    assert_eq!(added.len(), 1);
    assert_eq!(
        (&added[0]["target_kind"], &added[0]["account_id"]),
        (&json!("shipment"), &account["id"])
    );

    // An instrument's event: the instrument is the actor; a redelivery writes nothing more.
    let before = trail(&app).await.len();
    let instrument = as_instrument(&app, "SN-A1", &secret).await;
    let loaded = json!({"type": "lot_loaded", "lot_number": "L-A", "event_id": "ev-1"}).to_string();
    instrument.send("instruments/SN-A1/events", loaded.as_bytes()).await;
    instrument.send("instruments/SN-A1/events", loaded.as_bytes()).await;
    let mut records = trail(&app).await;
    for _ in 0..100 {
        if records.len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        records = trail(&app).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = trail(&app).await;
    assert_eq!(records.len(), before + 1, "one lot use, recorded once");
    assert_eq!(records[0]["target_kind"], "lot_use");
    assert_eq!(
        records[0]["actor"],
        json!({"kind": "instrument", "id": "SN-A1", "sub": null, "roles": []})
    );
    assert!(records[0]["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    // A recall says why.
    let (_, _, added) =
        audited(&app, &admin, "/v1/lots/L-A/recall", json!({"reason": "pH out of range"})).await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["action"], "update");
    assert_eq!(added[0]["reason"], "pH out of range");
    assert!(change(&added[0], "recall").is_some_and(|c| c["old"].is_null()), "{}", added[0]);
    // The recall notice names that record.
    let (_, notices) = app.get("/v1/notifications", &app.token("aa@acme.example", &[])).await;
    let notice = notices["items"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["kind"] == "lot_recall"))
        .cloned()
        .expect("a recall notice");
    assert_eq!(notice["data"]["audit"]["seq"], added[0]["seq"], "{notice}");
    assert_eq!(notice["data"]["audit"]["digest"], added[0]["digest"]);

    // An upload: the user creates the document, the worker checks it.
    let scientist = app.add_user(&account, "sci@acme.example", &["scientist"]).await;
    let _ = app.get("/v1/me", &scientist).await;
    let before = trail(&app).await.len();
    let body = b"sample,value\nA,1\n".to_vec();
    let (status, ticket) = request(&app, &scientist, "run.csv", "text/csv", body.len()).await;
    assert_eq!(status, StatusCode::CREATED);
    let upload = ticket["upload_url"].as_str().expect("url").to_string();
    assert_eq!(put(&app, &upload, "text/csv", body).await.0, StatusCode::OK);
    let document = settled(&app, &scientist, ticket["document_id"].as_str().expect("id")).await;
    let records: Vec<Value> = trail(&app).await;
    let mine: Vec<&Value> = records[..records.len() - before]
        .iter()
        .filter(|r| r["target_id"] == document["id"])
        .collect();
    assert!(mine.len() >= 2, "{mine:?}");
    let created = mine.last().expect("the creation");
    assert_eq!(
        (&created["action"], &created["actor"]["sub"]),
        (&json!("create"), &json!("sci@acme.example"))
    );
    assert_eq!(
        (&mine[0]["actor"]["kind"], &mine[0]["actor"]["id"]),
        (&json!("system"), &json!("process_upload")),
        "the worker's check is the worker's: {mine:?}"
    );
    assert_eq!(change(mine[0], "status").expect("status")["new"], "ready");

    // The listing: by target and actor; support reads; an account admin reads their own
    // account's records only; members do not.
    let (_, lot_history) = app.get("/v1/audit?target=lot:L-A", &admin).await;
    let actions: Vec<&Value> =
        lot_history["items"].as_array().expect("items").iter().map(|r| &r["action"]).collect();
    assert_eq!(actions, [&json!("update"), &json!("create")]);
    let (_, by_instrument) = app.get("/v1/audit?actor=SN-A1", &app.support_token()).await;
    assert_eq!(by_instrument["items"].as_array().map(Vec::len), Some(1));
    let other = app.create_account("Other Lab").await;
    let account_admin = app.token("aa@acme.example", &[]);
    let (status, own) = app.get("/v1/audit?limit=200", &account_admin).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let own = own["items"].as_array().expect("items").clone();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r["account_id"] == account["id"]), "{own:?}");
    let (_, theirs) =
        app.get(&format!("/v1/audit?target=account:{}", id(&other)), &account_admin).await;
    assert_eq!(theirs["items"], json!([]), "another account's records stay out of sight");
    assert_eq!(app.get("/v1/audit", &scientist).await.0, StatusCode::FORBIDDEN);

    // CSV: a row per changed field.
    let response = app
        .client
        .get(app.url("/v1/audit?format=csv&target=instrument:SN-A1"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/csv")));
    let csv = response.text().await.expect("text");
    assert!(csv.starts_with("seq,at,actor_kind,"), "{csv}");
    assert!(
        csv.lines().any(|l| l.contains(",device_secret,") && l.contains(",(changed),")),
        "{csv}"
    );
    assert_eq!(app.get("/v1/audit?format=xml", &admin).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

/// `portico audit verify` on a data dir.
async fn verify(data_dir: &std::path::Path) -> (bool, String) {
    let output = crate::helpers::run_portico(data_dir, &["audit", "verify"]).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A trail of a few records, and the database under it opened as an attacker would.
async fn trail_of_five() -> (TestApp, rusqlite::Connection) {
    let app = spawn_app().await;
    for name in ["One", "Two", "Three", "Four", "Five"] {
        app.create_account(name).await;
    }
    let conn = rusqlite::Connection::open(app.data_dir.join("portico.db")).expect("db");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    (app, conn)
}

#[tokio::test]
async fn tampering_with_the_database_is_found_by_audit_verify() {
    let (app, conn) = trail_of_five().await;
    let (ok, text) = verify(&app.data_dir).await;
    assert!(ok && text.contains("intact"), "{text}");
    let records: i64 =
        conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).expect("count");
    assert!(records >= 5);

    // Through SQLite the trail is append-only.
    let refused = conn.execute("UPDATE audit SET action = 'create' WHERE seq = 1", []);
    assert!(refused.is_err_and(|e| e.to_string().contains("append-only")));
    assert!(conn.execute("DELETE FROM audit WHERE seq = 1", []).is_err());

    // Around it: an edited record.
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .expect("drop");
    conn.execute(
        "UPDATE audit SET body = replace(body, 'Three', 'Tree') WHERE body LIKE '%Three%'",
        [],
    )
    .expect("edit");
    let (ok, text) = verify(&app.data_dir).await;
    assert!(!ok && text.contains("edited"), "{text}");
}

#[tokio::test]
async fn a_deleted_or_reordered_record_is_found_by_audit_verify() {
    let (app, conn) = trail_of_five().await;
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .expect("drop");
    conn.execute("DELETE FROM audit WHERE seq = 3", []).expect("delete");
    let (ok, text) = verify(&app.data_dir).await;
    assert!(!ok && text.contains("record 3 is missing"), "{text}");

    let (app, conn) = trail_of_five().await;
    conn.execute_batch(
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET seq = -2 WHERE seq = 2;
         UPDATE audit SET seq = 2 WHERE seq = 3;
         UPDATE audit SET seq = 3 WHERE seq = -2;",
    )
    .expect("swap");
    let (ok, text) = verify(&app.data_dir).await;
    assert!(!ok && text.contains("broken at record 2"), "{text}");
}

#[tokio::test]
async fn signed_daily_exports_pin_the_chain_so_a_rewritten_history_shows() {
    let (app, conn) = trail_of_five().await;
    let export = app.composition.audit_export.clone().expect("the local backend exports");
    // As if the day were over: everything so far goes into today's export.
    let tomorrow = portico_core::domain::unix_ms(time::OffsetDateTime::now_utc()) + 86_400_000;
    let days = export.export_due(tomorrow).expect("exported");
    assert_eq!(days.len(), 1, "{days:?}");
    let dir = app.data_dir.join("audit");
    let data = dir.join(format!("audit-{}.ndjson", days[0]));
    let lines = std::fs::read_to_string(&data).expect("export");
    assert!(lines.lines().count() >= 5);
    assert!(std::fs::metadata(&data).expect("meta").permissions().readonly(), "written once");
    assert_eq!(export.export_due(tomorrow).expect("again"), Vec::<String>::new(), "once a day");
    let (ok, text) = verify(&app.data_dir).await;
    assert!(ok && text.contains("1 signed daily exports match"), "{text}");

    // Rewrite history and every digest after it: the chain alone looks whole again...
    conn.execute_batch("DROP TRIGGER audit_no_update;").expect("drop");
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, body FROM audit ORDER BY seq")
        .expect("select")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut prev = portico_core::audit::GENESIS.to_string();
    let mut rewritten = None;
    for (seq, body) in rows {
        let body = if body.contains("\"Two\"") {
            rewritten = Some(seq);
            body.replace("\"Two\"", "\"Deux\"")
        } else {
            body
        };
        let digest = portico_core::audit::digest(&prev, &body);
        conn.execute(
            "UPDATE audit SET body = ?1, prev = ?2, digest = ?3 WHERE seq = ?4",
            rusqlite::params![body, prev, digest, seq],
        )
        .expect("rewrite");
        prev = digest;
    }
    // ...but not against what was signed.
    let (ok, text) = verify(&app.data_dir).await;
    let (_, chain_alone) = app.get("/v1/audit?limit=1", &app.admin_token()).await;
    assert!(chain_alone["items"][0]["digest"].is_string());
    assert!(!ok && text.contains("does not match its export"), "{text}");
    let rewritten = rewritten.expect("a record of account Two");
    assert!(text.contains(&format!("record {rewritten} ")), "{text}");
}
