//! The Snowflake SQL API stand-in (`scripts/snowflake_standin.py`, on fakesnow) for the
//! warehouse's AWS-host tests: started per test on a loopback port with a fresh RSA key pair,
//! stopped when dropped. Needs `pip install fakesnow==0.12.1 snowflake-connector-python==4.8.1`
//! (`.ci/run` installs them).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::KeyPair;
use base64::Engine;

pub const ACCOUNT: &str = "PORTICO-TEST";
pub const USER: &str = "LOADER";

pub struct SnowflakeStandIn {
    pub url: String,
    /// The loader's key (PKCS#8 PEM); the stand-in knows its public half.
    pub private_key_pem: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for SnowflakeStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A fresh RSA key: (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM).
pub fn key_pair() -> (String, String) {
    let pair =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let private: Pkcs8V1Der = pair.as_der().expect("PKCS#8");
    let public = pair.public_key().as_der().expect("SPKI");
    (pem("PRIVATE KEY", private.as_ref()), pem("PUBLIC KEY", public.as_ref()))
}

impl SnowflakeStandIn {
    pub fn start() -> SnowflakeStandIn {
        let dir = tempfile::tempdir().expect("temp dir");
        let (private_key_pem, public_pem) = key_pair();
        let public = dir.path().join("loader.pub.pem");
        std::fs::write(&public, public_pem).expect("public key");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/snowflake_standin.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([
                "--public-key",
                public.to_str().expect("utf-8"),
                "--account",
                ACCOUNT,
                "--user",
                USER,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the Snowflake stand-in");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the stand-in's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the Snowflake stand-in did not start ({line:?}); it needs \
                     `pip install fakesnow==0.12.1 snowflake-connector-python==4.8.1`"
                )
            })
            .to_string();
        SnowflakeStandIn { url, private_key_pem, child, _dir: dir }
    }

    /// Scripts how the next statements are answered (503: refused unrun, 202: run, then
    /// "still running" once).
    pub async fn script(&self, answers: &[u16]) {
        let response = reqwest::Client::new()
            .post(format!("{}/standin/script", self.url))
            .json(&serde_json::json!({"answers": answers}))
            .send()
            .await
            .expect("scripted");
        assert!(response.status().is_success());
    }

    /// What the stand-in did: `executed`, `replayed`, `refused`, `unauthorized`.
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/standin/stats", self.url))
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }
}
