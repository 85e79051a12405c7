//! The parser: IoT SQL text -> `Query`. Errors say what was expected and at which column.

use serde_json::Value;

use crate::lexer::{Tok, Token, lex};

/// A syntax error, with the 1-based column it was found at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SqlError {
    pub column: usize,
    pub message: String,
}

impl SqlError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> Self {
        SqlError { column, message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Func {
    Topic,
    ClientId,
    Timestamp,
    Lower,
    Upper,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Value),
    Path(Vec<Segment>),
    Call(Func, Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `IS [NOT] NULL` (`undefined == false`) or `IS [NOT] UNDEFINED` (`undefined == true`).
    Is {
        value: Box<Expr>,
        undefined: bool,
        negated: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SelectItem {
    /// `*`: every field of the payload.
    All,
    Expr {
        expr: Expr,
        name: String,
    },
}

/// A parsed `SELECT ... FROM '...' [WHERE ...]` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub(crate) select: Vec<SelectItem>,
    pub(crate) from: String,
    pub(crate) filter: Option<Expr>,
}

impl Query {
    pub fn parse(sql: &str) -> Result<Query, SqlError> {
        let tokens = lex(sql)?;
        let mut parser = Parser { tokens, pos: 0 };
        let query = parser.query()?;
        parser.expect_end()?;
        Ok(query)
    }

    /// The topic filter of the FROM clause.
    pub fn topic_filter(&self) -> &str {
        &self.from
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "UNDEFINED",
];

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.is_keyword(word) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), SqlError> {
        if self.eat_keyword(word) { Ok(()) } else { Err(self.unexpected(&format!("`{word}`"))) }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), SqlError> {
        if self.eat(tok) { Ok(()) } else { Err(self.unexpected(what)) }
    }

    fn expect_end(&self) -> Result<(), SqlError> {
        if self.peek().tok == Tok::End {
            Ok(())
        } else {
            Err(self.unexpected("the end of the statement"))
        }
    }

    fn unexpected(&self, expected: &str) -> SqlError {
        let token = self.peek();
        let found = match &token.tok {
            Tok::End => "the end of the statement".to_string(),
            Tok::Ident(s) | Tok::Name(s) => format!("`{s}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => format!("{n}"),
            other => format!("{other:?}").to_lowercase(),
        };
        SqlError::new(token.col, format!("expected {expected}, found {found}"))
    }

    fn query(&mut self) -> Result<Query, SqlError> {
        self.expect_keyword("SELECT")?;
        let mut select = Vec::new();
        loop {
            select.push(self.select_item(select.len())?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect_keyword("FROM")?;
        let col = self.peek().col;
        let from = match self.advance().tok {
            Tok::Str(topic) => topic,
            _ => {
                return Err(SqlError::new(
                    col,
                    "expected the topic filter as a quoted string, e.g. FROM 'instruments/+/events'",
                ));
            }
        };
        if !portico_core::mqtt::valid_topic_filter(&from) {
            return Err(SqlError::new(col, format!("'{from}' is not a valid topic filter")));
        }
        let filter = if self.eat_keyword("WHERE") { Some(self.expr()?) } else { None };
        Ok(Query { select, from, filter })
    }

    fn select_item(&mut self, index: usize) -> Result<SelectItem, SqlError> {
        if self.eat(&Tok::Star) {
            return Ok(SelectItem::All);
        }
        let expr = self.expr()?;
        let name = if self.eat_keyword("AS") {
            let col = self.peek().col;
            match self.advance().tok {
                Tok::Ident(name) | Tok::Name(name) => name,
                _ => return Err(SqlError::new(col, "expected a name after AS")),
            }
        } else {
            default_name(&expr, index)
        };
        Ok(SelectItem::Expr { expr, name })
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SqlError> {
        let left = self.additive()?;
        let op = match self.peek().tok {
            Tok::Cmp(op) => Some(op),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            return Ok(Expr::Compare(op, Box::new(left), Box::new(self.additive()?)));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            let undefined = if self.eat_keyword("NULL") {
                false
            } else if self.eat_keyword("UNDEFINED") {
                true
            } else {
                return Err(self.unexpected("NULL or UNDEFINED after IS"));
            };
            return Ok(Expr::Is { value: Box::new(left), undefined, negated });
        }
        let negated = if self.is_keyword("NOT") && self.next_is_keyword("IN") {
            self.advance();
            true
        } else {
            false
        };
        if self.eat_keyword("IN") {
            self.expect(&Tok::LParen, "`(` after IN")?;
            let mut list = vec![self.additive()?];
            while self.eat(&Tok::Comma) {
                list.push(self.additive()?);
            }
            self.expect(&Tok::RParen, "`)` closing the IN list")?;
            return Ok(Expr::In { value: Box::new(left), list, negated });
        }
        Ok(left)
    }

    fn next_is_keyword(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(word))
    }

    fn additive(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            left = Expr::Arith(op, Box::new(left), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => return Ok(left),
            };
            self.advance();
            left = Expr::Arith(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        if self.eat(&Tok::Minus) {
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let start = self.pos;
        let token = self.advance();
        match token.tok {
            Tok::Num(n) => Ok(Expr::Literal(number(n))),
            Tok::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Tok::Name(name) => self.path(name),
            Tok::Ident(word) => {
                let upper = word.to_ascii_uppercase();
                match upper.as_str() {
                    "TRUE" => return Ok(Expr::Literal(Value::Bool(true))),
                    "FALSE" => return Ok(Expr::Literal(Value::Bool(false))),
                    "NULL" => return Ok(Expr::Literal(Value::Null)),
                    _ => {}
                }
                if KEYWORDS.contains(&upper.as_str()) {
                    return Err(SqlError::new(
                        token.col,
                        format!("expected a value, found the keyword {upper}"),
                    ));
                }
                if self.peek().tok == Tok::LParen {
                    return self.call(&word, token.col);
                }
                self.path(word)
            }
            _ => {
                self.pos = start;
                Err(self.unexpected("a value (a field, a 'string', a number or a function)"))
            }
        }
    }

    fn path(&mut self, first: String) -> Result<Expr, SqlError> {
        let mut segments = vec![Segment::Field(first)];
        loop {
            if self.eat(&Tok::Dot) {
                let col = self.peek().col;
                match self.advance().tok {
                    Tok::Ident(name) | Tok::Name(name) => segments.push(Segment::Field(name)),
                    _ => return Err(SqlError::new(col, "expected a field name after `.`")),
                }
            } else if self.eat(&Tok::LBracket) {
                let col = self.peek().col;
                match self.advance().tok {
                    Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => {
                        segments.push(Segment::Index(n as usize))
                    }
                    _ => return Err(SqlError::new(col, "expected an array index such as [0]")),
                }
                self.expect(&Tok::RBracket, "`]`")?;
            } else {
                return Ok(Expr::Path(segments));
            }
        }
    }

    fn call(&mut self, name: &str, col: usize) -> Result<Expr, SqlError> {
        let func = match name.to_ascii_lowercase().as_str() {
            "topic" => Func::Topic,
            "clientid" => Func::ClientId,
            "timestamp" => Func::Timestamp,
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            _ => {
                return Err(SqlError::new(
                    col,
                    format!(
                        "unknown function `{name}` (supported: topic, clientid, timestamp, lower, upper)"
                    ),
                ));
            }
        };
        self.expect(&Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen, "`)` closing the arguments")?;
        }
        let arity_ok = match func {
            Func::Topic => args.len() <= 1,
            Func::ClientId | Func::Timestamp => args.is_empty(),
            Func::Lower | Func::Upper => args.len() == 1,
        };
        if !arity_ok {
            return Err(SqlError::new(col, format!("wrong number of arguments to {name}()")));
        }
        if let (Func::Topic, Some(arg)) = (func, args.first())
            && !matches!(arg, Expr::Literal(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1))
        {
            return Err(SqlError::new(col, "topic(n) takes a level number from 1"));
        }
        Ok(Expr::Call(func, args))
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// The output field name of an unaliased expression: a path's last field, a function's name.
fn default_name(expr: &Expr, index: usize) -> String {
    match expr {
        Expr::Path(segments) => match segments.last() {
            Some(Segment::Field(name)) => name.clone(),
            _ => format!("_{}", index + 1),
        },
        Expr::Call(func, _) => format!("{func:?}").to_lowercase(),
        _ => format!("_{}", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_builtin_rule() {
        let q = Query::parse(
            "SELECT *, topic(2) AS serial FROM 'instruments/+/events' WHERE severity IN ('error', 'critical')",
        )
        .expect("parses");
        assert_eq!(q.topic_filter(), "instruments/+/events");
        assert_eq!(q.select.len(), 2);
        assert!(q.filter.is_some());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("SELECT * 'a/b'", 10, "expected `FROM`"),
            ("SELECT * FROM a", 15, "quoted string"),
            ("SELECT * FROM 'a/#/b'", 15, "not a valid topic filter"),
            ("SELECT * FROM 'a' WHERE x = ", 29, "expected a value"),
            ("SELECT nope(1) FROM 'a'", 8, "unknown function"),
            ("SELECT * FROM 'a' WHERE x = 'open", 29, "not closed"),
            ("SELECT * FROM 'a' WHERE x IS 3", 30, "NULL or UNDEFINED"),
            ("SELECT * FROM 'a' extra", 19, "end of the statement"),
            ("SELECT topic(0) FROM 'a'", 8, "level number"),
        ];
        for (sql, column, message) in cases {
            let err = Query::parse(sql).expect_err(sql);
            assert_eq!(err.column, column, "{sql}: {err}");
            assert!(err.message.contains(message), "{sql}: {err}");
        }
    }
}
