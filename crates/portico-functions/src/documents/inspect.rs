//! What is in a file: size, SHA-256, a type sniffed from its first bytes, and for CSV run files the
//! row count, the columns and the time span. Reads the bytes as a stream, in constant memory.

use aws_lc_rs::digest;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Column names that hold a run's timestamps.
const TIME_COLUMNS: &[&str] = &["timestamp", "time", "datetime", "date_time", "recorded_at", "ts"];
/// Column names that hold the lot a run used.
const LOT_COLUMNS: &[&str] = &["lot", "lot_number"];
/// The most distinct lots kept from one run file (a run uses a handful).
const MAX_LOTS: usize = 100;

/// Feeds chunks in, then `finish` says what the file is, or why it is broken.
pub struct Inspector {
    hash: digest::Context,
    size: u64,
    /// The size the uploader declared. Locally the upload route enforces it; a presigned S3 URL
    /// does not, so the check here is what holds on AWS.
    declared: u64,
    head: Vec<u8>,
    csv: Option<CsvScan>,
}

impl Inspector {
    /// `csv`: analyse the file as a CSV run file (it was declared as one); `declared`: the size
    /// the uploader announced.
    pub fn new(csv: bool, declared: u64) -> Self {
        Inspector {
            hash: digest::Context::new(&digest::SHA256),
            size: 0,
            declared,
            head: Vec::new(),
            csv: csv.then(CsvScan::new),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let first = self.size == 0 && !chunk.is_empty();
        self.hash.update(chunk);
        self.size += chunk.len() as u64;
        if self.size > self.declared {
            // Stop reading at once: the rest of an oversized file is never looked at.
            return Err(format!("the file is larger than the {} bytes declared", self.declared));
        }
        if self.head.len() < 512 {
            let take = (512 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        if first && self.csv.is_some() {
            let kind = sniff(&chunk[..chunk.len().min(512)]);
            if !kind.starts_with("text/") {
                return Err(format!("declared as CSV but the content looks like {kind}"));
            }
        }
        match &mut self.csv {
            Some(scan) => scan.feed(chunk),
            None => Ok(()),
        }
    }

    /// The metadata, or the reason the file is unusable.
    pub fn finish(mut self) -> Result<Value, String> {
        if self.size == 0 {
            return Err("the file is empty".into());
        }
        if self.size != self.declared {
            return Err(format!(
                "the file has {} bytes, {} were declared",
                self.size, self.declared
            ));
        }
        let sniffed = sniff(&self.head);
        let mut metadata = json!({
            "size": self.size,
            "sha256": self.hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "sniffed_type": sniffed,
        });
        if let Some(mut scan) = self.csv.take() {
            if !sniffed.starts_with("text/") {
                return Err(format!("declared as CSV but the content looks like {sniffed}"));
            }
            scan.feed(&[])?;
            metadata["csv"] = scan.summary()?;
        }
        Ok(metadata)
    }
}

fn sniff(head: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return kind;
    }
    // Text if the head is UTF-8 (allowing a character cut at the end) without NULs.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) { "text/plain" } else { "application/octet-stream" }
}

struct CsvScan {
    reader: csv_core::Reader,
    field_bytes: Vec<u8>,
    used: usize,
    ends: Vec<usize>,
    ended: usize,
    header: Option<Vec<String>>,
    rows: u64,
    time_column: Option<usize>,
    lot_column: Option<usize>,
    lots: std::collections::BTreeSet<String>,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    done: bool,
}

impl CsvScan {
    fn new() -> Self {
        CsvScan {
            reader: csv_core::Reader::new(),
            field_bytes: vec![0; 4096],
            used: 0,
            ends: vec![0; 64],
            ended: 0,
            header: None,
            rows: 0,
            time_column: None,
            lot_column: None,
            lots: std::collections::BTreeSet::new(),
            first: None,
            last: None,
            done: false,
        }
    }

    /// Parses `input`; an empty slice means end of file.
    fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        use csv_core::ReadRecordResult::*;
        let at_end = input.is_empty();
        loop {
            // An empty slice tells csv_core the file has ended: only pass one at the real end.
            if self.done || (input.is_empty() && !at_end) {
                return Ok(());
            }
            let (result, read, written, ends) = self.reader.read_record(
                input,
                &mut self.field_bytes[self.used..],
                &mut self.ends[self.ended..],
            );
            input = &input[read..];
            self.used += written;
            self.ended += ends;
            match result {
                InputEmpty if at_end => {
                    self.done = true;
                    return Ok(());
                }
                InputEmpty => {}
                OutputFull => {
                    if self.field_bytes.len() >= 1 << 20 {
                        return Err("a CSV record is longer than 1 MiB".into());
                    }
                    let bigger = self.field_bytes.len() * 2;
                    self.field_bytes.resize(bigger, 0);
                }
                OutputEndsFull => {
                    if self.ends.len() >= 10_000 {
                        return Err("a CSV record has more than 10,000 fields".into());
                    }
                    let bigger = self.ends.len() * 2;
                    self.ends.resize(bigger, 0);
                }
                Record => {
                    self.record()?;
                    self.used = 0;
                    self.ended = 0;
                }
                End => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
    }

    fn record(&mut self) -> Result<(), String> {
        let line = self.rows + 2;
        let mut fields = Vec::with_capacity(self.ended);
        let mut start = 0;
        for &end in &self.ends[..self.ended] {
            let bytes = &self.field_bytes[start..end];
            let text = std::str::from_utf8(bytes)
                .ok()
                .filter(|t| !t.contains('\0'))
                .ok_or_else(|| format!("record {line} is not text (binary data in a CSV)"))?;
            fields.push(text);
            start = end;
        }
        // A blank line is not a record.
        if fields.len() == 1 && fields[0].is_empty() {
            return Ok(());
        }
        let Some(header) = &self.header else {
            let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                return Err("the CSV header has an empty column name".into());
            }
            let column = |known: &[&str]| {
                names.iter().position(|n| known.contains(&n.to_ascii_lowercase().as_str()))
            };
            self.time_column = column(TIME_COLUMNS);
            self.lot_column = column(LOT_COLUMNS);
            self.header = Some(names);
            return Ok(());
        };
        if fields.len() != header.len() {
            return Err(format!(
                "row {line} has {} fields, the header has {}",
                fields.len(),
                header.len()
            ));
        }
        self.rows += 1;
        if let Some(column) = self.lot_column {
            let lot = fields[column].trim();
            if !lot.is_empty() && !self.lots.contains(lot) {
                if !portico_core::domain::is_key_safe_id(lot) {
                    return Err(format!("row {line}: {lot:?} is not a lot number"));
                }
                if self.lots.len() >= MAX_LOTS {
                    return Err(format!("the file names more than {MAX_LOTS} lots"));
                }
                self.lots.insert(lot.to_string());
            }
        }
        if let Some(column) = self.time_column {
            let value = fields[column].trim();
            let at = OffsetDateTime::parse(value, &Rfc3339)
                .map_err(|_| format!("row {line}: {value:?} is not an RFC 3339 timestamp"))?;
            self.first = Some(self.first.map_or(at, |f| f.min(at)));
            self.last = Some(self.last.map_or(at, |l| l.max(at)));
        }
        Ok(())
    }

    fn summary(&self) -> Result<Value, String> {
        let header = self.header.as_ref().ok_or("the CSV has no header")?;
        let format = |t: Option<OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
        Ok(json!({
            "rows": self.rows,
            "columns": header,
            "time_column": self.time_column.map(|c| header[c].clone()),
            "first_timestamp": format(self.first),
            "last_timestamp": format(self.last),
            "lot_column": self.lot_column.map(|c| header[c].clone()),
            "lots": self.lots,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(csv: bool, chunks: &[&[u8]]) -> Result<Value, String> {
        let declared = chunks.iter().map(|c| c.len() as u64).sum();
        let mut i = Inspector::new(csv, declared);
        for c in chunks {
            i.feed(c)?;
        }
        i.finish()
    }

    #[test]
    fn run_csvs_in_any_chunking() {
        let file = b"timestamp,sample,value\n2026-11-27T10:00:00Z,A1,1.5\n\"2026-11-27T09:00:00Z\",\"B,2\",2\n2026-11-27T11:30:00Z,C3,3\n";
        for split in [1, 7, 20, file.len()] {
            let chunks: Vec<&[u8]> = file.chunks(split).collect();
            let m = inspect(true, &chunks).expect("valid");
            assert_eq!(m["size"], file.len());
            assert_eq!(m["csv"]["rows"], 3);
            assert_eq!(m["csv"]["columns"], json!(["timestamp", "sample", "value"]));
            assert_eq!(m["csv"]["first_timestamp"], "2026-11-27T09:00:00Z");
            assert_eq!(m["csv"]["last_timestamp"], "2026-11-27T11:30:00Z");
            assert_eq!(m["sniffed_type"], "text/plain");
        }
        let lots = inspect(true, &[b"Lot,v\nL-1,1\n L-2 ,2\nL-1,3\n,4\n"]).expect("valid");
        assert_eq!(lots["csv"]["lots"], json!(["L-1", "L-2"]));
        assert_eq!(lots["csv"]["lot_column"], "Lot");
        let bad = inspect(true, &[b"lot_number,v\n../x,1\n"]).expect_err("not a lot");
        assert!(bad.contains("not a lot number"), "{bad}");
        let no_trailing_newline = inspect(true, &[b"a,b\n1,2"]).expect("valid");
        assert_eq!(no_trailing_newline["csv"]["rows"], 1);
    }

    #[test]
    fn a_file_of_another_size_than_declared_is_refused() {
        let mut longer = Inspector::new(true, 4);
        let err = longer.feed(b"a,b\n1,2\n").expect_err("too long");
        assert!(err.contains("larger than the 4 bytes declared"), "{err}");
        let mut shorter = Inspector::new(true, 100);
        shorter.feed(b"a,b\n1,2\n").expect("fed");
        let err = shorter.finish().expect_err("too short");
        assert!(err.contains("has 8 bytes, 100 were declared"), "{err}");
    }

    #[test]
    fn broken_files_say_why() {
        let err = inspect(true, &[b"a,b\n1,2\n3\n"]).expect_err("ragged");
        assert!(err.contains("row 3 has 1 fields"), "{err}");
        assert!(inspect(true, &[b"\x89PNG\r\n\x1a\n...."]).expect_err("png").contains("image/png"));
        assert!(inspect(true, &[b"a,b\n\xff\xfe,\x00\n"]).is_err());
        assert!(
            inspect(true, &[b"time,v\nyesterday,1\n"]).expect_err("bad time").contains("RFC 3339")
        );
        assert_eq!(inspect(false, &[]).expect_err("empty"), "the file is empty");
        let pdf = inspect(false, &[b"%PDF-1.7 ..."]).expect("any file");
        assert_eq!(pdf["sniffed_type"], "application/pdf");
        assert!(pdf.get("csv").is_none());
    }
}
