//! Tokens of the IoT SQL subset, each with the (1-based) column where it starts.

use crate::parser::{CmpOp, SqlError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// A "quoted" or `quoted` name: always a field name, never a keyword.
    Name(String),
    /// A single-quoted string literal.
    Str(String),
    Num(f64),
    Comma,
    Dot,
    Star,
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `=`, `<>` or `!=`, `<`, `<=`, `>`, `>=`.
    Cmp(CmpOp),
    Plus,
    Minus,
    Slash,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub col: usize,
}

pub(crate) fn lex(sql: &str) -> Result<Vec<Token>, SqlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            ',' => Some(Tok::Comma),
            '.' if !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => Some(Tok::Dot),
            '*' => Some(Tok::Star),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '=' => Some(Tok::Cmp(CmpOp::Eq)),
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            '/' => Some(Tok::Slash),
            _ => None,
        };
        if let Some(tok) = simple {
            tokens.push(Token { tok, col });
            i += 1;
            continue;
        }
        match c {
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (tok, len) = match (c, next) {
                    ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
                    ('<', Some('>')) => (Tok::Cmp(CmpOp::Ne), 2),
                    ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
                    ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
                    ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
                    ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
                    _ => {
                        return Err(SqlError::new(
                            col,
                            "unexpected `!` (did you mean `!=` or NOT?)",
                        ));
                    }
                };
                tokens.push(Token { tok, col });
                i += len;
            }
            '\'' => {
                // 'it''s' is the SQL way to put a quote inside a string.
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(SqlError::new(col, "string is not closed with '")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token { tok: Tok::Str(s), col });
            }
            '"' | '`' => {
                // A quoted identifier, for field names that are keywords or hold odd characters.
                let quote = c;
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|ch| *ch == quote) else {
                    return Err(SqlError::new(
                        col,
                        format!("quoted name is not closed with {quote}"),
                    ));
                };
                let name: String = chars[start..start + len].iter().collect();
                if name.is_empty() {
                    return Err(SqlError::new(col, "empty quoted name"));
                }
                tokens.push(Token { tok: Tok::Name(name), col });
                i = start + len + 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while chars.get(i).is_some_and(|d| {
                    d.is_ascii_digit()
                        || *d == '.'
                        || *d == 'e'
                        || *d == 'E'
                        || ((*d == '-' || *d == '+')
                            && matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E')))
                }) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| SqlError::new(col, format!("`{text}` is not a number")))?;
                tokens.push(Token { tok: Tok::Num(n), col });
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|d| d.is_alphanumeric() || *d == '_') {
                    i += 1;
                }
                tokens.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), col });
            }
            other => {
                return Err(SqlError::new(col, format!("unexpected character `{other}`")));
            }
        }
    }
    tokens.push(Token { tok: Tok::End, col: chars.len() + 1 });
    Ok(tokens)
}
