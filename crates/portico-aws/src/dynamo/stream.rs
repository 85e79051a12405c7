//! DynamoDB stream records as change records: the table's stream (new images) is the AWS host's
//! change feed, as the `changes` table is the local one. An item's `data` is its record's JSON,
//! so the new image of a domain record's item is that record as the write left it.

use portico_core::graph::{Change, ChangeRecord};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

use super::keys::{self, Aggregate, ONE};

/// The change a stream record (as Lambda delivers it: `eventName`, `dynamodb` with `NewImage`,
/// `SequenceNumber`, `ApproximateCreationDateTime`) stands for. `Ok(None)` for removals and for
/// items that are not domain records; `Err` says why a record cannot be read.
pub fn change_record(record: &Value) -> Result<Option<ChangeRecord>, String> {
    if record.get("eventName").and_then(Value::as_str) == Some("REMOVE") {
        return Ok(None);
    }
    let stream = record.get("dynamodb").ok_or("no `dynamodb` in the record")?;
    let version = stream
        .get("SequenceNumber")
        .and_then(Value::as_str)
        .and_then(|n| n.parse::<u128>().ok())
        .ok_or("no decimal `SequenceNumber`")?;
    let seconds = stream.get("ApproximateCreationDateTime").and_then(Value::as_f64).unwrap_or(0.0);
    let at = OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128)
        .map_err(|e| format!("`ApproximateCreationDateTime` out of range: {e}"))?;
    let image = stream.get("NewImage").ok_or("no `NewImage` (the stream must carry new images)")?;
    let text = |name: &str| image.get(name).and_then(|v| v.get("S")).and_then(Value::as_str);
    let (Some(pk), Some(sk)) = (text("pk"), text("sk")) else {
        return Err("the new image has no `pk` / `sk`".into());
    };
    let Some(aggregate) = keys::aggregate(pk).filter(|_| sk == ONE) else {
        return Ok(None);
    };
    let data = text("data").ok_or_else(|| format!("{pk} has no `data`"))?;
    fn decode<T: DeserializeOwned>(pk: &str, data: &str) -> Result<T, String> {
        serde_json::from_str(data).map_err(|e| format!("{pk}: `data` does not decode: {e}"))
    }
    let change = match aggregate {
        Aggregate::Account => Change::Account(decode(pk, data)?),
        Aggregate::User => Change::User(decode(pk, data)?),
        Aggregate::Instrument => Change::Instrument(decode(pk, data)?),
        Aggregate::Document => Change::Document(decode(pk, data)?),
        Aggregate::Product => Change::Product(decode(pk, data)?),
        Aggregate::Lot => Change::Lot(decode(pk, data)?),
        Aggregate::Shipment => Change::Shipment(decode(pk, data)?),
        Aggregate::LotUse => Change::LotUse(decode(pk, data)?),
        Aggregate::Alert => Change::Alert(decode(pk, data)?),
        Aggregate::SignIn => Change::SignIn(decode(pk, data)?),
    };
    Ok(Some(ChangeRecord { version, at, change }))
}
