//! Typed reads of values from toml's spanned parse tree (`toml::de::DeTable`), each turning
//! a wrong value into a `ConfigError` at the value's line and carrying on.
//!
//! Why not `#[derive(Deserialize)]` with `deny_unknown_fields`: serde stops at the first
//! error and its messages ("invalid type: integer `5`, expected a string") name neither the
//! key path nor the fix; walking the spanned tree reports every problem of a file at once.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// One file being checked: its path, its lines (for span -> line) and the error sink.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub lines: LineIndex,
    pub errors: &'a mut Vec<ConfigError>,
    /// What the load read (env files are read while checking a process).
    pub inputs: &'a mut super::Inputs,
}

impl Ctx<'_> {
    /// 1-based line of a byte offset.
    pub fn line(&self, span: &Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    pub fn err(&mut self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(ConfigError::new(
            self.file,
            Some(line),
            Some(key.to_owned()),
            message,
        ));
    }

    /// Reports every key of `table` that is not in `known` (with a did-you-mean).
    pub fn unknown_keys(&mut self, table: &DeTable<'_>, path: &str, known: &[&str]) {
        for (k, _) in table.iter() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                self.unknown_key(&k.span(), &join(path, name), name, known);
            }
        }
    }

    /// Reports one unknown key `name` (full path `key`).
    pub fn unknown_key(&mut self, span: &Range<usize>, key: &str, name: &str, known: &[&str]) {
        let hint = match brummer_proto::name::suggest(name, known.iter().copied()) {
            Some(s) => format!(", did you mean {s:?}?"),
            None => String::new(),
        };
        let msg = format!("unknown key{hint} (expected one of: {})", known.join(", "));
        self.err(span, key, msg);
    }

    fn wrong_type(&mut self, v: &Value<'_>, key: &str, expected: &str) {
        let found = v.get_ref().type_str();
        self.err(
            &v.span(),
            key,
            format!("expected {expected}, found {found}"),
        );
    }

    pub fn table<'v, 'i>(&mut self, v: &'v Value<'i>, key: &str) -> Option<&'v DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, key, &format!("a table ([{key}])"));
                None
            }
        }
    }

    pub fn string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    /// An IP address and port, such as `127.0.0.1:9183` or `[::1]:9183`.
    pub fn socket_addr(&mut self, v: &Value<'_>, key: &str) -> Option<std::net::SocketAddr> {
        let s = self.string(v, key)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &v.span(),
                    key,
                    format!(
                        "{s:?} is not an IP address and port: write one such as \"127.0.0.1:9183\""
                    ),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, v: &Value<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, key, "true or false");
                None
            }
        }
    }

    pub fn integer(&mut self, v: &Value<'_>, key: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(&v.span(), key, "integer out of range");
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "an integer");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int_in(&mut self, v: &Value<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.integer(v, key)?;
        if n < min || n > max {
            self.err(
                &v.span(),
                key,
                format!("{n} is out of range: use a value from {min} to {max}"),
            );
            return None;
        }
        Some(n)
    }

    /// A size: an integer of bytes, or a string like `"10MiB"`, `"512 KiB"`, `"1G"`, `"2MB"`
    /// (K/M/G/T and KiB.. are powers of 1024, kB/MB/GB/TB of 1000), within `min..=max`.
    pub fn size(&mut self, v: &Value<'_>, key: &str, min: u64, max: u64) -> Option<u64> {
        let n = match v.get_ref() {
            DeValue::Integer(_) => u64::try_from(self.integer(v, key)?).ok(),
            DeValue::String(s) => parse_size(s),
            _ => {
                self.wrong_type(v, key, "a size like \"10MiB\" or a number of bytes");
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.err(
                    &v.span(),
                    key,
                    format!("{n} bytes is out of range: use a size from {min} to {max} bytes"),
                );
                None
            }
            None => {
                self.err(
                    &v.span(),
                    key,
                    "not a size: write a number of bytes or e.g. \"10MiB\", \"512KiB\", \"1GiB\"",
                );
                None
            }
        }
    }

    /// An absolute path given as a string.
    pub fn abs_path(&mut self, v: &Value<'_>, key: &str) -> Option<std::path::PathBuf> {
        let s = self.string(v, key)?;
        if s.is_empty() || !s.starts_with('/') {
            self.err(
                &v.span(),
                key,
                format!("{s:?} is not an absolute path: write it starting with /"),
            );
            return None;
        }
        if s.contains('\0') {
            self.err(&v.span(), key, "path contains a NUL byte");
            return None;
        }
        Some(s.into())
    }

    /// A humantime string (`"1m 30s"`, `"250ms"`) or an integer of seconds.
    pub fn duration(&mut self, v: &Value<'_>, key: &str) -> Option<Duration> {
        const HINT: &str = "write a duration like \"10s\", \"500ms\" or \"1m 30s\", or an integer number of seconds";
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(v, key)?;
                match u64::try_from(n) {
                    Ok(secs) => Some(Duration::from_secs(secs)),
                    Err(_) => {
                        self.err(&v.span(), key, format!("{n} is negative: {HINT}"));
                        None
                    }
                }
            }
            DeValue::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(
                        &v.span(),
                        key,
                        format!("invalid duration {s:?} ({e}): {HINT}"),
                    );
                    None
                }
            },
            _ => {
                let found = v.get_ref().type_str();
                self.err(
                    &v.span(),
                    key,
                    format!("expected a duration, found {found}: {HINT}"),
                );
                None
            }
        }
    }

    /// A signal: `"SIGTERM"`, `"TERM"`, `"15"` or `15`.
    pub fn signal(&mut self, v: &Value<'_>, key: &str) -> Option<i32> {
        const HINT: &str = "use a name like \"SIGTERM\" or \"INT\", or a signal number";
        let parsed = match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(v, key)?;
                signal_number(n).ok_or_else(|| format!("{n} is not a signal number: {HINT}"))
            }
            DeValue::String(s) => {
                parse_signal(s).ok_or_else(|| format!("unknown signal {s:?}: {HINT}"))
            }
            _ => {
                let found = v.get_ref().type_str();
                Err(format!(
                    "expected a signal name or number, found {found}: {HINT}"
                ))
            }
        };
        match parsed {
            Ok(sig) => Some(sig),
            Err(msg) => {
                self.err(&v.span(), key, msg);
                None
            }
        }
    }
}

fn signal_number(n: i64) -> Option<i32> {
    let n = i32::try_from(n).ok()?;
    (1..=libc::SIGRTMAX()).contains(&n).then_some(n)
}

fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return signal_number(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|sig| sig as i32)
}

/// `"10MiB"` -> 10485760. See `Ctx::size`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Where each line of a text starts, so that every key's line is a binary search: counting
/// newlines from the start for each key made a file of many programs quadratic to check.
pub(crate) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub fn new(src: &str) -> LineIndex {
        LineIndex(memchr::memchr_iter(b'\n', src.as_bytes()).collect())
    }

    /// 1-based line of a byte offset (as [`line_of`]).
    pub fn line(&self, offset: usize) -> usize {
        // Newlines before `offset`, plus one.
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// 1-based line of a byte offset in `src`.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// `path.key`, quoting `key` the way TOML would need it (`process."web.v2"`).
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Why a regular expression was refused, on one line as every config error is: regex's own
/// text spans several (the pattern, a caret under the fault, then the reason), and the
/// pattern is in the file already.
pub(crate) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `config` fuzz target (docs/reliability.md, finding 9): an invalid
    /// pattern in `error_patterns` or a ready check gave an error over four lines.
    #[test]
    #[expect(
        clippy::invalid_regex,
        reason = "the invalid pattern is what is tested"
    )]
    fn a_bad_regex_is_reported_on_one_line() {
        let e = regex::Regex::new("+ba").unwrap_err();
        assert!(e.to_string().contains('\n'), "regex's own text: {e}");
        assert_eq!(regex_reason(&e), "repetition operator missing expression");
        let big = regex::RegexBuilder::new("a{1000}{1000}")
            .size_limit(1000)
            .build()
            .unwrap_err();
        assert!(!regex_reason(&big).is_empty() && !regex_reason(&big).contains('\n'));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("term"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("INT"), Some(libc::SIGINT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(signal_number(libc::SIGRTMAX() as i64 + 1), None);
    }

    #[test]
    fn key_paths() {
        assert_eq!(join("", "process"), "process");
        assert_eq!(join("process", "web"), "process.web");
        assert_eq!(join("process", "web.v2"), "process.\"web.v2\"");
        assert_eq!(join("process", "my app"), "process.\"my app\"");
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        let src = "a\nb\n\nc";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() + 1 {
            assert_eq!(index.line(offset), line_of(src, offset), "offset {offset}");
        }
    }
}
