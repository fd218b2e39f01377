//! URL and error detection (seed 001), off the hot path: one task reads every ring with its
//! own cursor, like a follower, woken by the same log-activity `Notify` as followers. The
//! capture task never waits for it and does not know it exists; when the scanner falls
//! behind, the ring overwrites lines it has not seen, and it counts them as skipped
//! (`scanner_skips`) instead of slowing anyone down. Matching happens outside every lock.
//! It ends when a re-exec begins (`LogPlane::stop_scanning`): the next image starts its own.
//!
//! Found URLs are published once per process (`url-detected`) and kept on the entry
//! (`urls`, shown by `status`); lines matching a process's `error_patterns` are published as
//! `error-detected`, both with the line's sequence number.

use super::{LogPlane, ProcessLog};
use crate::config::LogSettings;
use crate::shutdown::Shutdown;
use brummer_core::{EventBus, Line};
use brummer_proto::events::Event;
use regex::bytes::RegexSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Records read from one ring at a time.
const BATCH: usize = 256;
/// A pass ends after this long even if rings still have lines; the next pass goes on with
/// the ring after the last one scanned. Without a bound, one pass over many flooding rings
/// runs at a stretch, which is cheap over the long run but takes the daemon's CPU in bursts
/// (docs/architecture.md, "the scanner's pass is bounded by time").
const PASS_BUDGET: std::time::Duration = std::time::Duration::from_millis(1);
/// Shortest pause after a pass that found lines. Sporadic output is scanned at once (the
/// pass runs on the wake-up); a flood is sampled and the rest skipped (counted).
const PERIOD: std::time::Duration = std::time::Duration::from_millis(20);
/// The pause after a pass is at least this many times the pass's own duration, so the
/// scanner takes at most 1/(1 + IDLE_FACTOR) of one core whatever the lines cost to match.
/// A budget in lines instead would let costly lines take a core away from the program and
/// its capture during a flood.
const IDLE_FACTOR: u32 = 19;
/// URLs kept per process (the first ones found).
pub const MAX_URLS: usize = 32;
/// Longest line text put into an `error-detected` event.
const MAX_EVENT_TEXT: usize = 1024;

struct State {
    cursor: u64,
    settings: Arc<LogSettings>,
    errors: Option<Arc<RegexSet>>,
}

impl State {
    fn new(e: &ProcessLog, sets: &mut Sets) -> State {
        let settings = e.settings.load_full();
        State {
            cursor: e.ring.oldest_seq(),
            errors: compile(&e.name, &settings, sets),
            settings,
        }
    }
}

/// Compiled pattern sets by pattern list. Programs with the same patterns (the defaults,
/// usually) share one set: a compiled set and its search caches are large, and one copy
/// per program made idle programs expensive (docs/architecture.md, W1 memory).
type Sets = HashMap<Vec<String>, Arc<RegexSet>>;

fn compile(name: &str, settings: &LogSettings, sets: &mut Sets) -> Option<Arc<RegexSet>> {
    if settings.error_patterns.is_empty() {
        return None;
    }
    if let Some(s) = sets.get(&settings.error_patterns) {
        return Some(s.clone());
    }
    match RegexSet::new(&settings.error_patterns) {
        Ok(s) => {
            let s = Arc::new(s);
            sets.insert(settings.error_patterns.clone(), s.clone());
            Some(s)
        }
        Err(e) => {
            // Checked at load time; only a pattern set too large together ends here.
            tracing::error!(process = %name, cause = %e, "error patterns not usable");
            None
        }
    }
}

/// Starts the scanner task; it ends with `shutdown`.
pub fn spawn(plane: Arc<LogPlane>, bus: Arc<EventBus<Event>>, shutdown: &Shutdown) {
    shutdown.spawn(run(plane, bus));
}

async fn run(d: Arc<LogPlane>, bus: Arc<EventBus<Event>>) {
    let mut states: HashMap<Arc<str>, State> = HashMap::new();
    let mut sets: Sets = HashMap::new();
    let mut buf: Vec<Line> = Vec::new();
    // Where the next pass starts, so a pass cut short by the budget is fair to every ring.
    let mut start = 0usize;
    while d.scanning() {
        let woken = d.activity().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let pass = std::time::Instant::now();
        let snap = d.logs().load_full();
        let mut more = false;
        let mut scanned_any = false;
        let n = snap.len();
        let mut visited = 0;
        let first = start % n.max(1);
        for (_, e) in snap.iter().skip(first).chain(snap.iter().take(first)) {
            visited += 1;
            let st = states
                .entry(e.name.clone())
                .or_insert_with(|| State::new(e, &mut sets));
            let settings = e.settings.load();
            if !Arc::ptr_eq(&settings, &st.settings) {
                st.settings = settings.clone();
                st.errors = compile(&e.name, &settings, &mut sets);
            }
            if !settings.scan {
                st.cursor = e.ring.next_seq();
                continue;
            }
            buf.clear();
            let r = e.ring.read_from(st.cursor, BATCH, None, &mut buf);
            if r.missed > 0 {
                e.counters
                    .scanner_skips
                    .fetch_add(r.missed, Ordering::Relaxed);
            }
            st.cursor = r.next_seq;
            for l in &buf {
                scan_line(&bus, e, st.errors.as_deref(), l);
            }
            e.counters
                .scanned
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            scanned_any |= !buf.is_empty();
            more |= st.cursor < e.ring.next_seq();
            if pass.elapsed() >= PASS_BUDGET {
                break;
            }
        }
        start = (start + visited) % n.max(1);
        // Rings the budget left out may hold lines.
        more |= visited < n;
        states.retain(|name, _| snap.get(name).is_some());
        // Sets no program uses any more (after a reload) are dropped.
        sets.retain(|_, s| Arc::strong_count(s) > 1);
        drop(snap);
        if scanned_any {
            tokio::time::sleep(PERIOD.max(pass.elapsed() * IDLE_FACTOR)).await;
        } else if more {
            tokio::task::yield_now().await;
        } else {
            woken.await;
        }
    }
}

fn scan_line(bus: &EventBus<Event>, e: &ProcessLog, errors: Option<&RegexSet>, l: &Line) {
    let bytes = &l.bytes[..];
    let has_url = memchr::memmem::find(bytes, b"http").is_some();
    if !has_url && errors.is_none() {
        return;
    }
    // Most lines carry no escape sequence and match nothing: they are matched as the raw
    // bytes, with no UTF-8 conversion or allocation.
    let stripped;
    let plain: &[u8] = if memchr::memchr(0x1b, bytes).is_some() {
        stripped = strip_ansi(&String::from_utf8_lossy(bytes));
        stripped.as_bytes()
    } else {
        bytes
    };
    if has_url {
        for url in find_urls(&String::from_utf8_lossy(plain)) {
            add_url(bus, e, url, l.meta.seq);
        }
    }
    if let Some(set) = errors
        && set.is_match(plain)
    {
        let mut line = String::from_utf8_lossy(plain).into_owned();
        if line.len() > MAX_EVENT_TEXT {
            let mut cut = MAX_EVENT_TEXT;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        bus.publish(Event::ErrorDetected {
            process: e.name.to_string(),
            line,
            line_seq: l.meta.seq,
        });
    }
}

fn add_url(bus: &EventBus<Event>, e: &ProcessLog, url: &str, seq: u64) {
    let cur = e.urls.load();
    if cur.len() >= MAX_URLS || cur.iter().any(|u| u == url) {
        return;
    }
    let mut next = Vec::with_capacity(cur.len() + 1);
    next.extend(cur.iter().cloned());
    next.push(url.to_owned());
    // The scanner is the only writer: a plain store cannot lose an update.
    e.urls.store(Arc::new(next));
    bus.publish(Event::UrlDetected {
        process: e.name.to_string(),
        url: url.to_owned(),
        line_seq: seq,
    });
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL/ST`, and
/// two-character escapes), so a coloured `http://localhost:\x1b[1m5173\x1b[22m/` is found.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for ch in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&ch) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(ch) = chars.next() {
                    if ch == '\x07' {
                        break;
                    }
                    if ch == '\x1b' {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The http(s) URLs in a line: from the scheme up to whitespace, a quote or a bracket,
/// without trailing punctuation.
pub fn find_urls(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            let i = rest.find("http")?;
            let cand = &rest[i..];
            let after = if cand.starts_with("https://") {
                8
            } else if cand.starts_with("http://") {
                7
            } else {
                rest = &rest[i + 4..];
                continue;
            };
            // Not part of a longer word (e.g. "xhttp://").
            let glued = rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            let end = cand
                .find(|c: char| {
                    c.is_whitespace()
                        || c.is_control()
                        || matches!(c, '"' | '\'' | '<' | '>' | '`' | '|' | '{' | '}' | '\\')
                })
                .unwrap_or(cand.len());
            let mut url = &cand[..end];
            // Trailing punctuation belongs to the sentence; a closing bracket only when
            // the URL did not open it.
            while let Some(last) = url.chars().next_back() {
                let strip = match last {
                    '.' | ',' | ';' | ':' | '!' | '?' | '*' => true,
                    ')' => url.matches('(').count() < url.matches(')').count(),
                    ']' => url.matches('[').count() < url.matches(']').count(),
                    _ => false,
                };
                if !strip {
                    break;
                }
                url = &url[..url.len() - 1];
            }
            rest = &rest[i + end.max(1)..];
            if glued || url.len() <= after {
                continue;
            }
            return Some(url);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessDef;

    fn urls(s: &str) -> Vec<&str> {
        find_urls(s).collect()
    }

    #[test]
    fn finds_urls() {
        assert_eq!(
            urls("  ➜  Local:   http://localhost:5173/"),
            ["http://localhost:5173/"]
        );
        assert_eq!(
            urls("listening on http://127.0.0.1:8080, see https://example.com/docs."),
            ["http://127.0.0.1:8080", "https://example.com/docs"]
        );
        assert_eq!(
            urls("(at https://en.wikipedia.org/wiki/Foo_(bar))"),
            ["https://en.wikipedia.org/wiki/Foo_(bar)"]
        );
        assert_eq!(urls("\"http://a.b/c?d=1&e=2\""), ["http://a.b/c?d=1&e=2"]);
        assert!(urls("http:// nothing, https:/x, xhttp://y, httpd started").is_empty());
        let colored = "Local: \x1b[36mhttp://localhost:\x1b[1m5173\x1b[22m/\x1b[39m";
        let plain = strip_ansi(colored);
        assert_eq!(urls(&plain), ["http://localhost:5173/"]);
    }

    #[test]
    fn default_error_patterns() {
        let def = ProcessDef::with_defaults("x", crate::config::CommandSpec::Shell("x".into()));
        let set = compile("x", &def.logs, &mut Sets::new()).unwrap();
        for hit in [
            "thread 'main' panicked at src/main.rs:2:5",
            "panic: runtime error: index out of range",
            "Traceback (most recent call last):",
            "2026-01-01 ERROR db: connection refused",
            "FATAL: password authentication failed",
            "Error: Cannot find module 'x'",
            "Uncaught TypeError: x is undefined",
        ] {
            assert!(set.is_match(hit.as_bytes()), "{hit}");
        }
        for miss in ["all good", "errors=0", "INFO no ERRORS", "L0000001 xxxxx"] {
            assert!(!set.is_match(miss.as_bytes()), "{miss}");
        }
    }

    #[test]
    fn programs_with_the_same_patterns_share_one_compiled_set() {
        let mut sets = Sets::new();
        let cmd = || crate::config::CommandSpec::Shell("x".into());
        let a = ProcessDef::with_defaults("a", cmd());
        let b = ProcessDef::with_defaults("b", cmd());
        let mut c = ProcessDef::with_defaults("c", cmd());
        c.logs.error_patterns = vec!["oops".into()];
        let (sa, sb, sc) = (
            compile("a", &a.logs, &mut sets).unwrap(),
            compile("b", &b.logs, &mut sets).unwrap(),
            compile("c", &c.logs, &mut sets).unwrap(),
        );
        assert!(Arc::ptr_eq(&sa, &sb));
        assert!(!Arc::ptr_eq(&sa, &sc));
        assert!(sc.is_match(b"oops") && !sc.is_match(b"ERROR"));
        drop(sc);
        sets.retain(|_, s| Arc::strong_count(s) > 1);
        assert_eq!(sets.len(), 1, "the set no program uses is dropped");
    }
}
