//! The `portico` command line as a user runs it.

use std::process::Command;

use crate::helpers::write_file;

/// Every listener on a port the system picks.
const ANY_PORTS: [(&str, &str); 4] = [
    ("PORTICO_HTTP_ADDR", "127.0.0.1:0"),
    ("PORTICO_METRICS_ADDR", "127.0.0.1:0"),
    ("PORTICO_MQTT_ADDR", "127.0.0.1:0"),
    ("PORTICO_MQTT_WS_ADDR", "127.0.0.1:0"),
];

fn portico(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
    command.args(args).env("PORTICO_DATA_DIR", data_dir);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("portico runs")
}

#[test]
fn config_prints_effective_toml_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "region = \"eu-west-1\"\n[http]\naddr = \"127.0.0.1:9000\"\n";
    let file = write_file(&dir, "portico.toml", text);
    let out = portico(
        dir.path(),
        &["--config", file.to_str().expect("utf-8"), "config"],
        &[
            ("PORTICO_SENDGRID_API_KEY", "SG.very-secret"),
            ("PORTICO_AUTH_AUDIENCE", "api://portal"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
    assert_eq!(parsed["region"].as_str(), Some("eu-west-1"));
    assert_eq!(parsed["http"]["addr"].as_str(), Some("127.0.0.1:9000"));
    assert_eq!(parsed["auth"]["audience"].as_str(), Some("api://portal"));
    assert!(!text.contains("very-secret"));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = portico(dir.path(), &["config"], &[("PORTICO_HTTP_ADDR", "not an address")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.addr"), "{stderr}");
}

#[test]
fn a_mistyped_variable_stops_startup_and_names_the_right_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = portico(
        dir.path(),
        &["serve"],
        &[&ANY_PORTS[..], &[("PORTICO_HTTP_ADRR", "127.0.0.1:0")]].concat(),
    );
    assert!(!out.status.success(), "serve started with a typo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORTICO_HTTP_ADRR"), "{stderr}");
    assert!(stderr.contains("did you mean `PORTICO_HTTP_ADDR`"), "{stderr}");
    // A variable the docs name, once silently dropped, now reaches the configuration.
    let out = portico(
        dir.path(),
        &["config"],
        &[("PORTICO_DOCUMENTS_CERTIFICATE_ISSUER", "Acme Reagents GmbH")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("certificate_issuer = \"Acme Reagents GmbH\""), "{text}");
}

#[test]
fn token_prints_only_a_token_the_data_dir_issuer_signed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = portico(
        dir.path(),
        &["token", "--sub", "alice@acme.example", "--groups", "portico-admins,lab", "--ttl", "15m"],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let token = text.trim_end_matches('\n');
    assert_eq!(token.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3);

    let config =
        crate::helpers::test_config(dir.path(), &[("PORTICO_HTTP_ADDR", "127.0.0.1:8080")]);
    let issuer = portico_local::load_dev_issuer(&config).expect("issuer");
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let claims =
        runtime.block_on(issuer.verifier(&["RS256".into()], 60).verify(token)).expect("verifies");
    assert_eq!(claims.sub, "alice@acme.example");
    assert_eq!(claims.groups, vec!["portico-admins".to_string(), "lab".to_string()]);
    assert!(claims.exp - claims.iat.unwrap_or(0) == 900);
    for claim in ["uid", "cid", "jti"] {
        assert!(serde_json::to_value(&claims).expect("json")[claim].is_string(), "{claim}");
    }

    let out = portico(dir.path(), &["token", "--sub", "x", "--ttl", "forever"], &[]);
    assert!(!out.status.success());
    let out = portico(
        dir.path(),
        &["token", "--sub", "x"],
        &[("PORTICO_AUTH_ISSUER", "https://example.okta.com/oauth2/default")],
    );
    assert!(!out.status.success(), "no minting for an external issuer");
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = portico(dir.path(), &["--version"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("portico "));
    let out = portico(dir.path(), &["help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "token", "config"] {
        assert!(help.contains(command), "{help}");
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, log) = crate::helpers::start_binary(dir.path()).await;
    let health = reqwest::get(format!("{base}/healthz")).await.expect("served");
    assert!(health.status().is_success());
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("exit status");
    assert!(status.success(), "{status}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let lines = log.lock().expect("log").clone();
    assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{lines:?}");
}

#[test]
fn a_bad_rules_file_stops_startup_with_the_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "[[rules]]\nname = \"broken\"\nfunction = \"instrument_alert\"\nsql = \"SELECT * FROM 'a/+' WHERE severity = \"\n";
    let rules = write_file(&dir, "rules.toml", text);
    let out = portico(
        dir.path(),
        &["serve"],
        &[&ANY_PORTS[..], &[("PORTICO_MQTT_RULES_FILE", rules.to_str().expect("utf-8"))]].concat(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rule `broken`: column 38"), "{stderr}");
}

#[tokio::test]
async fn the_worker_process_serves_its_own_metrics() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("worker")
        .env("PORTICO_DATA_DIR", dir.path())
        .env("PORTICO_METRICS_ADDR", "127.0.0.1:0")
        .env("PORTICO_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portico worker starts");
    let mut lines = BufReader::new(worker.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["listener"] == "metrics" {
                return event["addr"].as_str().expect("addr").to_string();
            }
        }
        panic!("the worker exited before serving metrics");
    })
    .await
    .expect("a metrics listener within 30 s");
    // The queue gauges appear once the worker has looked at its queue (every 2 s).
    let mut body = String::new();
    for _ in 0..50 {
        body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("text");
        if body.contains("portico_queue_depth") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(body.contains("portico_queue_depth{queue=\"document-uploads\"}"), "{body}");
    worker.start_kill().expect("stopped");
}

#[test]
fn every_variable_the_docs_and_templates_name_is_read() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut texts = Vec::new();
    for file in [
        "README.md",
        "deploy/README.md",
        "deploy/cloudformation/portico.yaml",
        "deploy/terraform/main.tf",
    ] {
        texts.push(std::fs::read_to_string(root.join(file)).expect(file));
    }
    let mut names: Vec<String> = Vec::new();
    for text in &texts {
        for (i, _) in text.match_indices("PORTICO_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = name.trim_end_matches('_').to_string();
            // The README's own example of a typo.
            if name != "PORTICO_HTTP_ADRR" && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        let env: std::collections::BTreeMap<String, String> =
            [(name.clone(), "1".to_string())].into_iter().collect();
        if let Err(e) = portico_config::Config::load(None, &env) {
            assert!(!e.to_string().contains("unknown variable"), "{name}: {e}");
        }
    }
}
