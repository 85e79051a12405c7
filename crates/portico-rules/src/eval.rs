//! Evaluation of a `Query` over one message, with IoT SQL's three-valued logic: a missing field is
//! *undefined* (not null); comparisons with undefined or mismatched types are undefined; a WHERE
//! clause selects a message only when it is exactly `true`; undefined SELECT values are left out.

use serde_json::{Map, Value};

use crate::parser::{ArithOp, CmpOp, Expr, Func, Query, Segment, SelectItem};
use crate::topic;

/// One message as a rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub client_id: &'a str,
    /// Milliseconds since the Unix epoch, when the broker received the message.
    pub timestamp_ms: u64,
}

/// What a rule made of a message it matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The rule selected the message; `output` goes to `function`.
    Hit { rule: String, function: String, output: Value },
    /// The rule's topic filter matched but the message could not be evaluated.
    Skipped { rule: String, reason: String },
}

impl Query {
    /// `Ok(Some(output))` when the message matches FROM and WHERE; `Ok(None)` when it does not;
    /// `Err(reason)` when it matches FROM but cannot be evaluated (a payload that is not JSON).
    pub fn evaluate(&self, message: &Message<'_>) -> Result<Option<Value>, String> {
        if !topic::matches(&self.from, message.topic) {
            return Ok(None);
        }
        let payload = if self.uses_payload() {
            match serde_json::from_slice::<Value>(message.payload) {
                Ok(value) => Some(value),
                Err(e) => return Err(format!("payload is not JSON ({e})")),
            }
        } else {
            None
        };
        let scope = Scope { message, payload: payload.as_ref() };
        if let Some(filter) = &self.filter
            && scope.eval(filter) != Some(Value::Bool(true))
        {
            return Ok(None);
        }
        let mut output = Map::new();
        for item in &self.select {
            match item {
                SelectItem::All => match &payload {
                    Some(Value::Object(fields)) => {
                        output.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())))
                    }
                    _ => return Err("SELECT * needs a JSON object payload".into()),
                },
                SelectItem::Expr { expr, name } => {
                    if let Some(value) = scope.eval(expr) {
                        output.insert(name.clone(), value);
                    }
                }
            }
        }
        Ok(Some(Value::Object(output)))
    }

    fn uses_payload(&self) -> bool {
        self.select.iter().any(|item| match item {
            SelectItem::All => true,
            SelectItem::Expr { expr, .. } => expr.uses_payload(),
        }) || self.filter.as_ref().is_some_and(Expr::uses_payload)
    }
}

impl Expr {
    fn uses_payload(&self) -> bool {
        match self {
            Expr::Literal(_) => false,
            Expr::Path(_) => true,
            Expr::Call(_, args) => args.iter().any(Expr::uses_payload),
            Expr::Not(e) | Expr::Negate(e) => e.uses_payload(),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) | Expr::Arith(_, a, b) => {
                a.uses_payload() || b.uses_payload()
            }
            Expr::In { value, list, .. } => {
                value.uses_payload() || list.iter().any(Expr::uses_payload)
            }
            Expr::Is { value, .. } => value.uses_payload(),
        }
    }
}

struct Scope<'a> {
    message: &'a Message<'a>,
    payload: Option<&'a Value>,
}

/// `None` is IoT SQL's *undefined*.
type Val = Option<Value>;

impl Scope<'_> {
    fn eval(&self, expr: &Expr) -> Val {
        match expr {
            Expr::Literal(v) => Some(v.clone()),
            Expr::Path(segments) => {
                let mut current = self.payload?;
                for segment in segments {
                    current = match segment {
                        Segment::Field(name) => current.get(name)?,
                        Segment::Index(i) => current.get(*i)?,
                    };
                }
                Some(current.clone())
            }
            Expr::Call(func, args) => self.call(*func, args),
            Expr::Not(e) => match self.eval(e) {
                Some(Value::Bool(b)) => Some(Value::Bool(!b)),
                _ => None,
            },
            Expr::And(a, b) => match (self.eval(a), self.eval(b)) {
                (Some(Value::Bool(false)), _) | (_, Some(Value::Bool(false))) => {
                    Some(Value::Bool(false))
                }
                (Some(Value::Bool(true)), Some(Value::Bool(true))) => Some(Value::Bool(true)),
                _ => None,
            },
            Expr::Or(a, b) => match (self.eval(a), self.eval(b)) {
                (Some(Value::Bool(true)), _) | (_, Some(Value::Bool(true))) => {
                    Some(Value::Bool(true))
                }
                (Some(Value::Bool(false)), Some(Value::Bool(false))) => Some(Value::Bool(false)),
                _ => None,
            },
            Expr::Compare(op, a, b) => {
                compare(*op, &self.eval(a)?, &self.eval(b)?).map(Value::Bool)
            }
            Expr::Arith(op, a, b) => {
                let (x, y) = (self.eval(a)?.as_f64()?, self.eval(b)?.as_f64()?);
                let n = match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                    ArithOp::Div if y == 0.0 => return None,
                    ArithOp::Div => x / y,
                };
                number(n)
            }
            Expr::Negate(e) => number(-self.eval(e)?.as_f64()?),
            Expr::In { value, list, negated } => {
                let value = self.eval(value)?;
                let found = list.iter().any(|item| {
                    self.eval(item).is_some_and(|v| compare(CmpOp::Eq, &value, &v) == Some(true))
                });
                Some(Value::Bool(found != *negated))
            }
            Expr::Is { value, undefined, negated } => {
                let v = self.eval(value);
                let is = if *undefined { v.is_none() } else { v == Some(Value::Null) };
                Some(Value::Bool(is != *negated))
            }
        }
    }

    fn call(&self, func: Func, args: &[Expr]) -> Val {
        match func {
            Func::Topic => match args.first() {
                None => Some(Value::String(self.message.topic.to_string())),
                Some(arg) => {
                    let n = self.eval(arg)?.as_u64()?;
                    let level = self
                        .message
                        .topic
                        .split('/')
                        .nth(usize::try_from(n).ok()?.checked_sub(1)?)?;
                    Some(Value::String(level.to_string()))
                }
            },
            Func::ClientId => Some(Value::String(self.message.client_id.to_string())),
            Func::Timestamp => Some(Value::from(self.message.timestamp_ms)),
            Func::Lower | Func::Upper => {
                let arg = self.eval(args.first()?)?;
                let s = arg.as_str()?;
                Some(Value::String(if func == Func::Lower {
                    s.to_lowercase()
                } else {
                    s.to_uppercase()
                }))
            }
        }
    }
}

/// `Some(result)` for comparable values; `None` (undefined) for mismatched types.
fn compare(op: CmpOp, a: &Value, b: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?)?,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => x.cmp(y),
        (Value::Null, Value::Null) if matches!(op, CmpOp::Eq | CmpOp::Ne) => Ordering::Equal,
        (Value::Array(_) | Value::Object(_), _)
            if matches!(op, CmpOp::Eq | CmpOp::Ne)
                && a.is_array() == b.is_array()
                && a.is_object() == b.is_object() =>
        {
            if a == b {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

fn number(n: f64) -> Val {
    if !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Some(Value::from(n as i64))
    } else {
        serde_json::Number::from_f64(n).map(Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(sql: &str, topic: &str, payload: &str) -> Result<Option<Value>, String> {
        let q = Query::parse(sql).expect("parses");
        q.evaluate(&Message {
            topic,
            payload: payload.as_bytes(),
            client_id: "SN-1",
            timestamp_ms: 1_700_000_000_000,
        })
    }

    #[test]
    fn selects_fields_aliases_nested_paths_and_functions() {
        let out = run(
            "SELECT *, topic(2) AS serial, reading.temp AS t, readings[1] AS second, clientid() AS c, timestamp() AS ts, upper(severity) AS sev, 'x' AS lit, reading.temp * 2 AS double FROM 'instruments/+/events'",
            "instruments/SN-1/events",
            r#"{"severity": "error", "reading": {"temp": 41.5}, "readings": [1, 2]}"#,
        )
        .expect("evaluates")
        .expect("selected");
        assert_eq!(out["serial"], "SN-1");
        assert_eq!(out["t"], json!(41.5));
        assert_eq!(out["second"], 2);
        assert_eq!(out["c"], "SN-1");
        assert_eq!(out["ts"], 1_700_000_000_000u64);
        assert_eq!(out["sev"], "ERROR");
        assert_eq!(out["lit"], "x");
        assert_eq!(out["double"], json!(83));
        assert_eq!(out["severity"], "error");
    }

    #[test]
    fn where_uses_three_valued_logic() {
        let sql = "SELECT * FROM 'instruments/+/events' WHERE severity IN ('error', 'critical')";
        let topic = "instruments/SN-1/events";
        assert!(run(sql, topic, r#"{"severity": "critical"}"#).expect("ok").is_some());
        assert!(run(sql, topic, r#"{"severity": "info"}"#).expect("ok").is_none());
        assert!(run(sql, topic, r#"{"other": 1}"#).expect("ok").is_none());
        assert!(
            run(sql, "instruments/SN-1/telemetry", r#"{"severity": "error"}"#)
                .expect("ok")
                .is_none()
        );

        let cases = [
            ("a = 1", r#"{"a": 1.0}"#, true),
            ("a <> 1", r#"{"a": 2}"#, true),
            ("a = '1'", r#"{"a": 1}"#, false),
            ("NOT (a = '1')", r#"{"a": 1}"#, false),
            ("a > 1 AND b < 3", r#"{"a": 2, "b": 2}"#, true),
            ("a > 1 OR missing = 3", r#"{"a": 2}"#, true),
            ("missing IS UNDEFINED", r#"{}"#, true),
            ("missing IS NULL", r#"{}"#, false),
            ("n IS NULL", r#"{"n": null}"#, true),
            ("n IS NOT NULL", r#"{"n": 0}"#, true),
            ("s NOT IN ('a', 'b')", r#"{"s": "c"}"#, true),
            ("lower(s) = 'abc'", r#"{"s": "AbC"}"#, true),
            ("s >= 'b'", r#"{"s": "c"}"#, true),
            ("-a < 0", r#"{"a": 5}"#, true),
            ("a / 0 = 1", r#"{"a": 5}"#, false),
            ("flag = true", r#"{"flag": true}"#, true),
            ("topic(1) = 'instruments'", r#"{}"#, true),
        ];
        for (clause, payload, expected) in cases {
            let sql = format!("SELECT * FROM '#' WHERE {clause}");
            let got = run(&sql, "instruments/x", payload).expect("evaluates").is_some();
            assert_eq!(got, expected, "{clause} on {payload}");
        }
    }

    #[test]
    fn payloads_that_are_not_json_are_skipped_with_a_reason() {
        let err = run("SELECT * FROM 'a/b'", "a/b", "not json").expect_err("skipped");
        assert!(err.contains("not JSON"), "{err}");
        // A rule that never reads the payload still works.
        let out = run("SELECT topic() AS t FROM 'a/b'", "a/b", "\u{1}binary").expect("ok");
        assert_eq!(out, Some(json!({"t": "a/b"})));
        assert!(run("SELECT * FROM 'a/b'", "a/b", "[1]").is_err());
    }
}
