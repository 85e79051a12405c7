//! TLS on the local host's listeners: HTTPS beside plaintext with links that follow the
//! listener's scheme, a key that does not fit refused at start, and certificate reload (a
//! renewed pair is used on HTTPS and MQTTS without a restart; a half-written pair is not).
//! Clients nobody here wrote (curl, mosquitto, paho over TLS and WSS) are in
//! `scripts/tls_interop.py`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_testkit::tls::{Issued, TestCa};
use portico_testkit::{spawn_on, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn tls_env(issued: &Issued, extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("PORTICO_TLS_CERT".to_string(), issued.cert.display().to_string()),
        ("PORTICO_TLS_KEY".to_string(), issued.key.display().to_string()),
        ("PORTICO_HTTPS_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("PORTICO_MQTTS_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("PORTICO_WSS_ADDR".to_string(), "127.0.0.1:0".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn config(dir: &tempfile::TempDir, env: &[(String, String)]) -> portico_config::Config {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    test_config(dir.path(), &pairs)
}

/// The DER certificate a TLS listener presents, verified against `ca`.
async fn presented(addr: SocketAddr, ca: &TestCa) -> Vec<u8> {
    try_presented(addr, ca).await.expect("handshake")
}

/// As `presented`; the broker's old TLS listeners close once a reload's new ones run, and a
/// connection the kernel queued on an old one in that instant is reset, so callers may retry.
async fn try_presented(addr: SocketAddr, ca: &TestCa) -> std::io::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca.pem()).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await?;
    Ok(tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec())
}

fn der(issued: &Issued) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_file(&issued.cert).expect("pem").to_vec()
}

#[tokio::test]
async fn https_serves_the_api_beside_http_and_links_follow_the_listener() {
    let ca = TestCa::new("Portico Test CA");
    let issued = ca.issue("server");
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_on(config(&dir, &tls_env(&issued, &[]))).await;
    let https = app.https_addr.expect("an HTTPS listener");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem_text().as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let https_url = |path: &str| format!("https://localhost:{}{path}", https.port());
    let ready = client.get(https_url("/readyz")).send().await.expect("https answers");
    assert_eq!(ready.status(), StatusCode::OK);

    let account = app.create_account("Acme").await;
    let carol = app.add_user(&account, "carol@acme.example", &["scientist"]).await;
    let ticket = |client: &reqwest::Client, base: String| {
        let request = client
            .post(format!("{base}/v1/documents/uploads"))
            .bearer_auth(&carol)
            .json(&json!({"filename": "run.csv", "content_type": "text/csv", "size": 10}));
        async move {
            let response = request.send().await.expect("sent");
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.expect("json")
        }
    };
    let over_tls = ticket(&client, https_url("")).await;
    let link = over_tls["upload_url"].as_str().expect("link");
    assert!(link.starts_with(&https_url("/")), "{link}");
    let over_plain = ticket(&app.client, format!("http://{}", app.addr)).await;
    let link = over_plain["upload_url"].as_str().expect("link");
    assert!(link.starts_with(&format!("http://{}/", app.addr)), "{link}");
    // The HTTPS link works: the signed upload goes through the TLS listener.
    let upload = client
        .put(over_tls["upload_url"].as_str().expect("link"))
        .header("content-type", "text/csv")
        .header("if-none-match", "*")
        .body("a,b\n1,2\n3\n")
        .send()
        .await
        .expect("sent");
    assert_eq!(upload.status(), StatusCode::OK, "{:?}", upload.text().await);
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_refused_at_start() {
    let ca = TestCa::new("Portico Test CA");
    let (one, other) = (ca.issue("one"), ca.issue("other"));
    let mixed = Issued { cert: one.cert.clone(), key: other.key.clone() };
    let dir = tempfile::tempdir().expect("dir");
    let err = portico_local::Server::bind(&config(&dir, &tls_env(&mixed, &[])))
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("does not fit the certificate"), "{message}");
    let missing = Issued { cert: dir.path().join("nowhere.pem"), key: one.key.clone() };
    let err = portico_local::Server::bind(&config(&dir, &tls_env(&missing, &[])))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("nowhere.pem"), "{err:#}");
}

#[tokio::test]
async fn a_renewed_certificate_is_used_without_a_restart_and_a_half_written_one_is_not() {
    let ca = TestCa::new("Portico Test CA");
    let (first, renewed, stray) = (ca.issue("first"), ca.issue("renewed"), ca.issue("stray"));
    let files = tempfile::tempdir().expect("dir");
    let live = Issued { cert: files.path().join("cert.pem"), key: files.path().join("key.pem") };
    std::fs::copy(&first.cert, &live.cert).expect("copy");
    std::fs::copy(&first.key, &live.key).expect("copy");
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_on(config(
        &dir,
        &tls_env(&live, &[("PORTICO_TLS_RELOAD_SECS", "1"), ("PORTICO_TLS_PLAINTEXT", "false")]),
    ))
    .await;
    // With plaintext off, the test app's addresses are the TLS listeners'.
    let (https, mqtts) = (app.addr, app.mqtt_addr);
    assert_eq!(presented(https, &ca).await, der(&first));
    assert_eq!(presented(mqtts, &ca).await, der(&first));

    // A key written before its certificate: the pair does not fit, and the old one stays.
    std::fs::copy(&stray.key, &live.key).expect("copy");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(presented(https, &ca).await, der(&first));
    assert_eq!(presented(mqtts, &ca).await, der(&first));

    std::fs::copy(&renewed.key, &live.key).expect("copy");
    std::fs::copy(&renewed.cert, &live.cert).expect("copy");
    for addr in [https, mqtts, app.mqtt_ws_addr] {
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = try_presented(addr, &ca).await.unwrap_or_default();
            if seen == der(&renewed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, der(&renewed), "{addr} presents the renewed certificate");
    }
}
