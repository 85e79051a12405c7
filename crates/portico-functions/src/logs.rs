//! The log search: a query in Kibana's syntax and a time range, over the `LogStore` (platform
//! staff only: the logs name every account).

use portico_core::domain::{Caller, unix_ms};
use portico_core::logs::{LogHit, LogSearch};
use portico_core::ports::{Page, PageRequest};
use portico_core::{Error, FieldError, Result, policy};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Context;

/// A time bound: an RFC 3339 timestamp, or an age (`15m`, `1h`, `7d`: that long ago).
pub fn time_bound(field: &str, value: &str, now: OffsetDateTime) -> Result<i64> {
    let bad = || {
        Error::Validation(vec![FieldError::new(
            field,
            "must be an RFC 3339 time (2026-12-01T10:00:00Z) or an age such as 15m, 1h, 7d",
        )])
    };
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(unix_ms(at));
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let ago = time::Duration::seconds(number.checked_mul(seconds).ok_or_else(bad)?);
    Ok(unix_ms(now - ago))
}

/// Parses `q` (400 naming the position of an error) and the time range.
pub fn search_of(q: &str, from: Option<&str>, to: Option<&str>) -> Result<LogSearch> {
    let query = portico_core::logs::parse(q).map_err(|e| {
        Error::BadRequest(FieldError::new("q", format!("the query does not parse {e}")))
    })?;
    let now = OffsetDateTime::now_utc();
    Ok(LogSearch {
        query,
        from_ms: from.map(|f| time_bound("from", f, now)).transpose()?,
        to_ms: to.map(|t| time_bound("to", t, now)).transpose()?,
    })
}

/// `GET /v1/logs`: matching lines, newest first.
pub async fn search(
    ctx: &Context,
    caller: &Caller,
    search: &LogSearch,
    page: PageRequest,
) -> Result<Page<LogHit>> {
    policy::read_logs(caller)?;
    ctx.logs.search(search, &page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_instants_or_ages() {
        let now = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("time");
        assert_eq!(time_bound("from", "1h", now).ok(), Some(1_780_000_000_000 - 3_600_000));
        assert_eq!(time_bound("from", "2026-01-01T00:00:00Z", now).ok(), Some(1_767_225_600_000));
        assert!(time_bound("from", "yesterday", now).is_err());
        assert!(matches!(search_of("level:(ERROR", None, None), Err(Error::BadRequest(_))));
    }
}
