//! The warehouse's stream on AWS, the `stream-poller`'s work: Neptune Streams (the graph's
//! elements, `neptune::stream`) -> Kinesis (`PutRecords`, one record per element, partition key
//! = the element's id, so one element's versions stay in order on one shard), under a lease,
//! with the checkpoint moved only after the whole page is on Kinesis.
//!
//! A page whose entries Kinesis refused in part is resent entry by entry (only the refused ones)
//! with backoff; if some still fail, the poller stops without moving the checkpoint, and the next
//! run starts from the same place. Re-putting an element is harmless: the warehouse keeps the
//! newest version of each row.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use portico_core::graph::Element;
use portico_core::{Error, Result};

use crate::dynamo::lease::StreamLease;
use crate::error::sdk_error;
use crate::neptune::stream::{NeptuneStream, Position, StreamError};

/// Kinesis's limits per `PutRecords`: 500 entries, 5 MiB (1 MiB per entry, key included).
const ENTRIES_PER_CALL: usize = 500;
const BYTES_PER_CALL: usize = 5 * 1024 * 1024;
const BYTES_PER_ENTRY: usize = 1024 * 1024;
/// Tries of a page's refused entries before the poller stops.
const ATTEMPTS: u32 = 5;

pub struct KinesisWriter {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

/// The id an element's records are keyed by.
fn element_id(element: &Element) -> String {
    match element {
        Element::Vertex(v) => v.vertex.id(),
        Element::Edge(e) => e.id.clone(),
    }
}

impl KinesisWriter {
    pub fn new(sdk: &aws_config::SdkConfig, stream: &str) -> KinesisWriter {
        KinesisWriter { client: aws_sdk_kinesis::Client::new(sdk), stream: stream.into() }
    }

    /// Puts every element; answers once all are accepted, or an error if some are still refused
    /// after `ATTEMPTS`.
    pub async fn put(&self, elements: &[Element]) -> Result<()> {
        let mut pending: Vec<(String, Vec<u8>)> = Vec::with_capacity(elements.len());
        for element in elements {
            let data = serde_json::to_vec(element)
                .map_err(|e| Error::Unexpected(anyhow::anyhow!("encoding an element: {e}")))?;
            let key = element_id(element);
            if data.len() + key.len() > BYTES_PER_ENTRY {
                return Err(Error::Unexpected(anyhow::anyhow!(
                    "element {key} is {} bytes, past Kinesis's 1 MiB",
                    data.len()
                )));
            }
            pending.push((key, data));
        }
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                let delay = Duration::from_millis(100) * 2u32.pow(attempt - 1);
                tokio::time::sleep(delay.min(Duration::from_secs(3))).await;
            }
            let mut refused = Vec::new();
            for call in calls(&pending) {
                refused.extend(
                    self.put_call(&pending[call.clone()])
                        .await?
                        .into_iter()
                        .map(|i| i + call.start),
                );
            }
            if !refused.is_empty() {
                metrics::counter!("portico_warehouse_stream_entries_refused_total")
                    .increment(refused.len() as u64);
            }
            let keep: std::collections::BTreeSet<usize> = refused.into_iter().collect();
            pending = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.contains(i))
                .map(|(_, e)| e)
                .collect();
        }
        if pending.is_empty() {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "Kinesis refused {} entries {ATTEMPTS} times; the checkpoint stays",
            pending.len()
        )))
    }

    /// One `PutRecords`; answers the indexes (within `entries`) Kinesis refused.
    async fn put_call(&self, entries: &[(String, Vec<u8>)]) -> Result<Vec<usize>> {
        let records: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .map_err(|e| Error::Unexpected(anyhow::anyhow!("a Kinesis entry: {e}")))
            })
            .collect::<Result<_>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| sdk_error("putting records on Kinesis", e))?;
        if output.failed_record_count().unwrap_or(0) == 0 {
            return Ok(Vec::new());
        }
        Ok(output
            .records()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| i)
            .collect())
    }
}

/// The entries split into calls within Kinesis's limits.
fn calls(entries: &[(String, Vec<u8>)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (key, data)) in entries.iter().enumerate() {
        let size = key.len() + data.len();
        if i > start && (i - start == ENTRIES_PER_CALL || bytes + size > BYTES_PER_CALL) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(start..entries.len());
    }
    out
}

/// How a poller's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The stream has nothing more after the checkpoint.
    CaughtUp,
    /// The run's time was up; the next run goes on.
    OutOfTime,
    /// Another poller holds the lease.
    Busy,
    /// The lease was lost mid-run (another poller took it after it expired).
    LostLease,
    /// The checkpoint was older than the stream keeps: the stream is read again from its oldest
    /// record, and what fell out of it needs `portico export rebuild`.
    Expired,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub pages: usize,
    pub elements: usize,
    pub checkpoint: Option<Position>,
    pub ended: Ended,
}

pub struct StreamPoller {
    pub stream: NeptuneStream,
    pub kinesis: KinesisWriter,
    pub lease: StreamLease,
    /// Stream records per page.
    pub page_size: i64,
}

impl StreamPoller {
    /// Moves elements from the stream to Kinesis until caught up or `budget` is spent.
    pub async fn run(&self, budget: Duration) -> Result<Polled> {
        let started = Instant::now();
        let Some(mut from) = self.lease.acquire().await? else {
            return Ok(Polled { pages: 0, elements: 0, checkpoint: None, ended: Ended::Busy });
        };
        let mut polled = Polled { pages: 0, elements: 0, checkpoint: from, ended: Ended::CaughtUp };
        loop {
            if started.elapsed() >= budget {
                polled.ended = Ended::OutOfTime;
                break;
            }
            let page = match self.stream.after(from, self.page_size).await {
                Ok(page) => page,
                Err(StreamError::Expired(at, why)) => {
                    tracing::error!(
                        ?at,
                        why,
                        "the warehouse stream's checkpoint expired; reading from the oldest record kept (run `portico export rebuild` for what was lost)"
                    );
                    metrics::counter!("portico_warehouse_stream_expired_total").increment(1);
                    if !self.lease.forget_checkpoint().await? {
                        polled.ended = Ended::LostLease;
                        return Ok(polled);
                    }
                    polled.ended = Ended::Expired;
                    from = None;
                    continue;
                }
                Err(StreamError::Unavailable(why)) => return Err(Error::Unavailable(why)),
                Err(StreamError::Refused(why)) => {
                    return Err(Error::Unexpected(anyhow::anyhow!("Neptune Streams: {why}")));
                }
            };
            let Some(last) = page.last else {
                break;
            };
            let elements: Vec<Element> = page.elements.into_iter().map(|(_, e)| e).collect();
            self.kinesis.put(&elements).await?;
            if !self.lease.advance(last).await? {
                polled.ended = Ended::LostLease;
                return Ok(polled);
            }
            metrics::counter!("portico_warehouse_stream_elements_total")
                .increment(elements.len() as u64);
            polled.pages += 1;
            polled.elements += elements.len();
            polled.checkpoint = Some(last);
            from = Some(last);
        }
        self.lease.release().await?;
        Ok(polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keep_to_kinesis_limits() {
        let small =
            |n: usize| (0..n).map(|i| (format!("k{i}"), vec![0u8; 100])).collect::<Vec<_>>();
        assert_eq!(calls(&small(1_200)), vec![0..500, 500..1_000, 1_000..1_200]);
        let big: Vec<(String, Vec<u8>)> =
            (0..12).map(|i| (format!("k{i}"), vec![0u8; 1_000_000])).collect();
        let ranges = calls(&big);
        assert!(ranges.iter().all(|r| r.len() <= 5), "{ranges:?}");
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 12);
        assert!(calls(&[]).is_empty());
    }
}
