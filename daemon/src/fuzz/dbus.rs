//! Fuzz target `dbus_escape`: a process name into its D-Bus object path and back.
//!
//! Checks: every string escapes to a non-empty label of `[A-Za-z0-9_]` whose path
//! `dbus::process_path` accepts as is (never its fallback), which unescapes to the same
//! string; and a label that `unescape` accepts is exactly the one `escape` makes of its
//! result (one name, one path: no second spelling reaches the same program).

use crate::dbus::{PROCESS_PATH_PREFIX, escape, process_path};

pub fn dbus_escape(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let label = escape::escape(&name);
    assert!(
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{name:?} escaped to {label:?}"
    );
    assert!(
        !label.as_bytes()[0].is_ascii_digit(),
        "{name:?} escaped to {label:?}, which starts with a digit"
    );
    assert_eq!(
        escape::unescape(&label).as_deref(),
        Some(&*name),
        "{label:?} does not unescape to {name:?}"
    );
    let path = process_path(&name);
    assert_eq!(
        path.as_str(),
        format!("{PROCESS_PATH_PREFIX}{label}"),
        "{name:?}"
    );

    // The same bytes as a label someone put in an object path.
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(back) = escape::unescape(text)
    {
        assert_eq!(
            escape::escape(&back),
            text,
            "unescape accepted {text:?} (as {back:?}), a label escape never makes"
        );
    }
}
