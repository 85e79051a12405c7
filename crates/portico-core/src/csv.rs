//! CSV cells as every CSV Portico writes has them (the trace's impact list, the audit trail, the
//! warehouse's snapshots): RFC 4180 quoting, and a leading formula character (`= + - @`, tab,
//! carriage return) defused with a `'`, so a spreadsheet that opens the file never runs a cell
//! an outsider wrote (a file name, a reason) as a formula.

/// `value` as one CSV cell.
pub fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// One CSV line (CRLF-free: `\n` ends it) of `cells`.
pub fn line<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = cells.into_iter().map(cell).collect::<Vec<_>>().join(",");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-5"), "'-5");
        assert_eq!(line(["a", "b,c"]), "a,\"b,c\"\n");
    }
}
