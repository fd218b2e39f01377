//! Process-name rules, shared by the config loader, the socket and the CLI.
//!
//! A name is 1-64 characters from `[A-Za-z0-9_.-]`: safe as a file name (`NAME.log`), a
//! D-Bus object path element after escaping, and a shell word.

use thiserror::Error;

pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("process name is empty")]
    Empty,
    #[error("process name {0:?} is longer than 64 characters")]
    TooLong(String),
    #[error(
        "process name {name:?} contains {bad:?}: only letters, digits, '_', '.' and '-' are allowed"
    )]
    BadChar { name: String, bad: char },
    #[error("process name {0:?} is reserved")]
    Reserved(String),
}

/// Checks a process name against the rules above.
///
/// ```
/// # use brummer_proto::validate_name;
/// assert!(validate_name("web-1.api_v2").is_ok());
/// assert!(validate_name("my app").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadChar {
            name: name.to_owned(),
            bad,
        });
    }
    // "." and ".." would make `NAME.log` escape nothing but read oddly; refuse them.
    if name == "." || name == ".." {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// The closest known name to `wanted`, for "did you mean" hints. Returns `None` when
/// nothing is reasonably close.
pub fn suggest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = strsim::levenshtein(wanted, k);
        let limit = (wanted.len().max(k.len()) / 3).max(2);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("a").is_ok());
        assert!(validate_name(&"x".repeat(64)).is_ok());
        assert_eq!(
            validate_name(&"x".repeat(65)),
            Err(NameError::TooLong("x".repeat(65)))
        );
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_name("a/b"),
            Err(NameError::BadChar { bad: '/', .. })
        ));
        assert!(validate_name("é").is_err());
        assert!(validate_name("..").is_err());
    }

    #[test]
    fn suggestions() {
        let known = ["web", "worker", "db"];
        assert_eq!(suggest("wbe", known), Some("web"));
        assert_eq!(suggest("workr", known), Some("worker"));
        assert_eq!(suggest("zzzzzz", known), None);
    }
}
