//! The `env_file` format: `KEY=VALUE` lines, read once at load time (not at each start, so
//! a broken env file is a config error and never a surprise at 3 a.m.).
//!
//! - blank lines and lines whose first non-blank character is `#` are ignored;
//! - an optional `export ` prefix is dropped, so a file can also be sourced by a shell;
//! - `KEY` is any non-empty run of characters without blanks, `=` or NUL;
//! - `VALUE` is taken literally (trailing blanks dropped), or quoted: `'...'` is literal,
//!   `"..."` understands `\\`, `\"`, `\$`, `` \` `` and `\n`; after a closing quote only
//!   blanks or a `# comment` may follow. Values span one line.

/// One bad line: its 1-based number and what is wrong with it.
pub(crate) type LineError = (usize, String);

/// Parses a whole env file. Later lines override earlier ones for the same key. Every bad
/// line is reported, not just the first.
pub(crate) fn parse(contents: &str) -> (Vec<(String, String)>, Vec<LineError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw) in contents.lines().enumerate() {
        match parse_line(raw) {
            Ok(Some(kv)) => entries.push(kv),
            Ok(None) => {}
            Err(msg) => errors.push((idx + 1, msg)),
        }
    }
    (entries, errors)
}

fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((key, rest)) = line.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE, found {:?}; comment lines start with #",
            short(line)
        ));
    };
    let key = key.trim_end();
    if key.is_empty() {
        return Err("missing variable name before '='".into());
    }
    if let Some(bad) = key.chars().find(|c| c.is_whitespace() || *c == '\0') {
        return Err(format!(
            "variable name {:?} contains {bad:?}: names cannot contain blanks",
            short(key)
        ));
    }
    let value = parse_value(rest.trim_start())?;
    if value.contains('\0') {
        return Err(format!("value of {key} contains a NUL byte"));
    }
    Ok(Some((key.to_owned(), value)))
}

fn parse_value(rest: &str) -> Result<String, String> {
    let mut chars = rest.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\''))) => q,
        _ => return Ok(rest.trim_end().to_owned()),
    };
    let mut value = String::new();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == quote {
            end = Some(i + c.len_utf8());
            break;
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, e @ ('\\' | '"' | '$' | '`'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            }
            continue;
        }
        value.push(c);
    }
    let Some(end) = end else {
        return Err(format!(
            "missing closing {quote} (values cannot span lines; use \\n inside double quotes)"
        ));
    };
    let tail = rest[end..].trim_start();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err(format!(
            "unexpected {:?} after the closing {quote} (quote the whole value)",
            short(tail)
        ));
    }
    Ok(value)
}

/// Long lines are cut in messages so one error stays one readable line.
fn short(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Vec<(String, String)> {
        let (entries, errors) = parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        entries
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn plain_quoted_export_and_comments() {
        let src = "# comment\n\n  A=1\nexport B = two words  \nC='single $x \\n'\nD=\"dq \\\"x\\\" \\$HOME \\n end\" # note\nexport\tE=\nF=a=b\r\n";
        assert_eq!(
            ok(src),
            vec![
                kv("A", "1"),
                kv("B", "two words"),
                kv("C", "single $x \\n"),
                kv("D", "dq \"x\" $HOME \n end"),
                kv("E", ""),
                kv("F", "a=b"),
            ]
        );
    }

    #[test]
    fn a_variable_named_export() {
        assert_eq!(ok("export=1\n"), vec![kv("export", "1")]);
    }

    #[test]
    fn bad_lines_are_all_reported_with_their_numbers() {
        let src = "A=1\njust words\nB=\"open\n=x\nC='x' y\nD E=1\n";
        let (entries, errors) = parse(src);
        assert_eq!(entries, vec![kv("A", "1")]);
        let lines: Vec<usize> = errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6], "{errors:?}");
        assert!(errors[0].1.contains("expected KEY=VALUE"), "{errors:?}");
        assert!(errors[1].1.contains("missing closing \""), "{errors:?}");
        assert!(errors[2].1.contains("missing variable name"), "{errors:?}");
        assert!(errors[3].1.contains("after the closing '"), "{errors:?}");
        assert!(errors[4].1.contains("cannot contain blanks"), "{errors:?}");
    }
}
