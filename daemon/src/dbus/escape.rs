//! Object-path labels for process names, escaped the way systemd escapes unit names in its
//! object paths (`bus_label_escape`): every byte outside `[A-Za-z0-9]`, and a digit in first
//! position, becomes `_` plus two lowercase hex digits; the empty string is `_`.
//! `my-app` -> `my_2dapp`, `1web` -> `_31web`.

/// Escapes `name` into one object-path element.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len() * 3);
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push('_');
            out.push(hex(b >> 4));
            out.push(hex(b & 0xf));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for a label `escape` cannot have produced, including a
/// second spelling of a name (`_41` for `A`, `1web` for `_31web`): one name, one label.
pub fn unescape(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'_' {
            let hi = unhex(*bytes.get(i + 1)?)?;
            let lo = unhex(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else if b.is_ascii_alphanumeric() {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let name = String::from_utf8(out).ok()?;
    // The loop above reads any escape; only the one `escape` makes is this name's label.
    (escape(&name) == label).then_some(name)
}

fn hex(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape("web"), "web");
        assert_eq!(escape("my-app"), "my_2dapp");
        assert_eq!(escape("api.v2"), "api_2ev2");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_eq!(escape("web1"), "web1");
        // A leading digit is escaped (an element may start with one, systemd still escapes it).
        assert_eq!(escape("1web"), "_31web");
        assert_eq!(escape("0"), "_30");
        assert_eq!(escape(""), "_");
        assert_eq!(escape("ü"), "_c3_bc");
        assert_eq!(escape("A-Z"), "A_2dZ");
    }

    #[test]
    fn escaped_labels_are_valid_path_elements_and_roundtrip() {
        for name in [
            "web", "my-app", "1web", "", "a_b.c-d", "x/y z", "ü", "_", "__", "9",
        ] {
            let e = escape(name);
            assert!(
                !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{e:?}"
            );
            assert_eq!(unescape(&e).as_deref(), Some(name), "{name:?} -> {e:?}");
        }
        assert_eq!(unescape("my_2"), None);
        assert_eq!(unescape("my_zz"), None);
        assert_eq!(unescape("a-b"), None);
    }

    /// Found by the `dbus_escape` fuzz target (docs/reliability.md): `unescape` took
    /// labels `escape` never makes, so one name had several labels.
    #[test]
    fn unescape_refuses_a_second_spelling() {
        assert_eq!(unescape("1web"), None);
        assert_eq!(unescape("_41"), None);
        assert_eq!(unescape("web_31"), None);
        assert_eq!(unescape("_5f"), Some("_".to_owned()));
        assert_eq!(unescape("_31web"), Some("1web".to_owned()));
        assert_eq!(unescape("_2e"), Some(".".to_owned()));
    }

    proptest::proptest! {
        #[test]
        fn roundtrip_any_string(s in ".{0,40}") {
            let e = escape(&s);
            proptest::prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            proptest::prop_assert_eq!(unescape(&e), Some(s));
        }
    }
}
