//! Neptune Streams, read for the warehouse: `GetPropertygraphStream` from a position, keeping
//! the records that carry a whole element (the `element` property the adapter writes with every
//! newer version, `ELEMENT_PROPERTY`), so each record is one element as the warehouse loads it.
//!
//! Records come in commit order without duplicates. A position is (`commitNum`, `opNum`); a
//! page is read strictly after one (`AFTER_SEQUENCE_NUMBER`), or from the oldest record kept
//! (`TRIM_HORIZON`) before the first checkpoint. A position older than the stream keeps
//! (`neptune_streams_expiry_days`) is `Expired`: what fell out of the stream must come from a
//! rebuild.

use aws_sdk_neptunedata::operation::get_propertygraph_stream::GetPropertygraphStreamError;
use aws_sdk_neptunedata::types::{IteratorType, PropertygraphRecord};
use aws_smithy_types::Document;
use portico_core::graph::Element;
use serde::{Deserialize, Serialize};

use super::ELEMENT_PROPERTY;

/// A place in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub commit_num: i64,
    pub op_num: i64,
}

/// One page of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The elements the page's records carry, in stream order, each with its position.
    pub elements: Vec<(Position, Element)>,
    /// The page's last record (whether it carried an element or not): where the next page
    /// starts. `None` for an empty page.
    pub last: Option<Position>,
    /// Records that named the element property but did not decode (logged; never retried).
    pub undecodable: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The position is older than the records the stream keeps.
    #[error("the stream no longer holds position {0:?}: {1}")]
    Expired(Option<Position>, String),
    /// Throttled, out of memory, or not reachable: try again later.
    #[error("the stream is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (a bad parameter, no stream enabled).
    #[error("the stream refused the request: {0}")]
    Refused(String),
}

/// The cluster's property-graph stream.
pub struct NeptuneStream {
    client: aws_sdk_neptunedata::Client,
}

fn number(map: &std::collections::HashMap<String, String>, key: &str) -> Option<i64> {
    map.get(key).and_then(|v| v.parse().ok())
}

fn position(event_id: &std::collections::HashMap<String, String>) -> Option<Position> {
    Some(Position {
        commit_num: number(event_id, "commitNum")?,
        op_num: number(event_id, "opNum")?,
    })
}

/// The element a record carries, if it is an `ADD` of the element property.
pub fn element_of(record: &PropertygraphRecord) -> Option<Result<Element, String>> {
    let data = record.data.as_ref()?;
    if record.op != "ADD"
        || data.key != ELEMENT_PROPERTY
        || !matches!(data.r#type.as_str(), "vp" | "ep")
    {
        return None;
    }
    let text = match &data.value {
        Document::Object(map) => match map.get("value") {
            Some(Document::String(text)) => text.clone(),
            _ => return Some(Err("the element property's value is not a string".into())),
        },
        _ => return Some(Err("the record's value is not an object".into())),
    };
    Some(serde_json::from_str(&text).map_err(|e| format!("the element does not decode: {e}")))
}

impl NeptuneStream {
    /// The cluster's endpoint (the same as Gremlin's).
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> NeptuneStream {
        let config = aws_sdk_neptunedata::config::Builder::from(sdk).endpoint_url(endpoint).build();
        NeptuneStream { client: aws_sdk_neptunedata::Client::from_conf(config) }
    }

    /// Up to `limit` records after `from` (from the oldest kept when `None`).
    pub async fn after(&self, from: Option<Position>, limit: i64) -> Result<Page, StreamError> {
        let mut request = self.client.get_propertygraph_stream().limit(limit);
        request = match from {
            Some(p) => request
                .iterator_type(IteratorType::AfterSequenceNumber)
                .commit_num(p.commit_num)
                .op_num(p.op_num),
            None => request.iterator_type(IteratorType::TrimHorizon),
        };
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                let text = format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e));
                return Err(match e.into_service_error() {
                    GetPropertygraphStreamError::ExpiredStreamException(_) => {
                        StreamError::Expired(from, text)
                    }
                    GetPropertygraphStreamError::StreamRecordsNotFoundException(_) => {
                        // No record past the position yet: an empty page.
                        return Ok(Page::default());
                    }
                    GetPropertygraphStreamError::ConstraintViolationException(_)
                    | GetPropertygraphStreamError::IllegalArgumentException(_)
                    | GetPropertygraphStreamError::InvalidArgumentException(_)
                    | GetPropertygraphStreamError::InvalidParameterException(_)
                    | GetPropertygraphStreamError::PreconditionsFailedException(_)
                    | GetPropertygraphStreamError::UnsupportedOperationException(_) => {
                        StreamError::Refused(text)
                    }
                    // Throttling, memory, timeouts, and no answer at all: later.
                    _ => StreamError::Unavailable(text),
                });
            }
        };
        let mut page = Page::default();
        for record in output.records() {
            let Some(at) = position(&record.event_id) else {
                continue;
            };
            page.last = Some(at);
            match element_of(record) {
                None => {}
                Some(Ok(element)) => page.elements.push((at, element)),
                Some(Err(why)) => {
                    tracing::warn!(
                        commit_num = at.commit_num,
                        op_num = at.op_num,
                        why,
                        "stream record skipped"
                    );
                    page.undecodable += 1;
                }
            }
        }
        if page.last.is_none() && !output.records().is_empty() {
            page.last = position(output.last_event_id());
        }
        Ok(page)
    }
}
