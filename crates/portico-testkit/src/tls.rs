//! A test certificate authority, made with the `openssl` command: a CA and server certificates
//! for `localhost` and `127.0.0.1` that it signs, as PEM files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    dir: tempfile::TempDir,
    key: PathBuf,
    pem: PathBuf,
}

/// A server certificate and its key.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, pem) = (dir.path().join("ca.key"), dir.path().join("ca.pem"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            text(&key),
            "-out",
            text(&pem),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        TestCa { dir, key, pem }
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
        let path = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        let (key, csr, cert, ext) = (path("key"), path("csr"), path("pem"), path("ext"));
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n\
             basicConstraints=critical,CA:FALSE\n",
        )
        .expect("extensions file");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            text(&key),
            "-out",
            text(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            text(&csr),
            "-CA",
            text(&self.pem),
            "-CAkey",
            text(&self.key),
            "-CAcreateserial",
            "-out",
            text(&cert),
            "-days",
            "2",
            "-extfile",
            text(&ext),
        ]);
        Issued { cert, key }
    }
}
