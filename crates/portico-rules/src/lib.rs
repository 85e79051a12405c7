//! Portico's rules engine: AWS IoT SQL rules (`SELECT ... FROM 'topic/filter' WHERE ...`), each
//! naming the function that handles what it selects. The same rule file works on the local broker
//! and on AWS IoT Core.
//!
//! No I/O: the host reads the rules file and hands the text in; messages come in as values.

mod eval;
mod lexer;
mod parser;
mod rules;
pub mod topic;

pub use eval::{Message, Outcome};
pub use parser::{Query, SqlError};
pub use rules::{Rule, RuleSet, RulesError};
