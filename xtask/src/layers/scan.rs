//! Finds the module paths one Rust source file refers to: `use` trees (grouped ones
//! expanded) and `crate::` / `super::` / `self::` paths in code, with comments and literals
//! skipped and inline `mod name { .. }` blocks tracked so `super::` resolves from the right
//! place. A token scanner, not a parser: it only has to see paths, never types or bodies.

/// One token of code; comments, string, char and number literals never become tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    Ident(&'a str),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind<'a>,
    line: usize,
}

/// A path the file refers to, resolved to its absolute module path (the segments after
/// `crate::`), and the line it appears on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    pub line: usize,
}

/// Every path `src` refers to; `module` is the file's own module path (`control/conn.rs`
/// is `["control", "conn"]`, `control/mod.rs` is `["control"]`).
pub fn references(src: &str, module: &[String]) -> Vec<Reference> {
    let toks = tokens(src);
    let mut out = Vec::new();
    // Inline modules entered: their name and the brace depth inside them.
    let mut inline: Vec<(&str, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let prev_is_sep = i > 0 && toks[i - 1].kind == Kind::PathSep;
        match toks[i].kind {
            Kind::Punct('{') => depth += 1,
            Kind::Punct('}') => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Kind::Ident("mod") => {
                if let (Some(Kind::Ident(name)), Some(Kind::Punct('{'))) = (
                    toks.get(i + 1).map(|t| t.kind),
                    toks.get(i + 2).map(|t| t.kind),
                ) {
                    depth += 1;
                    inline.push((name, depth));
                    i += 3;
                    continue;
                }
            }
            Kind::Ident("use") if !prev_is_sep => {
                let here = scope(module, &inline);
                let mut leaves = Vec::new();
                i = use_tree(&toks, i + 1, Vec::new(), &mut leaves);
                for (segs, line) in leaves {
                    if let Some(path) = resolve(&here, &segs) {
                        out.push(Reference { path, line });
                    }
                }
                continue;
            }
            Kind::Ident(first @ ("crate" | "$crate" | "super" | "self"))
                if !prev_is_sep && toks.get(i + 1).map(|t| t.kind) == Some(Kind::PathSep) =>
            {
                let mut segs = vec![first];
                let mut line = toks[i].line;
                let mut j = i + 1;
                while let (
                    Some(Kind::PathSep),
                    Some(Token {
                        kind: Kind::Ident(s),
                        line: l,
                    }),
                ) = (toks.get(j).map(|t| t.kind), toks.get(j + 1).copied())
                {
                    segs.push(s);
                    line = l;
                    j += 2;
                }
                let here = scope(module, &inline);
                if let Some(path) = resolve(&here, &segs) {
                    out.push(Reference { path, line });
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module path at the current token: the file's, plus the inline modules entered.
fn scope(module: &[String], inline: &[(&str, usize)]) -> Vec<String> {
    let mut m = module.to_vec();
    m.extend(inline.iter().map(|&(n, _)| n.to_owned()));
    m
}

/// Absolute module path of `segs` seen from module `here`; `None` for paths that do not
/// start at the crate (`std::..`, another crate, a name in scope) or climb above it.
fn resolve(here: &[String], segs: &[&str]) -> Option<Vec<String>> {
    let (first, rest) = segs.split_first()?;
    let mut path: Vec<String> = match *first {
        "crate" | "$crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => here.get(..here.len().checked_sub(1)?)?.to_vec(),
        _ => return None,
    };
    for s in rest {
        match *s {
            "self" => {}
            "super" => {
                path.pop()?;
            }
            s => path.push(s.to_owned()),
        }
    }
    Some(path)
}

/// Parses one use tree from `i` and appends its leaf paths (prefix included) with the line
/// of their last segment. Returns the index after the tree (after the `;` at top level).
fn use_tree<'a>(
    toks: &[Token<'a>],
    mut i: usize,
    prefix: Vec<&'a str>,
    out: &mut Vec<(Vec<&'a str>, usize)>,
) -> usize {
    let top = prefix.is_empty();
    let mut path = prefix;
    let mut line = toks.get(i).map_or(0, |t| t.line);
    if toks.get(i).map(|t| t.kind) == Some(Kind::PathSep) {
        // `use ::name` is an extern crate: nothing of ours.
        path.push("::");
        i += 1;
    }
    loop {
        let Some(t) = toks.get(i) else { return i };
        match t.kind {
            Kind::Ident(s) => {
                path.push(s);
                line = t.line;
                i += 1;
                if toks.get(i).map(|t| t.kind) == Some(Kind::PathSep) {
                    i += 1;
                    continue;
                }
                if toks.get(i).map(|t| t.kind) == Some(Kind::Ident("as")) {
                    i += 2;
                }
                out.push((path, line));
                break;
            }
            Kind::Punct('*') => {
                out.push((path, line));
                i += 1;
                break;
            }
            Kind::Punct('{') => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| t.kind) {
                        None => return i,
                        Some(Kind::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Kind::Punct(',')) => i += 1,
                        Some(_) => {
                            let before = i;
                            i = use_tree(toks, i, path.clone(), out);
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
                break;
            }
            _ => break,
        }
    }
    if top {
        // Past the `;` (or whatever ended a malformed tree).
        while let Some(t) = toks.get(i) {
            i += 1;
            if t.kind == Kind::Punct(';') {
                break;
            }
        }
    }
    i
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Splits `src` into identifiers, `::` and punctuation, each with its 1-based line.
fn tokens(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips to the end of a quoted literal opened before `i`, counting lines.
    let skip_quoted = |mut i: usize, quote: u8, line: &mut usize| -> usize {
        while i < b.len() {
            match b[i] {
                b'\\' => i += 1,
                b'\n' => *line += 1,
                c if c == quote => return i + 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        nest += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        nest -= 1;
                        i += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_quoted(i + 1, b'"', &mut line),
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime / label ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i = skip_quoted(i + 1, b'\'', &mut line);
                } else {
                    let ch_len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                    if b.get(i + 1 + ch_len) == Some(&b'\'') {
                        i += 2 + ch_len;
                    } else {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                let word = &src[start..i];
                let next = b.get(i).copied();
                match (word, next) {
                    ("b" | "c", Some(b'"')) => i = skip_quoted(i + 1, b'"', &mut line),
                    ("b", Some(b'\'')) => i = skip_quoted(i + 1, b'\'', &mut line),
                    ("r" | "br" | "cr", Some(b'"' | b'#')) => {
                        let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                        if b.get(i + hashes) == Some(&b'"') {
                            // Raw string: ends at `"` followed by as many `#`.
                            let mut end = vec![b'"'];
                            end.extend(std::iter::repeat_n(b'#', hashes));
                            i += hashes + 1;
                            while i < b.len() && !b[i..].starts_with(&end) {
                                if b[i] == b'\n' {
                                    line += 1;
                                }
                                i += 1;
                            }
                            i = (i + end.len()).min(b.len());
                        } else if word == "r" && hashes == 1 {
                            // Raw identifier `r#name`.
                            let s = i + 1;
                            let mut e = s;
                            while e < b.len() && is_ident_char(b[e]) {
                                e += 1;
                            }
                            out.push(Token {
                                kind: Kind::Ident(&src[s..e]),
                                line,
                            });
                            i = e;
                        } else {
                            out.push(Token {
                                kind: Kind::Ident(word),
                                line,
                            });
                        }
                    }
                    _ => out.push(Token {
                        kind: Kind::Ident(word),
                        line,
                    }),
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push(Token {
                    kind: Kind::PathSep,
                    line,
                });
                i += 2;
            }
            b'$' if src[i + 1..].starts_with("crate") => {
                out.push(Token {
                    kind: Kind::Ident("$crate"),
                    line,
                });
                i += 6;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c => {
                out.push(Token {
                    kind: Kind::Punct(c as char),
                    line,
                });
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str, module: &[&str]) -> Vec<(String, usize)> {
        let m: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        references(src, &m)
            .into_iter()
            .map(|r| (r.path.join("::"), r.line))
            .collect()
    }

    #[test]
    fn grouped_and_nested_uses_expand() {
        let src = "use crate::{a, b::c};\nuse crate::d::{self, e::{f as g, *}};\nuse std::io;\n";
        assert_eq!(
            refs(src, &["m"]),
            [
                ("a".into(), 1),
                ("b::c".into(), 1),
                ("d".into(), 2),
                ("d::e::f".into(), 2),
                ("d::e".into(), 2),
            ]
        );
    }

    #[test]
    fn multi_line_group_reports_each_leaf_line() {
        let src = "pub(crate) use crate::{\n    a::X,\n    b::Y,\n};\n";
        assert_eq!(refs(src, &["m"]), [("a::X".into(), 2), ("b::Y".into(), 3)]);
    }

    #[test]
    fn paths_in_code_resolve() {
        let src =
            "fn f() {\n    let x = crate::a::f();\n    super::b::g();\n    self::c::h();\n}\n";
        assert_eq!(
            refs(src, &["m", "n"]),
            [
                ("a::f".into(), 2),
                ("m::b::g".into(), 3),
                ("m::n::c::h".into(), 4)
            ]
        );
    }

    #[test]
    fn super_climbs_out_of_inline_modules() {
        let src = "mod tests {\n    use super::*;\n    use super::super::x::Y;\n}\nuse super::z;\n";
        assert_eq!(
            refs(src, &["m", "n"]),
            [
                ("m::n".into(), 2),
                ("m::x::Y".into(), 3),
                ("m::z".into(), 5)
            ]
        );
    }

    #[test]
    fn comments_and_literals_are_not_code() {
        let src = r###"
// use crate::a;
/* crate::b::c /* nested crate::d:: */ crate::e:: */
/// doc: crate::f::g
fn f<'a>(x: &'a str) -> char {
    let s = "crate::h::i \" crate::j::k";
    let r = r#"crate::l::m "# ;
    let b = b"crate::n::o";
    let c = '"';
    let d = b'\'';
    crate::p::q();
    'x'
}
"###;
        assert_eq!(refs(src, &["m"]), [("p::q".into(), 11)]);
    }

    #[test]
    fn other_crates_and_trailing_paths_are_ignored() {
        let src = "use std::sync::Arc;\nuse ::serde;\nfn f() { brummer_core::x::crate_y(); a::self_z(); }\n";
        assert!(refs(src, &["m"]).is_empty());
    }
}
