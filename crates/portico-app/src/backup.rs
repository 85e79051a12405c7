//! `portico backup DEST` and `portico restore SRC`: a data dir copied while the server runs, and
//! put back into an empty one.
//!
//! A backup is a folder: every database copied online (`portico_sqlite::backup`, one read
//! transaction each, so nothing committed before the backup began is missing), then every other
//! file of the data dir (objects, keys, audit exports, warehouse snapshots) copied as it is, and
//! `manifest.json` last: each file's path, size and SHA-256, the schema version and the time.
//! The databases are copied first: a document a database calls ready had its object written
//! before, so the objects copied after cover it (an object written later is only extra).
//!
//! A restore verifies the whole manifest before it writes anything (a file missing, changed or
//! added refuses the backup, naming it), refuses a backup whose schema is newer than this
//! Portico, and writes into an empty data dir only, through a folder beside it that is renamed
//! into place, so an interrupted restore leaves no half data dir.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The manifest's name in a backup.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub portico_version: String,
    /// When the backup began (RFC 3339).
    pub started_at: String,
    /// `portico.db`'s schema version.
    pub schema_version: i64,
    pub files: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the data dir, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Copied online (a database) or as it is.
    pub database: bool,
}

/// Files of a data dir that are not copied: SQLite's WAL and shared-memory files (the online
/// copy includes what they hold) and partial writes.
fn skipped(name: &str) -> bool {
    name.ends_with("-wal")
        || name.ends_with("-shm")
        || name.ends_with(".partial")
        || name.ends_with(".lock")
}

fn is_database(name: &str) -> bool {
    name.ends_with(".db")
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let entries = std::fs::read_dir(dir.join(&rel))
            .with_context(|| format!("listing {}", dir.join(&rel).display()))?;
        for entry in entries {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        context.update(&buffer[..n]);
    }
    let digest = context.finish();
    Ok((size, digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()))
}

fn slash(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    if !dir.exists() {
        return Ok(true);
    }
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Copies `data_dir` into `dest` (which must be new or empty), databases online.
pub fn backup(data_dir: &Path, dest: &Path) -> anyhow::Result<Manifest> {
    if !data_dir.join("portico.db").is_file() {
        bail!("{} is not a Portico data dir (no portico.db)", data_dir.display());
    }
    if !is_empty_dir(dest)? {
        bail!("{} is not empty: a backup goes into a new folder", dest.display());
    }
    let dest_abs = std::path::absolute(dest)?;
    let data_abs = std::path::absolute(data_dir)?;
    if dest_abs.starts_with(&data_abs) {
        bail!("the backup cannot go inside the data dir it copies");
    }
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let all = files(data_dir)?;
    let named =
        |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (databases, others): (Vec<&PathBuf>, Vec<&PathBuf>) =
        all.iter().filter(|p| !skipped(&named(p))).partition(|p| is_database(&named(p)));
    let mut entries = Vec::new();
    for rel in databases.iter().chain(others.iter()) {
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let database = is_database(&named(rel));
        if database {
            portico_sqlite::backup::copy_database(&data_dir.join(rel), &target)
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        } else {
            match std::fs::copy(data_dir.join(rel), &target) {
                Ok(_) => {}
                // Gone since it was listed (a log rotated, a snapshot replaced): not needed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("copying {}", rel.display())),
            }
        }
        std::fs::File::open(&target).and_then(|f| f.sync_all())?;
        let (size, sha256) = sha256(&target)?;
        entries.push(Entry { path: slash(rel), size, sha256, database });
    }
    let manifest = Manifest {
        format: FORMAT,
        portico_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        schema_version: portico_sqlite::backup::schema_version(&dest.join("portico.db"))
            .map_err(|e| anyhow::anyhow!("{e:#}"))?,
        files: entries,
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    let partial = dest.join(format!("{MANIFEST}.partial"));
    std::fs::write(&partial, text)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, dest.join(MANIFEST))?;
    sync_dir(dest)?;
    Ok(manifest)
}

/// Checks the backup at `src` against its manifest; answers the manifest.
pub fn verify(src: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(src.join(MANIFEST))
        .with_context(|| format!("{} has no {MANIFEST}: not a Portico backup", src.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).context("the manifest does not decode")?;
    if manifest.format != FORMAT {
        bail!("the backup's format {} is not one this Portico reads", manifest.format);
    }
    let current = portico_sqlite::backup::current_schema_version();
    if manifest.schema_version > current {
        bail!(
            "the backup's schema (version {}) is newer than this Portico's ({current}); restore it with Portico {} or newer",
            manifest.schema_version,
            manifest.portico_version
        );
    }
    let listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|e| e.path.as_str()).collect();
    for rel in files(src)? {
        let path = slash(&rel);
        if path != MANIFEST && !listed.contains(path.as_str()) {
            bail!("the backup holds {path}, which its manifest does not list");
        }
    }
    for entry in &manifest.files {
        if entry.path.split('/').any(|part| part == ".." || part.is_empty()) {
            bail!("the manifest names a path outside the backup: {}", entry.path);
        }
        let file = src.join(&entry.path);
        let (size, sha256) =
            sha256(&file).with_context(|| format!("{} is missing from the backup", entry.path))?;
        if size != entry.size || sha256 != entry.sha256 {
            bail!(
                "{} does not match the manifest (size {size}, SHA-256 {sha256}): the backup was changed",
                entry.path
            );
        }
    }
    Ok(manifest)
}

/// Restores the backup at `src` into `data_dir`, which must be new or empty.
pub fn restore(src: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    if !is_empty_dir(data_dir)? {
        bail!("{} is not empty: restore into a new data dir", data_dir.display());
    }
    let manifest = verify(src)?;
    let parent = std::path::absolute(data_dir)?
        .parent()
        .map(Path::to_path_buf)
        .context("the data dir has no parent")?;
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".portico-restore-{}", std::process::id()));
    std::fs::create_dir(&staging)?;
    let copied = copy_verified(src, &staging, &manifest);
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if data_dir.exists() {
        std::fs::remove_dir(data_dir)
            .with_context(|| format!("replacing the empty {}", data_dir.display()))?;
    }
    std::fs::rename(&staging, data_dir)
        .with_context(|| format!("moving the restore into {}", data_dir.display()))?;
    sync_dir(&parent)?;
    Ok(manifest)
}

/// Copies every file of `manifest` from `src` into `staging`, checking each copy again.
fn copy_verified(src: &Path, staging: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for entry in &manifest.files {
        let target = staging.join(&entry.path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(src.join(&entry.path), &target)
            .with_context(|| format!("restoring {}", entry.path))?;
        std::fs::File::open(&target)?.sync_all()?;
        let (size, sha256) = sha256(&target)?;
        if size != entry.size || sha256 != entry.sha256 {
            bail!("{} changed while it was restored", entry.path);
        }
    }
    Ok(())
}
