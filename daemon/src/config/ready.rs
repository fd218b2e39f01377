//! Readiness and health settings of a program (`ready`, `ready_timeout`, `watchdog`,
//! `health`): their model and their checks, every problem reported with file:line:key like
//! the rest of the configuration. What they mean at run time is `process::supervisor::ready`.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::values::{Ctx, Value, join};

/// Default `ready_timeout` (systemd's TimeoutStartSec).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Default `interval` of a readiness probe.
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_secs(1);
/// Default `interval` of a `log` readiness probe: reading the ring from a cursor is cheap.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_millis(100);
/// Default `interval` of a health probe.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Default `timeout` of one probe.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `health.failures`.
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;

/// How a started program becomes ready (`running`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ready {
    /// At once: the process exists.
    #[default]
    Started,
    /// When it sends READY=1 to its NOTIFY_SOCKET.
    Notify,
    /// When a probe succeeds.
    Probe(Probe),
}

impl Ready {
    /// The spelling `status` and the docs use: `started`, `notify`, or the probe's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Ready::Started => "started",
            Ready::Notify => "notify",
            Ready::Probe(p) => p.check.kind(),
        }
    }
}

/// One probe: what it checks and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub check: Check,
    /// Between the end of one try and the start of the next.
    pub interval: Duration,
    /// How long one try may take; a try still running then failed (an exec probe's
    /// process group is killed).
    pub timeout: Duration,
    /// From the spawn: readiness probes wait this long before the first try; health
    /// failures inside it do not count.
    pub start_period: Duration,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Runs argv; exit 0 is success.
    Exec(Vec<String>),
    /// An HTTP/1.1 GET; a 2xx answer is success.
    Http(HttpUrl),
    /// A TCP connect to `host:port`.
    Tcp(String),
    /// A line of the program's own output (this run's) matches.
    Log(LogPattern),
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Exec(_) => "exec",
            Check::Http(_) => "http",
            Check::Tcp(_) => "tcp",
            Check::Log(_) => "log",
        }
    }
}

/// An `http://` URL, split for the request: `host:port` to connect to and the request
/// target. https is not offered (a health endpoint is local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written, for messages.
    pub url: String,
    /// `host:port`, brackets kept for IPv6: what is connected to and sent as `Host`.
    pub authority: String,
    /// Path and query, at least `/`.
    pub target: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{scheme}:// is not supported: only http:// (probe a local port)"
                ));
            }
            None => return Err("expected a URL like \"http://127.0.0.1:8080/health\"".into()),
        };
        if s.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err("the URL contains spaces or control characters".into());
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let target = target.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err("user:password@ is not supported in probe URLs".into());
        }
        let (host, port) = split_host_port(authority)
            .map_err(|e| format!("{e} in {authority:?}"))
            .map(|(h, p)| (h, p.unwrap_or(80)))?;
        Ok(HttpUrl {
            url: s.to_owned(),
            authority: format!("{host}:{port}"),
            target,
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` -> (host as written, port).
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed [ of an IPv6 address")?;
        let host = &s[..end + 2];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok((host, port))
}

/// A checked regular expression; equal when the pattern text is.
#[derive(Debug, Clone)]
pub struct LogPattern(pub regex::Regex);

impl PartialEq for LogPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
impl Eq for LogPattern {}

/// `health`: a probe run while the program is `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub probe: Probe,
    /// Consecutive failures that restart the program.
    pub failures: u32,
}

const CHECK_KEYS: &[&str] = &["exec", "http", "tcp", "log"];
const PROBE_KEYS: &[&str] = &[
    "exec",
    "http",
    "tcp",
    "log",
    "interval",
    "timeout",
    "start_period",
];
const HEALTH_KEYS: &[&str] = &[
    "exec",
    "http",
    "tcp",
    "interval",
    "timeout",
    "start_period",
    "failures",
];

/// `ready = "started" | "notify" | { probe }`.
pub(crate) fn ready(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<Ready> {
    match v.get_ref() {
        DeValue::String(s) => match s.as_ref() {
            "started" => Some(Ready::Started),
            "notify" => Some(Ready::Notify),
            other => {
                ctx.err(
                    &v.span(),
                    key,
                    format!(
                        "expected \"started\", \"notify\" or a probe table like {{ http = \"http://127.0.0.1:8080/health\" }}, found {other:?}"
                    ),
                );
                None
            }
        },
        DeValue::Table(t) => {
            ctx.unknown_keys(t, key, PROBE_KEYS);
            probe(ctx, v, t, key, DEFAULT_READY_INTERVAL).map(Ready::Probe)
        }
        other => {
            let found = other.type_str();
            ctx.err(
                &v.span(),
                key,
                format!("expected \"started\", \"notify\" or a probe table, found {found}"),
            );
            None
        }
    }
}

/// `health = { probe, failures }`.
pub(crate) fn health(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<Health> {
    let t = ctx.table(v, key)?;
    ctx.unknown_keys(t, key, HEALTH_KEYS);
    let mut failures = DEFAULT_HEALTH_FAILURES;
    if let Some(f) = t.get("failures") {
        failures = ctx.int_in(f, &join(key, "failures"), 1, 1000)? as u32;
    }
    if t.contains_key("log") {
        // Reported as an unknown key above; say why here too.
        return None;
    }
    let probe = probe(ctx, v, t, key, DEFAULT_HEALTH_INTERVAL)?;
    Some(Health { probe, failures })
}

/// A positive duration (`interval`, `ready_timeout`, `watchdog`).
pub(crate) fn positive(ctx: &mut Ctx<'_>, v: &Value<'_>, key: &str) -> Option<Duration> {
    let d = ctx.duration(v, key)?;
    if d.is_zero() {
        ctx.err(&v.span(), key, "must be longer than 0 (e.g. \"10s\")");
        return None;
    }
    Some(d)
}

/// Cross-key rules, once every key of the program was read. `ready_at` and `watchdog` are
/// where those keys are, when present.
pub(crate) fn check(
    ctx: &mut Ctx<'_>,
    path: &str,
    ready: &Ready,
    ready_timeout: Duration,
    ready_at: Option<&Range<usize>>,
    watchdog: Option<&Range<usize>>,
) {
    if let (Ready::Probe(p), Some(span)) = (ready, ready_at)
        && p.start_period >= ready_timeout
    {
        ctx.err(
            span,
            &join(&join(path, "ready"), "start_period"),
            format!(
                "{} is not shorter than ready_timeout ({}): the program could never be ready; shorten start_period or raise ready_timeout",
                humantime::format_duration(p.start_period),
                humantime::format_duration(ready_timeout)
            ),
        );
    }
    if let Some(span) = watchdog
        && *ready != Ready::Notify
    {
        ctx.err(
            span,
            &join(path, "watchdog"),
            "needs ready = \"notify\": the program pings the watchdog with WATCHDOG=1 over its NOTIFY_SOCKET",
        );
    }
}

fn probe(
    ctx: &mut Ctx<'_>,
    v: &Value<'_>,
    t: &DeTable<'_>,
    key: &str,
    default_interval: Duration,
) -> Option<Probe> {
    let before = ctx.errors.len();
    let kinds: Vec<&str> = CHECK_KEYS
        .iter()
        .copied()
        .filter(|k| t.contains_key(*k))
        .collect();
    let mut check = None;
    match kinds.as_slice() {
        [] => ctx.err(
            &v.span(),
            key,
            "no probe: add one of exec = [\"cmd\", \"arg\"], http = \"http://...\", tcp = \"host:port\" or log = \"regex\"",
        ),
        [kind] => {
            let val = t.get(*kind)?;
            check = self::check_of(ctx, kind, val, &join(key, kind));
        }
        many => ctx.err(
            &v.span(),
            key,
            format!(
                "one probe per table, found {}: keep one of them",
                many.join(" and ")
            ),
        ),
    }
    let default_interval = match &check {
        Some(Check::Log(_)) if default_interval == DEFAULT_READY_INTERVAL => DEFAULT_LOG_INTERVAL,
        _ => default_interval,
    };
    let mut p = Probe {
        check: check.unwrap_or(Check::Tcp(String::new())),
        interval: default_interval,
        timeout: DEFAULT_PROBE_TIMEOUT,
        start_period: Duration::ZERO,
    };
    for (k, val) in t.iter() {
        let sub = join(key, k.get_ref());
        match k.get_ref().as_ref() {
            "interval" => p.interval = positive(ctx, val, &sub).unwrap_or(p.interval),
            "timeout" => p.timeout = positive(ctx, val, &sub).unwrap_or(p.timeout),
            "start_period" => p.start_period = ctx.duration(val, &sub).unwrap_or_default(),
            _ => {}
        }
    }
    (ctx.errors.len() == before).then_some(p)
}

fn check_of(ctx: &mut Ctx<'_>, kind: &str, v: &Value<'_>, key: &str) -> Option<Check> {
    match kind {
        "exec" => {
            let DeValue::Array(items) = v.get_ref() else {
                let found = v.get_ref().type_str();
                ctx.err(
                    &v.span(),
                    key,
                    format!("expected an array like [\"pg_isready\", \"-q\"], found {found}"),
                );
                return None;
            };
            let mut argv = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let s = ctx.string(item, &format!("{key}[{i}]"))?;
                if s.contains('\0') {
                    ctx.err(&item.span(), &format!("{key}[{i}]"), "contains a NUL byte");
                    return None;
                }
                argv.push(s.to_owned());
            }
            if argv.first().is_none_or(|a| a.is_empty()) {
                ctx.err(
                    &v.span(),
                    key,
                    "empty command: put the program (a path or a name on $PATH) first",
                );
                return None;
            }
            Some(Check::Exec(argv))
        }
        "http" => {
            let s = ctx.string(v, key)?;
            match HttpUrl::parse(s) {
                Ok(u) => Some(Check::Http(u)),
                Err(e) => {
                    ctx.err(&v.span(), key, format!("bad URL {s:?}: {e}"));
                    None
                }
            }
        }
        "tcp" => {
            let s = ctx.string(v, key)?;
            match split_host_port(s) {
                Ok((_, Some(_))) => Some(Check::Tcp(s.to_owned())),
                Ok((_, None)) => {
                    ctx.err(
                        &v.span(),
                        key,
                        format!("{s:?} has no port: write host:port, e.g. \"127.0.0.1:5432\""),
                    );
                    None
                }
                Err(e) => {
                    ctx.err(
                        &v.span(),
                        key,
                        format!(
                            "bad address {s:?}: {e} (write host:port, e.g. \"127.0.0.1:5432\")"
                        ),
                    );
                    None
                }
            }
        }
        "log" => {
            let s = ctx.string(v, key)?;
            match regex::Regex::new(s) {
                Ok(re) => Some(Check::Log(LogPattern(re))),
                Err(e) => {
                    ctx.err(
                        &v.span(),
                        key,
                        format!(
                            "not a valid regular expression: {}",
                            super::values::regex_reason(&e)
                        ),
                    );
                    None
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/health?x=1#frag").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.target, "/health?x=1");
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.target.as_str()),
            ("localhost:80", "/")
        );
        let u = HttpUrl::parse("http://[::1]:9/a").unwrap();
        assert_eq!(u.authority, "[::1]:9");
        let u = HttpUrl::parse("HTTP://h?q").unwrap();
        assert_eq!(u.target, "/?q");
        for bad in [
            "https://x/",
            "127.0.0.1:80",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
