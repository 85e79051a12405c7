//! The audit trail's daily export (the local backend): each finished UTC day's records go to
//! `<data_dir>/audit/audit-YYYY-MM-DD.ndjson` (one record per line, as stored: the canonical
//! JSON, `prev` and `digest`), written once (never replaced, then read-only), with
//! `audit-YYYY-MM-DD.ndjson.sig`: the day's first and last record, the chain's head digest at the
//! end of the day, the file's SHA-256, and an Ed25519 signature over them. The signing key is
//! made on the first export (`signing-key.pk8`, owner-only; `signing-key.pub` beside it).
//!
//! Why: the chain shows an edited, deleted or reordered record, but someone who can write the
//! database could rewrite every digest after the one they changed. A signed export (kept
//! somewhere the data dir's users cannot write, with the public key) pins each day's head:
//! `portico audit verify` checks every export against the database, so such a rewrite shows too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _};
use portico_core::audit::StoredLink;
use portico_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const DAY_MS: i64 = 86_400_000;

/// The export of one store into one directory.
#[derive(Clone)]
pub struct AuditExport {
    store: Arc<SqliteStore>,
    dir: PathBuf,
}

/// What an export's `.sig` file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportSignature {
    pub day: String,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The digest of the day's last record (the chain's head at the end of the day).
    pub head: Option<String>,
    pub sha256: String,
    pub public_key: String,
    pub signature: String,
}

impl ExportSignature {
    /// The bytes the signature is over.
    fn message(&self) -> String {
        format!(
            "portico-audit-export\n{}\n{}\n{}\n{}\n{}\n{}",
            self.day,
            self.records,
            self.first_seq.map_or(String::new(), |s| s.to_string()),
            self.last_seq.map_or(String::new(), |s| s.to_string()),
            self.head.as_deref().unwrap_or(""),
            self.sha256
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn day_name(day_start_ms: i64) -> String {
    let date = portico_core::domain::from_unix_ms(day_start_ms)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// A line of an export: the record as stored.
#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    record: serde_json::Value,
    prev: String,
    digest: String,
}

/// A problem an export shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMismatch {
    pub file: String,
    pub why: String,
}

impl AuditExport {
    pub fn new(store: Arc<SqliteStore>, data_dir: &Path) -> AuditExport {
        AuditExport { store, dir: data_dir.join("audit") }
    }

    /// The signing key, made (owner-only) on first use.
    fn key(&self) -> anyhow::Result<Ed25519KeyPair> {
        let path = self.dir.join("signing-key.pk8");
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| anyhow::anyhow!("generating the audit signing key"))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file =
                    options.open(&path).with_context(|| format!("creating {}", path.display()))?;
                file.write_all(document.as_ref())?;
                file.sync_all()?;
                document.as_ref().to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 key", path.display()))?;
        let public = self.dir.join("signing-key.pub");
        if !public.exists() {
            std::fs::write(&public, format!("{}\n", hex(key.public_key().as_ref())))?;
        }
        Ok(key)
    }

    /// Exports every finished UTC day before `now_ms` not exported yet; answers the days written.
    pub fn export_due(&self, now_ms: i64) -> anyhow::Result<Vec<String>> {
        let Some(first_ms) = self.store.audit_first_ms().map_err(|e| anyhow::anyhow!("{e:#}"))?
        else {
            return Ok(Vec::new());
        };
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let today = now_ms.div_euclid(DAY_MS) * DAY_MS;
        let mut day = first_ms.div_euclid(DAY_MS) * DAY_MS;
        let mut written = Vec::new();
        while day < today {
            let name = day_name(day);
            if !self.dir.join(format!("audit-{name}.ndjson.sig")).exists() {
                self.export_day(day, &name)?;
                written.push(name);
            }
            day += DAY_MS;
        }
        Ok(written)
    }

    fn export_day(&self, day_start_ms: i64, name: &str) -> anyhow::Result<()> {
        let links = self
            .store
            .audit_links_between(day_start_ms, day_start_ms + DAY_MS)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut body = String::new();
        for link in &links {
            let record: serde_json::Value = serde_json::from_str(&link.canonical)
                .with_context(|| format!("audit record {} does not decode", link.seq))?;
            let line = Line {
                seq: link.seq,
                record,
                prev: link.prev.clone(),
                digest: link.digest.clone(),
            };
            body.push_str(&serde_json::to_string(&line)?);
            body.push('\n');
        }
        let key = self.key()?;
        let sha256 =
            hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes()).as_ref());
        let mut signed = ExportSignature {
            day: name.to_string(),
            records: links.len() as u64,
            first_seq: links.first().map(|l| l.seq),
            last_seq: links.last().map(|l| l.seq),
            head: links.last().map(|l| l.digest.clone()),
            sha256,
            public_key: hex(key.public_key().as_ref()),
            signature: String::new(),
        };
        signed.signature = hex(key.sign(signed.message().as_bytes()).as_ref());
        // The data first, the signature last: a day counts as exported once its `.sig` exists.
        // A past day's records never change, so data left by a run that stopped before signing
        // is the same bytes (anything else is refused).
        let data_path = self.dir.join(format!("audit-{name}.ndjson"));
        match std::fs::read(&data_path) {
            Ok(existing) if existing == body.as_bytes() => {}
            Ok(_) => anyhow::bail!("{} exists with other content", data_path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_once(&data_path, body.as_bytes())?
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", data_path.display())),
        }
        let sig_path = self.dir.join(format!("audit-{name}.ndjson.sig"));
        match write_once(&sig_path, serde_json::to_string_pretty(&signed)?.as_bytes()) {
            Ok(()) => {}
            // Another process (`serve` beside `portico worker`) signed it first.
            Err(_) if sig_path.exists() => return Ok(()),
            Err(e) => return Err(e),
        }
        tracing::info!(day = name, records = links.len(), "audit trail exported");
        Ok(())
    }

    /// Checks every export: its signature (by the key beside it), its file's digest, and each
    /// line against the database's record at that place.
    pub fn verify(&self) -> anyhow::Result<Result<usize, ExportMismatch>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(Ok(0)) };
        let mut signatures: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sig"))
            .collect();
        signatures.sort();
        let public = std::fs::read_to_string(self.dir.join("signing-key.pub")).ok();
        for sig_path in &signatures {
            let file = sig_path.display().to_string();
            let bad = |why: String| Ok(Err(ExportMismatch { file: file.clone(), why }));
            let signed: ExportSignature =
                match std::fs::read(sig_path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    Some(signed) => signed,
                    None => return bad("not a signature file".into()),
                };
            if public.as_deref().map(str::trim) != Some(signed.public_key.as_str()) {
                return bad("signed with another key than signing-key.pub".into());
            }
            let (Some(key), Some(signature)) =
                (unhex(&signed.public_key), unhex(&signed.signature))
            else {
                return bad("the key or signature is not hex".into());
            };
            let verifier = signature::UnparsedPublicKey::new(&signature::ED25519, key);
            if verifier.verify(signed.message().as_bytes(), &signature).is_err() {
                return bad("the signature does not match".into());
            }
            let data_path = sig_path.with_extension("");
            let Ok(body) = std::fs::read(&data_path) else {
                return bad(format!("{} is missing", data_path.display()));
            };
            let sha256 = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
            if sha256 != signed.sha256 {
                return bad("the export's content is not what was signed".into());
            }
            for line in String::from_utf8_lossy(&body).lines() {
                let Ok(line) = serde_json::from_str::<Line>(line) else {
                    return bad("a line does not decode".into());
                };
                let stored: Option<StoredLink> =
                    self.store.audit_link(line.seq).map_err(|e| anyhow::anyhow!("{e:#}"))?;
                match stored {
                    Some(stored) if stored.digest == line.digest && stored.prev == line.prev => {}
                    Some(_) => {
                        return bad(format!(
                            "record {} in the database is not the one exported",
                            line.seq
                        ));
                    }
                    None => return bad(format!("record {} is gone from the database", line.seq)),
                }
            }
        }
        Ok(Ok(signatures.len()))
    }
}

/// Writes `path` once: never over an existing file; read-only afterwards.
fn write_once(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

/// Exports finished days every minute until `stop`.
pub async fn run(export: AuditExport, mut stop: watch::Receiver<bool>) {
    loop {
        let now = portico_core::domain::unix_ms(time::OffsetDateTime::now_utc());
        let job = export.clone();
        match tokio::task::spawn_blocking(move || job.export_due(now)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "audit export failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "audit export task failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}
