//! The layers of the configuration, derived from its declaration rather than listed by hand.
//!
//! The defaults (`Config::default()`, as a JSON tree) name every key: each leaf's path is its TOML
//! key (`mqtt.publish_burst`) and, upper-cased with `_` for `.` and `PORTICO_` in front, its
//! environment variable (`PORTICO_MQTT_PUBLISH_BURST`). An environment value is read as the type
//! of the default it replaces: numbers, `true`/`false`, comma-separated lists, empty = unset for
//! optional keys. Keys ending in `_secs` or `_ms` also take durations (`30s`, `15m`, `250ms`).
//! Each layer is checked as it is merged, so an error names the file or the variable at fault;
//! unknown keys and unknown `PORTICO_*` variables are errors naming the closest known one.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Config, ConfigError};

/// Variables that set a key but are not derived from it: the SPEC's `PORTICO_LOG`, and the AWS
/// SDKs' own names, so a Lambda's standard environment is enough. A derived name set too wins.
const ALIASES: &[(&str, &str)] = &[
    ("PORTICO_LOG", "log.filter"),
    ("AWS_REGION", "aws.region"),
    ("AWS_ENDPOINT_URL", "aws.endpoint_url"),
];

/// `PORTICO_*` variables that are read elsewhere and are not configuration keys.
const OTHER_VARIABLES: &[&str] = &[
    // The configuration file itself.
    "PORTICO_CONFIG",
    // The Lambda bootstrap's handler choice, and the IoT rule action's function.
    "PORTICO_LAMBDA_HANDLER",
    "PORTICO_RULE_FUNCTION",
    // The AWS tests' moto endpoint.
    "PORTICO_TEST_AWS_ENDPOINT",
];

/// Whether the configuration reads the variable `name` (or must refuse it as a typo).
pub(crate) fn is_read(name: &str) -> bool {
    name.starts_with("PORTICO_") || ALIASES.iter().any(|(alias, _)| *alias == name)
}

/// The configuration being built: the defaults, then each layer merged over them.
pub(crate) struct Layers {
    tree: Value,
    /// Every key's path and its default, in declaration order.
    keys: Vec<(String, Value)>,
}

impl Layers {
    pub(crate) fn new() -> Result<Layers, ConfigError> {
        let tree = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::Invalid(format!("the defaults do not serialize: {e}")))?;
        let mut keys = Vec::new();
        leaves(&tree, "", &mut keys);
        Ok(Layers { tree, keys })
    }

    /// Every derived variable with the key it sets, then the aliases.
    pub(crate) fn variables(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|(path, _)| (variable(path), path.clone()))
            .chain(ALIASES.iter().map(|(var, path)| (var.to_string(), path.to_string())))
            .collect()
    }

    /// A TOML file's keys over what is there; answers the message for a bad file.
    pub(crate) fn merge_file(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let file = serde_json::to_value(table).map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        leaves(&file, "", &mut found);
        for (path, value) in found {
            let Some(default) = self.default_of(&path) else {
                return Err(unknown(
                    &format!("key `{path}`"),
                    &path,
                    self.keys.iter().map(|(k, _)| k.as_str()),
                ));
            };
            let value = match (&value, duration_unit(&path)) {
                (Value::String(text), Some(unit)) if default.is_number() => {
                    duration(text, unit).map_err(|e| format!("{path}: {e}"))?
                }
                _ => value,
            };
            self.set(&path, value);
        }
        self.check().map_err(|e| e.to_string())
    }

    /// The environment's variables over what is there: aliases first, so a derived name wins.
    pub(crate) fn merge_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let variables = self.variables();
        let mut ordered: Vec<(&String, &String)> = env.iter().collect();
        ordered.sort_by_key(|(var, _)| !ALIASES.iter().any(|(alias, _)| alias == var));
        for (var, raw) in ordered {
            if OTHER_VARIABLES.contains(&var.as_str()) || !is_read(var) {
                continue;
            }
            let Some((_, path)) = variables.iter().find(|(name, _)| name == var) else {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: unknown(
                        "variable",
                        var,
                        variables
                            .iter()
                            .map(|(name, _)| name.as_str())
                            .chain(OTHER_VARIABLES.iter().copied()),
                    ),
                });
            };
            let default = self.default_of(path).cloned().unwrap_or(Value::Null);
            let value = from_text(path, raw.trim(), &default)
                .map_err(|message| ConfigError::Env { var: var.clone(), message })?;
            self.set(path, value);
            self.check()
                .map_err(|e| ConfigError::Env { var: var.clone(), message: e.to_string() })?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Config, ConfigError> {
        serde_json::from_value(self.tree).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Whether what is merged so far still makes a `Config` (types, enum values).
    fn check(&self) -> Result<(), serde_json::Error> {
        Config::deserialize(&self.tree).map(|_| ())
    }

    fn default_of(&self, path: &str) -> Option<&Value> {
        self.keys.iter().find(|(k, _)| k == path).map(|(_, v)| v)
    }

    fn set(&mut self, path: &str, value: Value) {
        let mut node = &mut self.tree;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Value::Object(map) = node else { return };
            if parts.peek().is_none() {
                map.insert(part.to_string(), value);
                return;
            }
            node = map.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
        }
    }
}

/// The leaves of `tree` (objects are sections; anything else, null included, is a key).
fn leaves(tree: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    let Value::Object(map) = tree else {
        out.push((prefix.to_string(), tree.clone()));
        return;
    };
    for (name, value) in map {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        leaves(value, &path, out);
    }
}

/// `http.addr` -> `PORTICO_HTTP_ADDR`.
fn variable(path: &str) -> String {
    format!("PORTICO_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// An environment value read as the type of the default it replaces.
fn from_text(path: &str, text: &str, default: &Value) -> Result<Value, String> {
    Ok(match default {
        Value::Null if text.is_empty() => Value::Null,
        Value::Null | Value::String(_) => Value::String(text.to_string()),
        Value::Bool(_) => match text {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            other => return Err(format!("{other:?} is not true or false")),
        },
        Value::Number(_) => match (text.parse::<u64>(), duration_unit(path)) {
            (Ok(n), _) => Value::from(n),
            (Err(_), Some(unit)) => duration(text, unit)?,
            // Every numeric key is a whole number.
            (Err(_), None) => return Err(format!("{text:?} is not a valid number")),
        },
        Value::Array(_) => Value::Array(
            text.split([',', ' '])
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        ),
        Value::Object(_) => return Err("is a section, not a key".into()),
    })
}

#[derive(Clone, Copy)]
enum Unit {
    Secs,
    Millis,
}

/// Keys counted in seconds or milliseconds, which also take durations.
fn duration_unit(path: &str) -> Option<Unit> {
    if path.ends_with("_secs") {
        Some(Unit::Secs)
    } else if path.ends_with("_ms") {
        Some(Unit::Millis)
    } else {
        None
    }
}

/// `30s`, `15m`, `1h 30m`, `250ms` in the key's unit; a remainder below it is refused.
fn duration(text: &str, unit: Unit) -> Result<Value, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a number or a duration like 30s or 15m: {e}"))?;
    let (amount, exact) = match unit {
        Unit::Secs => (d.as_secs(), d.subsec_nanos() == 0),
        Unit::Millis => {
            (u64::try_from(d.as_millis()).unwrap_or(u64::MAX), d.subsec_nanos() % 1_000_000 == 0)
        }
    };
    if !exact {
        return Err(format!("{text:?} is finer than this key's unit"));
    }
    Ok(Value::from(amount))
}

/// "unknown variable `PORTICO_HTTP_ADRR`; did you mean `PORTICO_HTTP_ADDR`?"
fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let closest = known
        .map(|k| (edit_distance(name, k), k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= (k.len() / 3).max(3));
    let subject = if what == "variable" {
        format!("unknown variable `{name}`")
    } else {
        format!("unknown {what}")
    };
    match closest {
        Some((_, k)) => format!("{subject}; did you mean `{k}`?"),
        None => format!("{subject}; `portico config` prints every key"),
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_variable_and_the_derivation_is_the_documented_one() {
        let layers = Layers::new().expect("defaults");
        let variables: BTreeMap<String, String> = layers.variables().into_iter().collect();
        for (var, key) in [
            ("PORTICO_DATA_DIR", "data_dir"),
            ("PORTICO_HTTP_ADDR", "http.addr"),
            ("PORTICO_MQTT_PUBLISH_RATE_PER_SEC", "mqtt.publish_rate_per_sec"),
            ("PORTICO_DOCUMENTS_CERTIFICATE_ISSUER", "documents.certificate_issuer"),
            ("PORTICO_AUTH_ISSUER", "auth.issuer"),
            ("PORTICO_SENDGRID_API_KEY", "sendgrid.api_key"),
            ("PORTICO_LOG", "log.filter"),
            ("PORTICO_BACKEND", "backend"),
            ("AWS_REGION", "aws.region"),
        ] {
            assert_eq!(variables.get(var).map(String::as_str), Some(key), "{var}");
        }
    }

    #[test]
    fn suggestions_name_the_closest_key() {
        assert_eq!(edit_distance("PORTICO_HTTP_ADRR", "PORTICO_HTTP_ADDR"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let message = unknown(
            "variable",
            "PORTICO_HTTP_ADRR",
            ["PORTICO_HTTP_ADDR", "PORTICO_MQTT_ADDR"].into_iter(),
        );
        assert!(message.contains("did you mean `PORTICO_HTTP_ADDR`"), "{message}");
        let message = unknown(
            "variable",
            "PORTICO_NOTHING_LIKE_IT_AT_ALL",
            ["PORTICO_HTTP_ADDR"].into_iter(),
        );
        assert!(message.contains("portico config"), "{message}");
    }

    #[test]
    fn durations_in_the_keys_unit() {
        assert_eq!(duration("15m", Unit::Secs), Ok(Value::from(900)));
        assert_eq!(duration("1h 30m", Unit::Secs), Ok(Value::from(5400)));
        assert_eq!(duration("250ms", Unit::Millis), Ok(Value::from(250)));
        assert!(duration("1500ms", Unit::Secs).is_err());
        assert!(duration("soon", Unit::Secs).is_err());
    }
}
