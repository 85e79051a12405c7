//! `portico ship-logs`: what Logstash did for the worker's log files. Tails the files that match
//! some globs and sends their lines to a sink (OpenSearch `_bulk`, or a Portico log store), so
//! that every line arrives once in effect, through rotation, truncation, restarts, crashes and
//! sink outages:
//!
//! - A file is known by a fingerprint of its first line (at most 1 KiB), not by its name: a
//!   rotated file (renamed) keeps its place, a new file at the old name starts at its beginning.
//!   A file whose first line is not complete yet waits. Files opened before a rotation are read
//!   to their end through the open handle, even when their new name no longer matches.
//! - Where each file was read to is kept in `<state>/checkpoints.json`, written atomically
//!   (temporary file, fsync, rename) and only after the sink acknowledged the lines before it.
//! - Each line is sent under an id made of its file's fingerprint and its offset. After a crash
//!   between the sink's acknowledgement and the checkpoint, the same lines go again under the same
//!   ids, and the sink keeps them once (OpenSearch: `create` answers 409; the store: the origin
//!   is unique).
//! - A file that got shorter than where it was read to, or whose first line changed, was
//!   truncated (copytruncate): it is read again from its beginning as a new file.
//! - While the sink is down, nothing advances: the batch is retried with backoff, forever.
//!   Lines the sink refuses for good are appended, with the reason, to
//!   `<state>/dead-letters.ndjson`, never dropped silently.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use portico_core::logs::LogLine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::opensearch::{self, BulkSink};
use crate::store::{Retention, SqliteLogs};

/// Bytes of the first line that make a file's fingerprint.
const FINGERPRINT_BYTES: usize = 1024;
/// Longer lines are cut to this (the rest of the line is skipped, the line marked `truncated`).
const MAX_LINE: usize = 256 * 1024;
/// Lines, and bytes, sent in one batch at most.
const BATCH_LINES: usize = 2_000;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Checkpoints of files not seen for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 86_400);
/// Rotated-away names of compressed files: never text to ship.
const COMPRESSED: [&str; 5] = [".gz", ".zst", ".bz2", ".xz", ".zip"];

/// One line read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLine {
    /// `<fingerprint>-<offset>`: the same line always gets the same id.
    pub id: String,
    pub path: String,
    pub text: String,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

/// Where lines go. `send` answers once every line is kept or refused for good (the refused ones
/// by index, with the reason); an error means nothing can be said, and the lines go again.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn send(&self, lines: &[FileLine]) -> Result<Vec<(usize, String)>, String>;
}

/// What the shipper reads, and where it keeps its state.
#[derive(Debug, Clone)]
pub struct Settings {
    pub globs: Vec<String>,
    /// Checkpoints, the lock and dead letters.
    pub state_dir: PathBuf,
    /// How often files are looked at when nothing is new.
    pub poll: Duration,
    /// Ship what is there, then stop (instead of following the files).
    pub once: bool,
}

/// What the shipper did (for the caller to report).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub lines: u64,
    pub batches: u64,
    pub refused: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoints {
    /// By fingerprint.
    files: BTreeMap<String, Checkpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    /// Bytes of whole lines the sink acknowledged.
    offset: u64,
    /// The name it was last seen under (for people reading the file).
    path: String,
    seen_ms: i64,
}

/// A file being read.
struct Watcher {
    fingerprint: String,
    path: PathBuf,
    file: File,
    /// Acknowledged up to here.
    offset: u64,
    /// Matched by the last scan (else: rotated away, read to its end, then let go).
    present: bool,
}

fn now_ms() -> i64 {
    portico_core::domain::unix_ms(time::OffsetDateTime::now_utc())
}

/// The fingerprint of an open file: the SHA-256 of its first line (at most 1 KiB), or `None`
/// while that line is incomplete.
fn fingerprint(file: &File) -> std::io::Result<Option<String>> {
    let mut head = vec![0u8; FINGERPRINT_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read_at(&mut head[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let first = match head[..filled].iter().position(|&b| b == b'\n') {
        Some(end) => &head[..=end],
        None if filled == FINGERPRINT_BYTES => &head[..],
        None => return Ok(None),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, first);
    Ok(Some(digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()))
}

/// A line as read: where it starts, its bytes (without the newline), whether it was cut.
struct RawLine {
    start: u64,
    bytes: Vec<u8>,
    truncated: bool,
}

/// Reads whole lines of `file` from `offset`, at most `max_lines` / `max_bytes`; answers them
/// with their start offsets, and the offset after the last one. A last line without its newline
/// is left for later.
fn read_lines(
    file: &File,
    offset: u64,
    max_lines: usize,
    max_bytes: usize,
) -> std::io::Result<(Vec<RawLine>, u64)> {
    let mut handle = file;
    handle.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, handle);
    let mut lines = Vec::new();
    let mut at = offset;
    let mut bytes = 0;
    while lines.len() < max_lines && bytes < max_bytes {
        let mut line = Vec::new();
        let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let mut consumed = n as u64;
        let mut truncated = false;
        if line.last() != Some(&b'\n') {
            if line.len() <= MAX_LINE {
                break; // not finished yet
            }
            // Too long: keep the start, skip to the end of the line (if it has one yet).
            let mut rest = Vec::new();
            let mut skipped = 0u64;
            loop {
                rest.clear();
                let m = (&mut reader).take(64 * 1024).read_until(b'\n', &mut rest)?;
                skipped += m as u64;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            if rest.last() != Some(&b'\n') {
                break; // the long line is not finished yet
            }
            consumed += skipped;
            line.truncate(MAX_LINE);
            truncated = true;
        } else {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        bytes += line.len();
        lines.push(RawLine { start: at, bytes: line, truncated });
        at += consumed;
    }
    Ok((lines, at))
}

/// Lines to send, and (by fingerprint) the offset each file is read to once they are acknowledged.
struct Batch {
    lines: Vec<FileLine>,
    ends: Vec<(String, u64)>,
}

/// The shipper: its watchers, checkpoints and lock.
pub struct Shipper {
    settings: Settings,
    checkpoints: Checkpoints,
    watchers: Vec<Watcher>,
    _lock: File,
}

impl Shipper {
    /// Takes the state dir (one shipper per state dir: a second one is refused) and its
    /// checkpoints.
    pub fn open(settings: Settings) -> anyhow::Result<Shipper> {
        std::fs::create_dir_all(&settings.state_dir)
            .with_context(|| format!("creating {}", settings.state_dir.display()))?;
        let lock_path = settings.state_dir.join("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "another portico ship-logs uses {} (one shipper per state dir)",
                settings.state_dir.display()
            );
        }
        for glob in &settings.globs {
            glob::Pattern::new(glob).with_context(|| format!("{glob:?} is not a glob"))?;
        }
        let path = settings.state_dir.join("checkpoints.json");
        let checkpoints = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a checkpoint file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoints::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Shipper { settings, checkpoints, watchers: Vec::new(), _lock: lock })
    }

    /// Finds the files the globs match, and follows new ones from their checkpoint.
    fn scan(&mut self) {
        for watcher in &mut self.watchers {
            watcher.present = false;
        }
        let mut paths = Vec::new();
        for pattern in &self.settings.globs {
            match glob::glob(pattern) {
                Ok(found) => paths.extend(found.filter_map(|p| p.ok())),
                Err(e) => tracing::warn!(glob = %pattern, error = %e, "not a glob"),
            }
        }
        paths.sort();
        paths.dedup();
        for path in paths {
            let name = path.to_string_lossy();
            if COMPRESSED.iter().any(|suffix| name.ends_with(suffix)) || !path.is_file() {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            let Ok(Some(fingerprint)) = fingerprint(&file) else { continue };
            if let Some(watcher) = self.watchers.iter_mut().find(|w| w.fingerprint == fingerprint) {
                if watcher.path != path {
                    tracing::info!(from = %watcher.path.display(), to = %path.display(), "log file renamed; following it");
                    watcher.path = path;
                }
                watcher.present = true;
                continue;
            }
            let offset = self.checkpoints.files.get(&fingerprint).map_or(0, |c| c.offset);
            tracing::info!(path = %path.display(), fingerprint, offset, "following log file");
            self.watchers.push(Watcher { fingerprint, path, file, offset, present: true });
        }
    }

    /// Lets go of files that were truncated or replaced (they come back, if still there, as new
    /// files at the next scan).
    fn drop_replaced(&mut self) {
        self.watchers.retain(|w| {
            let same = fingerprint(&w.file).ok().flatten().as_deref() == Some(&w.fingerprint);
            let length = w.file.metadata().map_or(0, |m| m.len());
            if same && length >= w.offset {
                return true;
            }
            tracing::info!(path = %w.path.display(), "log file truncated or replaced; reading it again from its start");
            false
        });
    }

    /// The next batch: lines from each file in turn, and where each file would then be read to.
    fn batch(&mut self) -> anyhow::Result<Batch> {
        let mut lines = Vec::new();
        let mut ends = Vec::new();
        let mut bytes = 0;
        let mut finished = Vec::new();
        for watcher in &self.watchers {
            if lines.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                break;
            }
            let (read, end) = read_lines(
                &watcher.file,
                watcher.offset,
                BATCH_LINES - lines.len(),
                BATCH_BYTES - bytes,
            )
            .with_context(|| format!("reading {}", watcher.path.display()))?;
            if read.is_empty() {
                if !watcher.present {
                    finished.push(watcher.fingerprint.clone());
                }
                continue;
            }
            let path = watcher.path.to_string_lossy().to_string();
            for raw in read {
                bytes += raw.bytes.len();
                lines.push(FileLine {
                    id: format!("{}-{}", watcher.fingerprint, raw.start),
                    path: path.clone(),
                    text: String::from_utf8_lossy(&raw.bytes).into_owned(),
                    truncated: raw.truncated,
                });
            }
            ends.push((watcher.fingerprint.clone(), end));
        }
        // Rotated-away files read to their end are let go (their checkpoint stays a while).
        self.watchers.retain(|w| {
            let gone = finished.contains(&w.fingerprint);
            if gone {
                tracing::info!(path = %w.path.display(), "rotated log file read to its end");
            }
            !gone
        });
        Ok(Batch { lines, ends })
    }

    /// Writes the checkpoints: a temporary file, fsync, rename over the old one, fsync the dir.
    fn save(&mut self) -> anyhow::Result<()> {
        let now = now_ms();
        for watcher in &self.watchers {
            self.checkpoints.files.insert(
                watcher.fingerprint.clone(),
                Checkpoint {
                    offset: watcher.offset,
                    path: watcher.path.to_string_lossy().into_owned(),
                    seen_ms: now,
                },
            );
        }
        let forget = now - FORGET_AFTER.as_millis() as i64;
        self.checkpoints.files.retain(|_, c| c.seen_ms >= forget);
        let dir = &self.settings.state_dir;
        let path = dir.join("checkpoints.json");
        let temporary = dir.join("checkpoints.json.tmp");
        let mut file =
            File::create(&temporary).with_context(|| format!("writing {}", temporary.display()))?;
        file.write_all(&serde_json::to_vec_pretty(&self.checkpoints)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("replacing {}", path.display()))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Appends refused lines to the dead-letter file, with the reason.
    fn dead_letter(&self, lines: &[FileLine], refused: &[(usize, String)]) -> anyhow::Result<()> {
        let path = self.settings.state_dir.join("dead-letters.ndjson");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        for (i, reason) in refused {
            let Some(line) = lines.get(*i) else { continue };
            let record = serde_json::json!({"id": line.id, "path": line.path, "reason": reason, "line": line.text});
            writeln!(file, "{record}")?;
            tracing::warn!(
                id = line.id,
                path = line.path,
                reason,
                "log line refused by the sink; dead-lettered"
            );
        }
        file.sync_all()?;
        Ok(())
    }

    /// Ships until `stop` resolves (or, with `once`, until every file is read to its end).
    pub async fn run(
        &mut self,
        sink: &dyn Sink,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Totals> {
        let mut stop = std::pin::pin!(stop);
        let mut totals = Totals::default();
        let mut last_scan: Option<Instant> = None;
        loop {
            if last_scan.is_none_or(|at| at.elapsed() >= self.settings.poll) {
                self.scan();
                last_scan = Some(Instant::now());
            }
            self.drop_replaced();
            let Batch { lines, ends } = self.batch()?;
            if lines.is_empty() {
                if self.settings.once {
                    self.save()?;
                    return Ok(totals);
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = &mut stop => return Ok(totals),
                }
                last_scan = None;
                continue;
            }
            let mut backoff = Duration::from_secs(1);
            let refused = loop {
                let sent = tokio::select! {
                    sent = sink.send(&lines) => sent,
                    _ = &mut stop => return Ok(totals),
                };
                match sent {
                    Ok(refused) => break refused,
                    Err(e) => {
                        tracing::warn!(error = %e, lines = lines.len(), retry_in_s = backoff.as_secs(), "the sink did not take the batch; it goes again");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = &mut stop => return Ok(totals),
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            };
            if !refused.is_empty() {
                self.dead_letter(&lines, &refused)?;
            }
            for (fingerprint, end) in ends {
                if let Some(watcher) =
                    self.watchers.iter_mut().find(|w| w.fingerprint == fingerprint)
                {
                    watcher.offset = end;
                }
            }
            self.save()?;
            totals.lines += lines.len() as u64;
            totals.batches += 1;
            totals.refused += refused.len() as u64;
            metrics::counter!("portico_ship_lines_total").increment(lines.len() as u64);
            tracing::debug!(lines = lines.len(), refused = refused.len(), "log batch shipped");
        }
    }
}

/// The machine's name, for the `host` field.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A line as the store keeps it: a JSON line's `timestamp`, `level`, `target`, `message` and
/// other fields (Portico's own lines); any other text as an `INFO` message read now. `extra`
/// fields (where the line came from) are added.
pub fn log_line(text: &str, extra: &BTreeMap<String, Value>) -> LogLine {
    let mut line = LogLine {
        timestamp_ms: now_ms(),
        level: "INFO".into(),
        target: String::new(),
        message: text.to_string(),
        fields: BTreeMap::new(),
    };
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) {
        line.message = String::new();
        for (name, value) in fields {
            match (name.as_str(), value) {
                ("timestamp", Value::String(at)) => {
                    if let Some(at) = rfc3339_ms(&at) {
                        line.timestamp_ms = at;
                    }
                }
                ("level", Value::String(level)) => line.level = level.to_ascii_uppercase(),
                ("target", Value::String(target)) => line.target = target,
                ("message", Value::String(message)) => line.message = message,
                (_, value) => {
                    line.fields.insert(name, value);
                }
            }
        }
    }
    for (name, value) in extra {
        line.fields.insert(name.clone(), value.clone());
    }
    line
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(portico_core::domain::unix_ms)
}

/// A line's own time (a JSON line's `timestamp`), else now: what `log_line` would say, without
/// building the line.
fn time_of(text: &str) -> i64 {
    #[derive(Deserialize)]
    struct Stamped {
        timestamp: Option<String>,
    }
    serde_json::from_str::<Stamped>(text)
        .ok()
        .and_then(|s| s.timestamp)
        .and_then(|at| rfc3339_ms(&at))
        .unwrap_or_else(now_ms)
}

/// Lines into OpenSearch: one document each in the daily index, under the line's id.
pub struct OpenSearchSink {
    bulk: BulkSink,
    prefix: String,
    host: String,
}

impl OpenSearchSink {
    pub fn new(bulk: BulkSink, index_prefix: &str) -> OpenSearchSink {
        OpenSearchSink {
            bulk: bulk.with_index_template(index_prefix),
            prefix: index_prefix.to_string(),
            host: host_name(),
        }
    }
}

#[async_trait]
impl Sink for OpenSearchSink {
    async fn send(&self, lines: &[FileLine]) -> Result<Vec<(usize, String)>, String> {
        let docs: Vec<_> = lines
            .iter()
            .map(|line| {
                let mut base = Map::new();
                base.insert("host".into(), self.host.clone().into());
                base.insert("log_file".into(), line.path.clone().into());
                if line.truncated {
                    base.insert("truncated".into(), true.into());
                }
                opensearch::document(&self.prefix, &line.id, time_of(&line.text), base, &line.text)
            })
            .collect();
        let index: HashMap<&str, usize> =
            lines.iter().enumerate().map(|(i, l)| (l.id.as_str(), i)).collect();
        let shipped = self.bulk.ship(docs).await.map_err(|e| e.to_string())?;
        Ok(shipped
            .refused
            .into_iter()
            .filter_map(|(doc, reason)| index.get(doc.id.as_str()).map(|&i| (i, reason)))
            .collect())
    }
}

/// Lines into a Portico log store (a data dir's `logs/`), once each by origin.
pub struct StoreSink {
    store: Arc<SqliteLogs>,
    retention: Retention,
    host: String,
    last_trim: std::sync::Mutex<Option<Instant>>,
}

impl StoreSink {
    pub fn open(dir: &Path, retention: Retention) -> anyhow::Result<StoreSink> {
        let store = SqliteLogs::open(dir).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(StoreSink {
            store: Arc::new(store),
            retention,
            host: host_name(),
            last_trim: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait]
impl Sink for StoreSink {
    async fn send(&self, lines: &[FileLine]) -> Result<Vec<(usize, String)>, String> {
        let rows: Vec<(String, LogLine)> = lines
            .iter()
            .map(|line| {
                let mut extra = BTreeMap::new();
                extra.insert("host".to_string(), Value::from(self.host.clone()));
                extra.insert("log_file".to_string(), Value::from(line.path.clone()));
                if line.truncated {
                    extra.insert("truncated".to_string(), Value::Bool(true));
                }
                (line.id.clone(), log_line(&line.text, &extra))
            })
            .collect();
        let trim = {
            let mut last = self.last_trim.lock().map_err(|_| "the trim clock is poisoned")?;
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(30));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        let store = self.store.clone();
        let retention = self.retention;
        tokio::task::spawn_blocking(move || {
            store.keep(&rows)?;
            if trim {
                store.trim(retention)?;
            }
            Ok::<_, portico_core::Error>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        Ok(Vec::new())
    }
}
