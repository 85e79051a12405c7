//! A typed builder of Gremlin text for Neptune. Neptune takes no parameter bindings, so values
//! are written into the query; the only way a value gets there is as an [`Arg`], which renders
//! it as an escaped literal. Step names are `&'static str`, written in this crate: nothing that
//! comes from a record or a caller can become a step, a token or a piece of syntax.
//!
//! The dialect is what Neptune, TinkerPop's grammar and the test engine all accept: double-quoted
//! strings, qualified tokens (`T.id`, `Cardinality.single`, `P.gte`), anonymous traversals as
//! `__.`, no variables, maps, lambdas or typed number suffixes.

use std::fmt::Write;

/// A traversal's text, built step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traversal {
    text: String,
}

/// An argument of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
    /// `T.id`
    Id,
    /// `Cardinality.single`
    Single,
    /// `P.gte(x)`
    Gte(Box<Arg>),
    /// An anonymous traversal (`__.…`).
    Traversal(Traversal),
}

impl Arg {
    pub fn str(value: impl Into<String>) -> Arg {
        Arg::Str(value.into())
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Arg {
        Arg::Str(value.to_string())
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Arg {
        Arg::Str(value.clone())
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Arg {
        Arg::Int(value)
    }
}

impl From<Traversal> for Arg {
    fn from(value: Traversal) -> Arg {
        Arg::Traversal(value)
    }
}

/// `value` as a double-quoted Gremlin string: backslash, quote and the usual control characters
/// escaped by name, every other control character (and the line and paragraph separators) as
/// `\uXXXX`, everything else as it is.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render(arg: &Arg, out: &mut String) {
    match arg {
        Arg::Str(s) => out.push_str(&quote(s)),
        Arg::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Arg::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Arg::Id => out.push_str("T.id"),
        Arg::Single => out.push_str("Cardinality.single"),
        Arg::Gte(inner) => {
            out.push_str("P.gte(");
            render(inner, out);
            out.push(')');
        }
        Arg::Traversal(t) => out.push_str(&t.text),
    }
}

impl Traversal {
    /// `g`
    pub fn g() -> Traversal {
        Traversal { text: "g".into() }
    }

    /// `__`, the start of an anonymous traversal.
    pub fn anon() -> Traversal {
        Traversal { text: "__".into() }
    }

    /// `.name(args…)`.
    pub fn step(mut self, name: &'static str, args: &[Arg]) -> Traversal {
        self.text.push('.');
        self.text.push_str(name);
        self.text.push('(');
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            render(arg, &mut self.text);
        }
        self.text.push(')');
        self
    }

    /// A step without arguments.
    pub fn then(self, name: &'static str) -> Traversal {
        self.step(name, &[])
    }

    /// `.V(ids…)`; never called with no ids (that would be every vertex).
    pub fn v(self, ids: &[String]) -> Traversal {
        let args: Vec<Arg> = ids.iter().map(Arg::from).collect();
        self.step("V", &args)
    }

    /// `.property(Cardinality.single, name, value)`, a vertex property with one value.
    pub fn single(self, name: &str, value: Arg) -> Traversal {
        self.step("property", &[Arg::Single, Arg::str(name), value])
    }

    /// `.by(…)`
    pub fn by(self, arg: impl Into<Arg>) -> Traversal {
        self.step("by", &[arg.into()])
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_and_escaped() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(quote("\u{0}\u{1b}\u{2028}"), r#""\u0000\u001b\u2028""#);
        assert_eq!(quote("Größe 日本 🧪"), "\"Größe 日本 🧪\"");
    }

    #[test]
    fn steps_render_in_the_dialect() {
        let upsert = Traversal::g()
            .v(&["account:a".into()])
            .then("fold")
            .step(
                "coalesce",
                &[
                    Traversal::anon().then("unfold").into(),
                    Traversal::anon()
                        .step("addV", &["account".into()])
                        .step("property", &[Arg::Id, "account:a".into()])
                        .into(),
                ],
            )
            .single("name", Arg::str("x\")"))
            .step("has", &["version".into(), Arg::Gte(Box::new(Arg::Int(3)))]);
        assert_eq!(
            upsert.text(),
            r#"g.V("account:a").fold().coalesce(__.unfold(), __.addV("account").property(T.id, "account:a")).property(Cardinality.single, "name", "x\")").has("version", P.gte(3))"#
        );
    }
}
