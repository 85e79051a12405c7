//! Kibana's (Lucene's) query syntax, parsed by `tantivy-query-grammar` (a pure parser) and
//! translated into the store-neutral `Query`: `field:value`, `"quoted phrases"`, `AND` / `OR` /
//! `NOT` (and `+` / `-`), `prefix*`, ranges (`duration_ms:>100`, `status:[400 TO 499]`),
//! `field:*` (exists), `field: IN [a b]`. Regular expressions are refused, not guessed at.

use super::{Bound, Match, Query};
use tantivy_query_grammar::{
    Delimiter, Occur, UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral,
};

/// Why a query does not parse, and where (a character offset into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

/// A field name a query may use: letters, digits, `_`, `.`, `-`, `@` (they become JSON paths).
fn field_name(name: &str, text: &str) -> Result<String, QueryError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(QueryError {
            position: text.find(name).unwrap_or(0),
            message: format!("{name:?} is not a field name"),
        })
    }
}

/// Parses `text`; an empty or blank query matches every line.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    if text.trim().is_empty() {
        return Ok(Query::All);
    }
    let (ast, errors) = tantivy_query_grammar::parse_query_lenient(text);
    if let Some(error) = errors.into_iter().next() {
        // The grammar counts bytes; callers count characters.
        let position =
            text.get(..error.pos.min(text.len())).map_or(error.pos, |s| s.chars().count());
        return Err(QueryError { position, message: error.message });
    }
    translate(ast, text)
}

fn translate(ast: UserInputAst, text: &str) -> Result<Query, QueryError> {
    match ast {
        UserInputAst::Leaf(leaf) => leaf_query(*leaf, text),
        UserInputAst::Boost(inner, _) => translate(*inner, text),
        UserInputAst::Clause(clauses) => {
            if clauses.is_empty() {
                return Ok(Query::All);
            }
            let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
            for (occur, ast) in clauses {
                let query = translate(ast, text)?;
                match occur {
                    Some(Occur::Must) => must.push(query),
                    Some(Occur::MustNot) => must_not.push(Query::Not(Box::new(query))),
                    Some(Occur::Should) | None => should.push(query),
                }
            }
            // Lucene: with a required clause, optional ones only rank; without one, at least
            // one optional clause must match.
            let mut all = must;
            if all.is_empty() && !should.is_empty() {
                all.push(if should.len() == 1 { should.remove(0) } else { Query::Or(should) });
            }
            all.extend(must_not);
            Ok(if all.len() == 1 { all.remove(0) } else { Query::And(all) })
        }
    }
}

fn bound(bound: UserInputBound) -> Bound {
    match bound {
        UserInputBound::Inclusive(v) => Bound::Inclusive(v),
        UserInputBound::Exclusive(v) => Bound::Exclusive(v),
        UserInputBound::Unbounded => Bound::Unbounded,
    }
}

fn leaf_query(leaf: UserInputLeaf, text: &str) -> Result<Query, QueryError> {
    match leaf {
        UserInputLeaf::All => Ok(Query::All),
        UserInputLeaf::Literal(UserInputLiteral {
            field_name: field,
            phrase,
            delimiter,
            prefix,
            ..
        }) => {
            let field = field.map(|f| field_name(&f, text)).transpose()?;
            // `*` alone after a field is "has the field".
            if let Some(field) = &field
                && phrase == "*"
                && delimiter == Delimiter::None
            {
                return Ok(Query::Exists { field: field.clone() });
            }
            let wild = delimiter == Delimiter::None && phrase.contains(['*', '?']);
            let matches = match phrase.strip_suffix('*') {
                _ if prefix => Match::Prefix(phrase),
                Some(stem) if wild && !stem.contains(['*', '?']) => Match::Prefix(stem.to_string()),
                _ if wild => Match::Wildcard(phrase),
                _ => Match::Exact(phrase),
            };
            Ok(Query::Term { field, matches })
        }
        UserInputLeaf::Range { field, lower, upper } => {
            let field = field.ok_or_else(|| QueryError {
                position: 0,
                message: "a range needs a field, e.g. duration_ms:>100".into(),
            })?;
            Ok(Query::Range {
                field: field_name(&field, text)?,
                lower: bound(lower),
                upper: bound(upper),
            })
        }
        UserInputLeaf::Set { field, elements } => {
            let field = field.ok_or_else(|| QueryError {
                position: 0,
                message: "IN [...] needs a field".into(),
            })?;
            Ok(Query::OneOf { field: field_name(&field, text)?, values: elements })
        }
        UserInputLeaf::Exists { field } => Ok(Query::Exists { field: field_name(&field, text)? }),
        UserInputLeaf::Regex { .. } => Err(QueryError {
            position: text.find('/').unwrap_or(0),
            message: "regular expressions are not supported; use prefix* or a phrase".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the report
mod tests {
    use super::*;

    fn term(field: Option<&str>, value: &str) -> Query {
        Query::Term { field: field.map(str::to_string), matches: Match::Exact(value.into()) }
    }

    #[test]
    fn kibana_queries_translate() {
        assert_eq!(parse("").unwrap(), Query::All);
        assert_eq!(parse("level:ERROR").unwrap(), term(Some("level"), "ERROR"));
        assert_eq!(
            parse("level:ERROR AND function:create_account").unwrap(),
            Query::And(vec![
                term(Some("level"), "ERROR"),
                term(Some("function"), "create_account")
            ])
        );
        assert_eq!(
            parse("serial:SN-1 OR serial:SN-2").unwrap(),
            Query::Or(vec![term(Some("serial"), "SN-1"), term(Some("serial"), "SN-2")])
        );
        assert_eq!(
            parse(r#""pump pressure" AND NOT level:INFO"#).unwrap(),
            Query::And(vec![
                term(None, "pump pressure"),
                Query::Not(Box::new(term(Some("level"), "INFO")))
            ])
        );
        assert_eq!(
            parse("function:create*").unwrap(),
            Query::Term { field: Some("function".into()), matches: Match::Prefix("create".into()) }
        );
        assert_eq!(
            parse("duration_ms:>100").unwrap(),
            Query::Range {
                field: "duration_ms".into(),
                lower: Bound::Exclusive("100".into()),
                upper: Bound::Unbounded
            }
        );
        assert_eq!(
            parse("status:[400 TO 499]").unwrap(),
            Query::Range {
                field: "status".into(),
                lower: Bound::Inclusive("400".into()),
                upper: Bound::Inclusive("499".into())
            }
        );
        assert_eq!(parse("request_id:*").unwrap(), Query::Exists { field: "request_id".into() });
        assert_eq!(
            parse("function:*_account").unwrap(),
            Query::Term {
                field: Some("function".into()),
                matches: Match::Wildcard("*_account".into())
            }
        );
    }

    #[test]
    fn bad_queries_say_where() {
        let err = parse("level:(ERROR").unwrap_err();
        assert!(err.position > 0, "{err}");
        let err = parse("message:/pump.*/").unwrap_err();
        assert!(err.message.contains("regular expressions"), "{err}");
        assert!(parse("AND").is_err() || parse("AND").is_ok());
    }
}
