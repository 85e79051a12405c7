//! Rule sets: a TOML or JSON file of rules, each an IoT SQL statement and the function that
//! receives what it selects.

use serde::Deserialize;

use crate::eval::{Message, Outcome};
use crate::parser::{Query, SqlError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("rules file: {0}")]
    Format(String),
    #[error("rule `{rule}`: {error}")]
    Sql { rule: String, error: SqlError },
    #[error("rule `{rule}`: unknown function `{function}` (known: {known})")]
    UnknownFunction { rule: String, function: String, known: String },
    #[error("rule `{0}` is defined twice")]
    Duplicate(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub function: String,
    pub query: Query,
}

/// The rules a broker evaluates for every allowed message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: String,
    sql: String,
    function: String,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

/// The rule Portico runs when no rules file is given.
pub const BUILTIN_RULES: &str = r#"
[[rules]]
name = "instrument_alert"
sql = "SELECT *, topic(2) AS serial FROM 'instruments/+/events' WHERE severity IN ('error', 'critical')"
function = "instrument_alert"

[[rules]]
name = "lot_loaded"
sql = "SELECT *, topic(2) AS serial, timestamp() AS received_at FROM 'instruments/+/events' WHERE type = 'lot_loaded'"
function = "record_lot_use"
"#;

impl RuleSet {
    /// The built-in rules (instrument alerts, lot uses).
    pub fn builtin(known_functions: &[&str]) -> Result<RuleSet, RulesError> {
        Self::from_toml(BUILTIN_RULES, known_functions)
    }

    pub fn from_toml(text: &str, known_functions: &[&str]) -> Result<RuleSet, RulesError> {
        let file: RulesFile =
            toml::from_str(text).map_err(|e| RulesError::Format(e.to_string()))?;
        Self::build(file, known_functions)
    }

    pub fn from_json(text: &str, known_functions: &[&str]) -> Result<RuleSet, RulesError> {
        let file: RulesFile =
            serde_json::from_str(text).map_err(|e| RulesError::Format(e.to_string()))?;
        Self::build(file, known_functions)
    }

    fn build(file: RulesFile, known_functions: &[&str]) -> Result<RuleSet, RulesError> {
        let mut rules: Vec<Rule> = Vec::new();
        for entry in file.rules.into_iter().filter(|e| e.enabled) {
            if rules.iter().any(|r| r.name == entry.name) {
                return Err(RulesError::Duplicate(entry.name));
            }
            if !known_functions.contains(&entry.function.as_str()) {
                return Err(RulesError::UnknownFunction {
                    rule: entry.name,
                    function: entry.function,
                    known: known_functions.join(", "),
                });
            }
            let query = Query::parse(&entry.sql)
                .map_err(|error| RulesError::Sql { rule: entry.name.clone(), error })?;
            rules.push(Rule { name: entry.name, function: entry.function, query });
        }
        Ok(RuleSet { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every rule's verdict on `message`; rules whose FROM or WHERE do not match say nothing.
    pub fn evaluate(&self, message: &Message<'_>) -> Vec<Outcome> {
        self.rules
            .iter()
            .filter_map(|rule| match rule.query.evaluate(message) {
                Ok(Some(output)) => Some(Outcome::Hit {
                    rule: rule.name.clone(),
                    function: rule.function.clone(),
                    output,
                }),
                Ok(None) => None,
                Err(reason) => Some(Outcome::Skipped { rule: rule.name.clone(), reason }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["instrument_alert", "record_lot_use", "archive"];

    #[test]
    fn builtin_rule_selects_errors_and_criticals() {
        let rules = RuleSet::builtin(KNOWN).expect("builtin parses");
        let message = |payload: &'static str| Message {
            topic: "instruments/SN-7/events",
            payload: payload.as_bytes(),
            client_id: "SN-7",
            timestamp_ms: 1,
        };
        let outcomes = rules.evaluate(&message(r#"{"severity": "critical", "code": "E42"}"#));
        match outcomes.as_slice() {
            [Outcome::Hit { function, output, .. }] => {
                assert_eq!(function, "instrument_alert");
                assert_eq!(output["serial"], "SN-7");
                assert_eq!(output["code"], "E42");
            }
            other => panic!("{other:?}"),
        }
        assert!(rules.evaluate(&message(r#"{"severity": "info"}"#)).is_empty());
        assert!(matches!(
            rules.evaluate(&message("garbage")).as_slice(),
            [Outcome::Skipped { .. }, Outcome::Skipped { .. }]
        ));
    }

    #[test]
    fn builtin_rule_records_lot_loads_with_when_they_arrived() {
        let rules = RuleSet::builtin(KNOWN).expect("builtin parses");
        let message = Message {
            topic: "instruments/SN-7/events",
            payload: br#"{"type": "lot_loaded", "lot_number": "L-1"}"#,
            client_id: "SN-7",
            timestamp_ms: 1_700_000_000_000,
        };
        match rules.evaluate(&message).as_slice() {
            [Outcome::Hit { function, output, .. }] => {
                assert_eq!(function, "record_lot_use");
                assert_eq!(output["serial"], "SN-7");
                assert_eq!(output["lot_number"], "L-1");
                assert_eq!(output["received_at"], 1_700_000_000_000_u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_in_toml_and_json_with_clear_errors() {
        let json =
            r#"{"rules": [{"name": "a", "sql": "SELECT * FROM 'x/#'", "function": "archive"}]}"#;
        assert_eq!(RuleSet::from_json(json, KNOWN).expect("json").rules().len(), 1);
        let bad_sql =
            "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'x' WHERE\"\nfunction = \"archive\"\n";
        let err = RuleSet::from_toml(bad_sql, KNOWN).expect_err("bad sql");
        assert!(err.to_string().starts_with("rule `a`: column 24:"), "{err}");
        let unknown = "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'x'\"\nfunction = \"nope\"\n";
        assert!(matches!(
            RuleSet::from_toml(unknown, KNOWN),
            Err(RulesError::UnknownFunction { .. })
        ));
        let twice = "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'x'\"\nfunction = \"archive\"\n[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'y'\"\nfunction = \"archive\"\n";
        assert!(matches!(RuleSet::from_toml(twice, KNOWN), Err(RulesError::Duplicate(_))));
        let disabled = "[[rules]]\nname = \"a\"\nsql = \"SELECT * FROM 'x'\"\nfunction = \"archive\"\nenabled = false\n";
        assert!(RuleSet::from_toml(disabled, KNOWN).expect("ok").rules().is_empty());
        assert!(matches!(RuleSet::from_toml("rules = 3", KNOWN), Err(RulesError::Format(_))));
    }
}
