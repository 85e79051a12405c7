//! The catalogue and Certificates of Analysis through the API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, header, id, spawn_app};

fn qc_tests(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"name": format!("Purity {i}"), "method": "HPLC", "specification": "≥ 98.0 %", "result": "99.1", "unit": "%", "pass": i != 2}))
            .collect(),
    )
}

async fn pdf(app: &TestApp, token: &str, lot: &str) -> (StatusCode, Vec<u8>, Option<String>) {
    let response = app
        .client
        .get(app.url(&format!("/v1/lots/{lot}/certificate.pdf")))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let content_type = header(&response, "content-type").map(str::to_string);
    (status, response.bytes().await.expect("body").to_vec(), content_type)
}

pub(crate) fn pdf_text(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) is installed");
    child.stdin.take().expect("stdin").write_all(bytes).expect("written");
    String::from_utf8_lossy(&child.wait_with_output().expect("ran").stdout).into_owned()
}

#[tokio::test]
async fn customers_who_received_a_lot_download_its_certificate() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let acme = app.create_account("Acme").await;
    let globex = app.create_account("Globex").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let dan = app.add_user(&globex, "dan@globex.example", &["lab_manager"]).await;

    let (status, product) = app
        .post(
            "/v1/products",
            &admin,
            json!({"sku": "RGT-100", "name": "Taq-Polymerase Größe M", "category": "Enzymes"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let lot = json!({"lot_number": "L2026-0042", "sku": "RGT-100", "manufactured_on": "2026-10-01", "expires_on": "2028-10-01", "qc_tests": qc_tests(12)});
    let (status, created) = app.post("/v1/lots", &admin, lot.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = app.post("/v1/lots", &admin, lot).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, shipment) = app.post("/v1/shipments", &admin, json!({"lot_number": "L2026-0042", "account_id": id(&acme), "shipped_on": "2026-11-02", "quantity": 5})).await;
    assert_eq!(status, StatusCode::CREATED, "{shipment}");

    let (status, bytes, content_type) = pdf(&app, &carol, "L2026-0042").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/pdf"));
    assert!(bytes.starts_with(b"%PDF-"));
    let text = pdf_text(&bytes);
    for needle in
        ["L2026-0042", "Taq-Polymerase Größe M", "RGT-100", "Purity 11", "Fail", "2028-10-01"]
    {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // Rendered once: the second download is the same bytes.
    let (_, again, _) = pdf(&app, &carol, "L2026-0042").await;
    assert_eq!(again, bytes);
    // Support and admins may; another account's member may not even know the lot exists.
    assert_eq!(pdf(&app, &app.support_token(), "L2026-0042").await.0, StatusCode::OK);
    assert_eq!(pdf(&app, &dan, "L2026-0042").await.0, StatusCode::NOT_FOUND);
    assert_eq!(pdf(&app, &admin, "NO-SUCH-LOT").await.0, StatusCode::NOT_FOUND);
    let (status, seen) = app.get("/v1/lots/L2026-0042", &carol).await;
    assert_eq!((status, seen["qc_tests"].as_array().map(Vec::len)), (StatusCode::OK, Some(12)));
    let (_, shipments) = app.get("/v1/shipments", &dan).await;
    assert_eq!(shipments["items"], json!([]));
    let (_, products) = app.get("/v1/products", &carol).await;
    assert_eq!(products["items"][0]["sku"], "RGT-100");
}

#[tokio::test]
async fn a_long_certificate_breaks_across_pages() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    app.post(
        "/v1/products",
        &admin,
        json!({"sku": "KIT-9", "name": "Extraction kit", "category": "Kits"}),
    )
    .await;
    let (status, body) = app
        .post("/v1/lots", &admin, json!({"lot_number": "LONG-1", "sku": "KIT-9", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(200)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, bytes, _) = pdf(&app, &admin, "LONG-1").await;
    assert_eq!(status, StatusCode::OK);
    let text = pdf_text(&bytes);
    let pages = text.matches('\u{c}').count().max(1);
    assert!(pages >= 4, "{pages} pages");
    assert!(text.contains("Purity 199"));
    assert!(
        text.matches("Specification").count() >= pages,
        "the table header repeats on every page"
    );
}

#[tokio::test]
async fn catalogue_input_is_checked() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let acme = app.create_account("Acme").await;
    let carol = app.add_user(&acme, "carol@acme.example", &["scientist"]).await;
    let (status, _) =
        app.post("/v1/products", &carol, json!({"sku": "X-1", "name": "x", "category": "y"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) = app
        .post("/v1/products", &admin, json!({"sku": "../etc", "name": "", "category": "y"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    app.post("/v1/products", &admin, json!({"sku": "P-1", "name": "Product", "category": "C"}))
        .await;
    let cases = [
        (
            json!({"lot_number": "L1", "sku": "NOPE", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(1)}),
            "sku",
        ),
        (
            json!({"lot_number": "L1", "sku": "P-1", "manufactured_on": "2026-13-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(1)}),
            "manufactured_on",
        ),
        (
            json!({"lot_number": "L1", "sku": "P-1", "manufactured_on": "2026-05-01", "expires_on": "2026-01-01", "qc_tests": qc_tests(1)}),
            "expires_on",
        ),
        (
            json!({"lot_number": "L1", "sku": "P-1", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": []}),
            "qc_tests",
        ),
        (
            json!({"lot_number": "L 1/2", "sku": "P-1", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(1)}),
            "lot_number",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.post("/v1/lots", &admin, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem) = app.post("/v1/shipments", &admin, json!({"lot_number": "NOPE", "account_id": "nope", "shipped_on": "2026-01-01", "quantity": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

#[tokio::test]
async fn ids_that_name_stored_objects_are_refused_unless_storage_takes_them() {
    let app = spawn_app().await;
    let admin = app.admin_token();
    let acme = app.create_account("Acme").await;
    app.post("/v1/products", &admin, json!({"sku": "P-1", "name": "Product", "category": "C"}))
        .await;
    // Each of these once passed validation and then made every certificate request a 500.
    for lot in ["L..2", "L2.", "..", "L.-..x"] {
        let (status, problem) = app
            .post(
                "/v1/lots",
                &admin,
                json!({"lot_number": lot, "sku": "P-1", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(1)}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{lot}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "lot_number", "{problem}");
    }
    for (path, body, field) in [
        ("/v1/products", json!({"sku": "P..1", "name": "x", "category": "y"}), "sku"),
        (
            "/v1/instruments",
            json!({"serial": "SN..1", "model": "m", "account_id": id(&acme), "name": "n"}),
            "serial",
        ),
    ] {
        let (status, problem) = app.post(path, &admin, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // A dotted lot number that storage takes works end to end.
    let (status, problem) = app
        .post(
            "/v1/lots",
            &admin,
            json!({"lot_number": "L.2026.7", "sku": "P-1", "manufactured_on": "2026-01-01", "expires_on": "2027-01-01", "qc_tests": qc_tests(1)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{problem}");
    let (status, _, _) = pdf(&app, &admin, "L.2026.7").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_demo_world_lets_a_customer_fetch_a_certificate_and_loads_once() {
    let app = spawn_app().await;
    let demo = portico_local::demo::seed(&app.composition)
        .await
        .expect("seeds")
        .expect("an empty data dir gets the demo");
    let logins: Vec<&str> = demo.logins.iter().map(|l| l.sub.as_str()).collect();
    assert_eq!(logins.len(), 8, "{logins:?}");
    assert!(logins.contains(&"admin@portico.example"));
    assert_eq!(demo.instruments.len(), 3);
    // Carol's account received the demo lot; Erin's through the distributor Initech.
    let (status, bytes, _) = pdf(&app, &app.token("carol@acme.example", &[]), "L2026-0042").await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.starts_with(b"%PDF-"));
    let (status, _, _) = pdf(&app, &app.token("erin@globex.example", &[]), "L2026-0042").await;
    assert_eq!(status, StatusCode::OK);
    let (status, impact) = app.get("/v1/lots/L2026-0042/impact", &app.support_token()).await;
    assert_eq!(status, StatusCode::OK, "{impact}");
    let (status, _, _) = pdf(&app, &app.token("nobody@else.example", &[]), "L2026-0042").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no account, no lots");
    // A second start on the same data dir leaves it as it is.
    let again = portico_local::demo::seed(&app.composition).await.expect("runs");
    assert!(again.is_none());
}
