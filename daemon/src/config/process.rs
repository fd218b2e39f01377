//! One `[process.NAME]` table to a `ProcessDef`: every key checked, every problem reported,
//! `env_file` read and `user`/`group` resolved here, at load time.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::env_file;
use super::error::ConfigError;
use super::limits::{self, CgroupSupport};
use super::model::{
    Backoff, CommandSpec, DEFAULT_STOP_SIGNAL, DEFAULT_STOP_TIMEOUT, GroupSpec, LogSettings,
    MAX_LOG_MAX_BYTES, MAX_LOG_MAX_FILES, MIN_LOG_MAX_BYTES, ProcessDef, RestartPolicy, SourceLoc,
    StartLimit, UserSpec,
};
use super::ready;
use super::values::{Ctx, Value, join};

const PROCESS_KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "env_file",
    "user",
    "group",
    "autostart",
    "restart",
    "stop_signal",
    "stop_timeout",
    "backoff",
    "start_limit",
    "logs",
    "ready",
    "ready_timeout",
    "watchdog",
    "health",
    "requires",
    "wants",
    "after",
];
const LOGS_KEYS: &[&str] = &["max_bytes", "max_files", "error_patterns", "scan"];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "reset_after"];
const START_LIMIT_KEYS: &[&str] = &["burst", "interval"];

/// Checks one process table: the definition as far as it could be read, and whether
/// nothing was wrong (the errors are in `ctx`; the dependencies of a broken definition are
/// still checked once every file is read).
pub(crate) fn process(
    ctx: &mut Ctx<'_>,
    name: &str,
    header: &Range<usize>,
    table: &DeTable<'_>,
    as_root: bool,
    cgroup: &CgroupSupport,
) -> (ProcessDef, bool) {
    let before = ctx.errors.len();
    let path = join("process", name);
    let source = SourceLoc {
        file: ctx.file.to_path_buf(),
        line: ctx.line(header),
    };
    let known: Vec<&str> = PROCESS_KEYS.iter().chain(limits::KEYS).copied().collect();
    ctx.unknown_keys(table, &path, &known);

    let mut def = ProcessDef::with_defaults(name, CommandSpec::Shell(String::new()));
    def.source = source.clone();
    let mut command = None;
    let mut env_table = BTreeMap::new();
    let mut env_file_entries = Vec::new();
    let mut watchdog_at = None;
    let mut ready_at = None;

    for (k, v) in table.iter() {
        let key = join(&path, k.get_ref());
        match k.get_ref().as_ref() {
            "command" => command = command_spec(ctx, v, &key),
            "cwd" => def.cwd = ctx.abs_path(v, &key),
            "env" => env_table = env(ctx, v, &key),
            "env_file" => {
                if let Some((file, entries)) = read_env_file(ctx, v, &key) {
                    def.env_file = Some(file);
                    env_file_entries = entries;
                }
            }
            "user" => def.user = user(ctx, v, &key, as_root),
            "group" => def.group = group(ctx, v, &key, as_root),
            "autostart" => def.autostart = ctx.boolean(v, &key).unwrap_or(true),
            "restart" => def.restart = restart(ctx, v, &key).unwrap_or_default(),
            "stop_signal" => def.stop_signal = ctx.signal(v, &key).unwrap_or(DEFAULT_STOP_SIGNAL),
            "stop_timeout" => {
                def.stop_timeout = ctx.duration(v, &key).unwrap_or(DEFAULT_STOP_TIMEOUT)
            }
            "backoff" => def.backoff = backoff(ctx, v, &key),
            "start_limit" => def.start_limit = start_limit(ctx, v, &key),
            "logs" => def.logs = logs(ctx, v, &key),
            "ready" => {
                ready_at = Some(v.span());
                def.ready = ready::ready(ctx, v, &key).unwrap_or_default();
            }
            "ready_timeout" => {
                def.ready_timeout = ready::positive(ctx, v, &key).unwrap_or(def.ready_timeout)
            }
            "watchdog" => {
                watchdog_at = Some(v.span());
                def.watchdog = ready::positive(ctx, v, &key);
            }
            "health" => def.health = ready::health(ctx, v, &key),
            "requires" => (def.deps.requires, def.deps_at.requires) = dep_names(ctx, name, v, &key),
            "wants" => (def.deps.wants, def.deps_at.wants) = dep_names(ctx, name, v, &key),
            "after" => (def.deps.after, def.deps_at.after) = dep_names(ctx, name, v, &key),
            other if limits::KEYS.contains(&other) => limits::read(
                ctx,
                cgroup,
                other,
                v,
                &key,
                &mut def.cgroup_limits,
                &mut def.rlimits,
            ),
            _ => {} // reported by unknown_keys
        }
    }
    ready::check(
        ctx,
        &path,
        &def.ready,
        def.ready_timeout,
        ready_at.as_ref(),
        watchdog_at.as_ref(),
    );

    match command {
        Some(c) => def.command = c,
        None if !table.contains_key("command") => ctx.err(
            header,
            &path,
            "missing command: add command = [\"program\", \"arg\"] or command = \"shell line\"",
        ),
        None => {} // present but bad: already reported
    }
    def.env = env_file_entries.into_iter().collect();
    def.env.extend(env_table);

    let valid = ctx.errors.len() == before;
    (def, valid)
}

fn command_spec(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<CommandSpec> {
    const HINT: &str = "write command = [\"program\", \"arg\"] or command = \"shell line\"";
    match v.get_ref() {
        DeValue::String(s) => {
            if s.trim().is_empty() {
                ctx.err(&v.span(), key, format!("command is empty: {HINT}"));
                None
            } else if s.contains('\0') {
                ctx.err(&v.span(), key, "command contains a NUL byte");
                None
            } else {
                Some(CommandSpec::Shell(s.to_string()))
            }
        }
        DeValue::Array(items) => {
            if items.is_empty() {
                ctx.err(&v.span(), key, format!("argv is empty: {HINT}"));
                return None;
            }
            let mut argv = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let item_key = format!("{key}[{i}]");
                match ctx.string(item, &item_key) {
                    Some(s) if s.contains('\0') => {
                        ctx.err(&item.span(), &item_key, "argument contains a NUL byte");
                        ok = false;
                    }
                    Some(s) => argv.push(s.to_owned()),
                    None => ok = false,
                }
            }
            if ok && argv[0].is_empty() {
                ctx.err(
                    &items[0].span(),
                    &format!("{key}[0]"),
                    "program name is empty: put the program (a path or a name on $PATH) first",
                );
                return None;
            }
            ok.then_some(CommandSpec::Argv(argv))
        }
        other => {
            let found = other.type_str();
            ctx.err(
                &v.span(),
                key,
                format!("expected an array of strings or a string, found {found}: {HINT}"),
            );
            None
        }
    }
}

/// A `requires`/`wants`/`after` list: program names, each once, not `this` itself. Whether
/// each names a program is checked once every file is read (`config::graph`).
fn dep_names(ctx: &mut Ctx<'_>, this: &str, v: &Value<'_>, key: &str) -> (Vec<String>, Vec<usize>) {
    let (mut names, mut lines) = (Vec::new(), Vec::new());
    let DeValue::Array(items) = v.get_ref() else {
        let found = v.get_ref().type_str();
        ctx.err(
            &v.span(),
            key,
            format!("expected an array of program names, found {found}: write {key} = [\"db\"]"),
        );
        return (names, lines);
    };
    for (i, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let Some(n) = ctx.string(item, &item_key) else {
            continue;
        };
        if n == this {
            ctx.err(
                &item.span(),
                &item_key,
                format!("{this} cannot depend on itself: remove {n:?} from the list"),
            );
        } else if names.iter().any(|m| m == n) {
            ctx.err(
                &item.span(),
                &item_key,
                format!("{n:?} is listed twice: keep one"),
            );
        } else {
            names.push(n.to_owned());
            lines.push(ctx.line(&item.span()));
        }
    }
    (names, lines)
}

fn restart(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<RestartPolicy> {
    let s = ctx.string(v, key)?;
    let policy = RestartPolicy::parse(s);
    if policy.is_none() {
        ctx.err(
            &v.span(),
            key,
            format!("expected never, on-failure or always, found {s:?}"),
        );
    }
    policy
}

fn env(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(table) = ctx.table(v, key) else {
        return out;
    };
    for (k, val) in table.iter() {
        let name: &str = k.get_ref();
        let var_key = join(key, name);
        if name.is_empty() || name.contains(['=', '\0']) {
            ctx.err(
                &k.span(),
                &var_key,
                "variable names must be non-empty and contain no '=' or NUL",
            );
            continue;
        }
        match val.get_ref() {
            DeValue::String(s) if s.contains('\0') => {
                ctx.err(&val.span(), &var_key, "value contains a NUL byte")
            }
            DeValue::String(s) => {
                out.insert(name.to_owned(), s.to_string());
            }
            other => {
                let found = other.type_str();
                ctx.err(
                    &val.span(),
                    &var_key,
                    format!("expected a string, found {found}: quote the value ({name} = \"...\")"),
                );
            }
        }
    }
    out
}

/// Reads the env file now; its bad lines become errors in the env file itself.
fn read_env_file(
    ctx: &mut Ctx<'_>,
    v: &Value<'_>,
    key: &str,
) -> Option<(PathBuf, Vec<(String, String)>)> {
    let s = ctx.string(v, key)?;
    let set_at = SourceLoc {
        file: ctx.file.to_path_buf(),
        line: ctx.line(&v.span()),
    };
    if s.is_empty() {
        ctx.err(
            &v.span(),
            key,
            "path is empty: name a file, or remove env_file",
        );
        return None;
    }
    let base = ctx.file.parent().unwrap_or(Path::new(""));
    let file = base.join(s);
    let contents = match std::fs::read(&file) {
        Ok(bytes) => {
            ctx.inputs.read(&file, &bytes);
            bytes
        }
        Err(e) => {
            ctx.err(
                &v.span(),
                key,
                format!(
                    "cannot read env file {}: {e} (create it, or fix the path; relative paths are relative to {})",
                    file.display(),
                    if base.as_os_str().is_empty() { Path::new(".") } else { base }.display()
                ),
            );
            return None;
        }
    };
    let text = match String::from_utf8(contents) {
        Ok(t) => t,
        Err(e) => {
            let line = super::values::line_of(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            );
            ctx.errors.push(ConfigError::new(
                &file,
                Some(line),
                Some(key.to_owned()),
                format!("env file is not valid UTF-8: save it as UTF-8 (env_file set at {set_at})"),
            ));
            return None;
        }
    };
    let (entries, bad) = env_file::parse(&text);
    if !bad.is_empty() {
        for (line, msg) in bad {
            ctx.errors.push(ConfigError::new(
                &file,
                Some(line),
                Some(key.to_owned()),
                format!("{msg} (env_file set at {set_at})"),
            ));
        }
        return None;
    }
    Some((file, entries))
}

fn needs_root(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str, as_root: bool) -> bool {
    if !as_root {
        ctx.err(
            &v.span(),
            key,
            "needs brummerd to run as root: remove it, and the process runs as brummerd's own user",
        );
    }
    as_root
}

fn user(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str, as_root: bool) -> Option<UserSpec> {
    let name = ctx.string(v, key)?;
    if !needs_root(ctx, v, key, as_root) {
        return None;
    }
    ctx.inputs.looked_up_users();
    let found = match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(Some(u)),
        Ok(None) => match name.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(uid.into()),
            Err(_) => Ok(None),
        },
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(u)) => Some(UserSpec {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => {
            ctx.err(
                &v.span(),
                key,
                format!(
                    "unknown user {name:?}: create it (useradd --system {name}) or fix the name"
                ),
            );
            None
        }
        Err(e) => {
            ctx.err(&v.span(), key, format!("cannot look up user {name:?}: {e}"));
            None
        }
    }
}

fn group(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str, as_root: bool) -> Option<GroupSpec> {
    let name = ctx.string(v, key)?;
    if !needs_root(ctx, v, key, as_root) {
        return None;
    }
    ctx.inputs.looked_up_users();
    let found = match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Some(g)),
        Ok(None) => match name.parse::<u32>() {
            Ok(gid) => nix::unistd::Group::from_gid(gid.into()),
            Err(_) => Ok(None),
        },
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(g)) => Some(GroupSpec {
            name: g.name,
            gid: g.gid.as_raw(),
        }),
        Ok(None) => {
            ctx.err(
                &v.span(),
                key,
                format!(
                    "unknown group {name:?}: create it (groupadd --system {name}) or fix the name"
                ),
            );
            None
        }
        Err(e) => {
            ctx.err(
                &v.span(),
                key,
                format!("cannot look up group {name:?}: {e}"),
            );
            None
        }
    }
}

fn backoff(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Backoff {
    let mut out = Backoff::default();
    let Some(table) = ctx.table(v, key) else {
        return out;
    };
    ctx.unknown_keys(table, key, BACKOFF_KEYS);
    let mut max_span = None;
    for (k, val) in table.iter() {
        let sub = join(key, k.get_ref());
        let slot: &mut Duration = match k.get_ref().as_ref() {
            "initial" => &mut out.initial,
            "max" => {
                max_span = Some(val.span());
                &mut out.max
            }
            "reset_after" => &mut out.reset_after,
            _ => continue,
        };
        if let Some(d) = ctx.duration(val, &sub) {
            *slot = d;
        }
    }
    if out.max < out.initial {
        let span = max_span.unwrap_or_else(|| v.span());
        ctx.err(
            &span,
            &join(key, "max"),
            format!(
                "max ({}) is shorter than initial ({}): raise max or lower initial",
                humantime::format_duration(out.max),
                humantime::format_duration(out.initial)
            ),
        );
    }
    out
}

fn start_limit(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> StartLimit {
    let mut out = StartLimit::default();
    let Some(table) = ctx.table(v, key) else {
        return out;
    };
    ctx.unknown_keys(table, key, START_LIMIT_KEYS);
    for (k, val) in table.iter() {
        let sub = join(key, k.get_ref());
        match k.get_ref().as_ref() {
            "burst" => {
                if let Some(n) = ctx.int_in(val, &sub, 1, i64::from(u32::MAX)) {
                    out.burst = n as u32;
                }
            }
            "interval" => match ctx.duration(val, &sub) {
                Some(d) if d.is_zero() => ctx.err(
                    &val.span(),
                    &sub,
                    "interval must be longer than 0 (e.g. \"10s\")",
                ),
                Some(d) => out.interval = d,
                None => {}
            },
            _ => {}
        }
    }
    out
}

fn logs(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> LogSettings {
    let mut out = LogSettings::default();
    let Some(table) = ctx.table(v, key) else {
        return out;
    };
    ctx.unknown_keys(table, key, LOGS_KEYS);
    for (k, val) in table.iter() {
        let sub = join(key, k.get_ref());
        match k.get_ref().as_ref() {
            "max_bytes" => {
                if let Some(n) = ctx.size(val, &sub, MIN_LOG_MAX_BYTES, MAX_LOG_MAX_BYTES) {
                    out.max_bytes = n;
                }
            }
            "max_files" => {
                if let Some(n) = ctx.int_in(val, &sub, 1, MAX_LOG_MAX_FILES as i64) {
                    out.max_files = n as u32;
                }
            }
            "scan" => out.scan = ctx.boolean(val, &sub).unwrap_or(true),
            "error_patterns" => {
                let DeValue::Array(items) = val.get_ref() else {
                    let found = val.get_ref().type_str();
                    ctx.err(
                        &val.span(),
                        &sub,
                        format!("expected an array of regular expressions, found {found}"),
                    );
                    continue;
                };
                let mut pats = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_key = format!("{sub}[{i}]");
                    let Some(p) = ctx.string(item, &item_key) else {
                        continue;
                    };
                    match regex::Regex::new(p) {
                        Ok(_) => pats.push(p.to_owned()),
                        Err(e) => ctx.err(
                            &item.span(),
                            &item_key,
                            format!(
                                "not a valid regular expression: {}",
                                super::values::regex_reason(&e)
                            ),
                        ),
                    }
                }
                out.error_patterns = pats;
            }
            _ => {}
        }
    }
    out
}
