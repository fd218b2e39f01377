//! Config errors: each names the file, the line and the key path, and all of them are
//! collected before `load` returns, so a user fixes a file in one pass.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration.
///
/// Displays as `FILE:LINE: KEY: MESSAGE`, leaving out the parts that are unknown, e.g.
/// `/etc/brummer/brummer.toml:7: process.web.restart: expected never, on-failure or always`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file the problem is in (an env file for a bad env-file line).
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// Full dotted key path, e.g. `process.web.backoff.max`.
    pub key: Option<String>,
    /// Lowercase, no final period; says what to do where there is a fix.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            line,
            key,
            message: message.into(),
        }
    }

    /// One line, always: a control character anywhere (a newline in a file name, in an
    /// env file's path, in a message quoting the user's text) is shown escaped (`\n`), so
    /// that one error is one line of a log or of `--check-config`'s output.
    fn render(&self) -> String {
        let mut out = String::new();
        one_line(&self.file.display().to_string(), &mut out);
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        out.push_str(": ");
        if let Some(key) = &self.key {
            one_line(key, &mut out);
            out.push_str(": ");
        }
        one_line(&self.message, &mut out);
        out
    }
}

fn one_line(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// Every problem found by one `load`, in file order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_naming_a_path_with_a_newline_is_shown_on_one_line() {
        let e = ConfigError::new(
            "/etc/brummer/a\nb.env",
            Some(3),
            Some("process.db.env_file".into()),
            "cannot read env file /etc/brummer/b.e\nv: no such file",
        );
        assert_eq!(
            e.to_string(),
            "/etc/brummer/a\\nb.env:3: process.db.env_file: cannot read env file /etc/brummer/b.e\\nv: no such file"
        );
    }

    #[test]
    fn display_omits_missing_parts() {
        let full = ConfigError::new("/a.toml", Some(3), Some("process.x".into()), "bad");
        assert_eq!(full.to_string(), "/a.toml:3: process.x: bad");
        let no_line = ConfigError::new("/a.toml", None, None, "cannot read");
        assert_eq!(no_line.to_string(), "/a.toml: cannot read");
        let errs = ConfigErrors(vec![full, no_line]);
        assert_eq!(
            errs.to_string(),
            "/a.toml:3: process.x: bad\n/a.toml: cannot read"
        );
    }
}
