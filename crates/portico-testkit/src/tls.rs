//! A test certificate authority (`scripts/test_ca.sh`, openssl): a CA and server certificates
//! for `localhost` and `127.0.0.1` that it signs, as PEM files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    dir: tempfile::TempDir,
    pem: PathBuf,
}

/// A server certificate and its key.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn test_ca(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test_ca.sh");
    let output = Command::new("bash").arg(script).args(args).output().expect("bash runs");
    assert!(
        output.status.success(),
        "test_ca.sh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        test_ca(&["ca", text(dir.path()), name]);
        let pem = dir.path().join("ca.pem");
        TestCa { dir, pem }
    }

    /// The CA's certificate, for clients to trust.
    pub fn pem(&self) -> &Path {
        &self.pem
    }

    pub fn pem_text(&self) -> String {
        std::fs::read_to_string(&self.pem).expect("CA pem")
    }

    /// A new key and a certificate for `localhost` / `127.0.0.1` named `name`.
    pub fn issue(&self, name: &str) -> Issued {
        test_ca(&["issue", text(self.dir.path()), name]);
        let path = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        Issued { cert: path("pem"), key: path("key") }
    }
}
