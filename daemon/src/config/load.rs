//! Reading the files: the main file, then every `*.toml` of the drop-in directory in lexical
//! order; parsing each with toml's spanned parser; checking the top level and `[daemon]`;
//! and catching a process name defined twice.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrors};
use super::model::{Config, MAX_RING_BYTES, MIN_RING_BYTES, SourceLoc};
use super::process::process;
use super::values::{Ctx, LineIndex, join, line_of};
use super::{LoadOptions, dropin_dir};

const MAIN_KEYS: &[&str] = &["daemon", "process"];
const DROPIN_KEYS: &[&str] = &["process"];
const DAEMON_KEYS: &[&str] = &["log_dir", "ring_bytes", "metrics_listen"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    DropIn,
}

pub(crate) fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let mut loader = Loader {
        opts,
        config: Config::default(),
        errors: Vec::new(),
        seen: BTreeMap::new(),
        broken: Vec::new(),
    };

    match std::fs::read(&opts.main) {
        Ok(bytes) => loader.file(&opts.main, bytes, Kind::Main),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !opts.main_required => {
            loader.config.inputs.absent(&opts.main)
        }
        Err(e) => loader.errors.push(ConfigError::new(
            &opts.main,
            None,
            None,
            format!("cannot read config file: {e}{}", read_hint(&e)),
        )),
    }

    let dir = dropin_dir(opts);
    for path in loader.dropins(&dir) {
        match std::fs::read(&path) {
            Ok(bytes) => loader.file(&path, bytes, Kind::DropIn),
            Err(e) => loader.errors.push(ConfigError::new(
                &path,
                None,
                None,
                format!("cannot read drop-in file: {e}{}", read_hint(&e)),
            )),
        }
    }

    let known = loader.seen.keys().map(String::as_str).collect();
    super::graph::check(
        &loader.config.processes,
        &loader.broken,
        &known,
        &mut loader.errors,
    );

    if loader.errors.is_empty() {
        Ok(loader.config)
    } else {
        Err(ConfigErrors(loader.errors))
    }
}

/// The drop-in files of `dir`, sorted by name, and what could not be listed. A missing
/// directory is no drop-ins.
pub(super) fn list_dropins(dir: &Path) -> (Vec<PathBuf>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), errors),
        Err(e) => {
            errors.push(ConfigError::new(
                dir,
                None,
                None,
                format!("cannot read drop-in directory: {e}"),
            ));
            return (Vec::new(), errors);
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(ConfigError::new(
                    dir,
                    None,
                    None,
                    format!("cannot list drop-in directory: {e}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        // Follows symlinks: a link to a file is a drop-in, a directory is skipped, a
        // dangling link fails at read with its own error.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    (files, errors)
}

fn read_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => " (create it, or point brummerd at another file with --config)",
        io::ErrorKind::PermissionDenied => " (check the file's owner and mode)",
        _ => "",
    }
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    config: Config,
    errors: Vec<ConfigError>,
    /// Every process name met so far, valid or not, with where: for "defined twice".
    seen: BTreeMap<String, SourceLoc>,
    /// Definitions with errors, as far as they could be read: their dependencies are
    /// checked too.
    broken: Vec<super::model::ProcessDef>,
}

impl Loader<'_> {
    /// The drop-in files, sorted by name ([`list_dropins`]), recorded as an input.
    fn dropins(&mut self, dir: &Path) -> Vec<PathBuf> {
        let (files, errors) = list_dropins(dir);
        self.errors.extend(errors);
        self.config.inputs.listed(&files);
        files
    }

    /// Checks one file; its errors end up in line order (toml's tables iterate by key name),
    /// followed by errors inside the env files it names.
    fn file(&mut self, path: &Path, bytes: Vec<u8>, kind: Kind) {
        let first_error = self.errors.len();
        self.check_file(path, bytes, kind);
        self.errors[first_error..].sort_by_key(|e| (e.file != path, e.line));
    }

    fn check_file(&mut self, path: &Path, bytes: Vec<u8>, kind: Kind) {
        self.config.files.push(path.to_path_buf());
        self.config.inputs.read(path, &bytes);
        let src = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let line = line_of(&String::from_utf8_lossy(&e.as_bytes()[..valid]), valid);
                self.errors.push(ConfigError::new(
                    path,
                    Some(line),
                    None,
                    "file is not valid UTF-8: save it as UTF-8",
                ));
                return;
            }
        };
        let (doc, parse_errors) = DeTable::parse_recoverable(&src);
        if !parse_errors.is_empty() {
            // The recovered tree may be half a document: checking it would add noise.
            for e in parse_errors {
                self.errors
                    .push(syntax_error(path, &src, doc.get_ref(), &e));
            }
            return;
        }
        let mut ctx = Ctx {
            file: path,
            lines: LineIndex::new(&src),
            errors: &mut self.errors,
            inputs: &mut self.config.inputs,
        };
        let doc = doc.get_ref();
        match kind {
            Kind::Main => ctx.unknown_keys(doc, "", MAIN_KEYS),
            Kind::DropIn => {
                for (k, _) in doc.iter() {
                    match k.get_ref().as_ref() {
                        "process" => {}
                        "daemon" => {
                            let main = self.opts.main.display();
                            ctx.err(
                                &k.span(),
                                "daemon",
                                format!("[daemon] is only allowed in the main config file: move it to {main}"),
                            );
                        }
                        other => ctx.unknown_key(&k.span(), &join("", other), other, DROPIN_KEYS),
                    }
                }
            }
        }

        if kind == Kind::Main
            && let Some(v) = doc.get("daemon")
            && let Some(table) = ctx.table(v, "daemon")
        {
            ctx.unknown_keys(table, "daemon", DAEMON_KEYS);
            for (k, v) in table.iter() {
                let key = join("daemon", k.get_ref());
                match k.get_ref().as_ref() {
                    "log_dir" => self.config.daemon.log_dir = ctx.abs_path(v, &key),
                    "ring_bytes" => {
                        self.config.daemon.ring_bytes = ctx
                            .int_in(v, &key, MIN_RING_BYTES as i64, MAX_RING_BYTES as i64)
                            .and_then(|n| usize::try_from(n).ok())
                    }
                    "metrics_listen" => {
                        self.config.daemon.metrics_listen = ctx.socket_addr(v, &key)
                    }
                    _ => {}
                }
            }
        }

        let Some(v) = doc.get("process") else {
            return;
        };
        let Some(procs) = ctx.table(v, "process") else {
            return;
        };
        for (k, v) in procs.iter() {
            let name: &str = k.get_ref();
            let path_key = join("process", name);
            let here = SourceLoc {
                file: path.to_path_buf(),
                line: ctx.line(&k.span()),
            };
            if let Some(first) = self.seen.get(name) {
                ctx.err(
                    &k.span(),
                    &path_key,
                    format!("defined twice: first at {first}; remove one or rename it"),
                );
                continue;
            }
            self.seen.insert(name.to_owned(), here);
            let name_ok = match brummer_proto::validate_name(name) {
                Ok(()) => true,
                Err(e) => {
                    ctx.err(&k.span(), &path_key, format!("{e}; rename it"));
                    false
                }
            };
            let Some(table) = ctx.table(v, &path_key) else {
                continue;
            };
            match process(
                &mut ctx,
                name,
                &k.span(),
                table,
                self.opts.as_root,
                &self.opts.cgroup,
            ) {
                (def, true) if name_ok => {
                    self.config.processes.insert(name.to_owned(), Arc::new(def));
                }
                (def, _) => self.broken.push(def),
            }
        }
    }
}

/// A TOML syntax error as a `ConfigError`. A duplicate key also names where it was first
/// set, found by parsing the text before the offending line (toml's recovered tree keeps
/// one position per key, not both).
fn syntax_error(path: &Path, src: &str, doc: &DeTable<'_>, e: &toml::de::Error) -> ConfigError {
    let Some(span) = e.span() else {
        return ConfigError::new(path, None, None, format!("invalid TOML: {}", e.message()));
    };
    let line = line_of(src, span.start);
    // toml's spans are on char boundaries; `get` keeps a surprise from becoming a panic.
    let upto = src.get(..span.start).unwrap_or(src);
    let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
    let column = upto.get(line_start..).unwrap_or("").chars().count() + 1;
    if e.message() == "duplicate key" {
        let (before, _) = DeTable::parse_recoverable(upto.get(..line_start).unwrap_or(""));
        // A repeated [table] header moves the key's span to the repeat, so the key is found
        // by its span; a repeated `key = value` keeps the first span, so it is found by
        // name as the last key of that name before this line.
        let first = match find_key(doc, span.start, &mut Vec::new()) {
            Some(key_path) => lookup(before.get_ref(), &key_path).map(|r| (key_path, r)),
            None => {
                let name = src
                    .get(span.clone())
                    .unwrap_or("")
                    .trim_matches(['"', '\'']);
                let mut best = None;
                last_named(before.get_ref(), name, &mut Vec::new(), &mut best);
                best
            }
        };
        if let Some((key_path, first_span)) = first {
            let first = line_of(src, first_span.start);
            let key = key_path.iter().fold(String::new(), |acc, k| join(&acc, k));
            let message = if key_path.len() == 2 && key_path[0] == "process" {
                format!(
                    "defined twice in this file: first at line {first}; merge the two blocks or rename one"
                )
            } else {
                format!("duplicate key: first set at line {first}; keep only one")
            };
            return ConfigError::new(path, Some(line), Some(key), message);
        }
        return ConfigError::new(
            path,
            Some(line),
            None,
            format!("duplicate key (column {column}): keep only one"),
        );
    }
    ConfigError::new(
        path,
        Some(line),
        None,
        format!("invalid TOML (column {column}): {}", e.message()),
    )
}

/// The key path of the key whose span starts at `start`.
fn find_key(table: &DeTable<'_>, start: usize, path: &mut Vec<String>) -> Option<Vec<String>> {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if k.span().start == start {
            return Some(path.clone());
        }
        if let DeValue::Table(t) = v.get_ref()
            && let Some(found) = find_key(t, start, path)
        {
            return Some(found);
        }
        path.pop();
    }
    None
}

/// The key named `name` that starts last in `table`, with its path.
fn last_named(
    table: &DeTable<'_>,
    name: &str,
    path: &mut Vec<String>,
    best: &mut Option<(Vec<String>, std::ops::Range<usize>)>,
) {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if k.get_ref() == name && best.as_ref().is_none_or(|(_, r)| r.start < k.span().start) {
            *best = Some((path.clone(), k.span()));
        }
        if let DeValue::Table(t) = v.get_ref() {
            last_named(t, name, path, best);
        }
        path.pop();
    }
}

fn lookup(table: &DeTable<'_>, path: &[String]) -> Option<std::ops::Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (k, v) = table.get_key_value(first.as_str())?;
    if rest.is_empty() {
        return Some(k.span());
    }
    match v.get_ref() {
        DeValue::Table(t) => lookup(t, rest),
        _ => None,
    }
}
