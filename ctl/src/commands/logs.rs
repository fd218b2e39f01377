//! `brummerctl logs [-f] [-n N] [--stream S] [NAME...]`: tails of the in-memory rings, then
//! with `--follow` the `log` notifications of a `follow` subscription until interrupted.
//!
//! Several processes (or none named, meaning all) get a `NAME | ` prefix padded to the
//! longest name; `--json` prints one `LogLine` object per line (NDJSON). Lines the daemon
//! could no longer deliver are reported on stderr, never mixed into stdout.

use super::{Ctx, resume};
use crate::cli::LogsArgs;
use crate::client::{RawNotification, decode};
use crate::exit::{CtlError, OK};
use crate::output::{Printer, name_color, paint, warn};
use brummer_proto::Stream;
use brummer_proto::events::{LOG, LogParams, MISSED, MissedParams};
use brummer_proto::methods::{
    FollowParams, ListResult, LogLine, LogsParams, LogsResult, Missed, Request, SubscribeResult,
};
use std::io::{IsTerminal, Write};

/// Lines shown by `logs` without `-n`.
pub const DEFAULT_LINES: usize = 100;
/// Lines shown before following with `logs -f` without `-n`.
pub const DEFAULT_FOLLOW_LINES: usize = 10;

/// Lines asked for with `--since` and no `-n` (the daemon's limit per call).
pub const SINCE_LINES: usize = 1_000_000;

pub fn run(ctx: &mut Ctx, args: LogsArgs) -> Result<i32, CtlError> {
    let stream: Option<Stream> = args.stream.map(Into::into);
    let prefix = args.names.len() != 1 && !args.no_prefix;
    let mut printer = LinePrinter::new(prefix, ctx.json, ctx.color);
    printer.timestamps = args.timestamps;
    printer.escape = std::io::stdout().is_terminal();
    printer.widen(args.names.iter().map(String::as_str));

    if !args.follow {
        let default = if args.since.is_some() {
            SINCE_LINES
        } else {
            DEFAULT_LINES
        };
        let result = ctx.call(Request::Logs(LogsParams {
            names: args.names,
            lines: Some(args.lines.unwrap_or(default)),
            from_seq: None,
            stream,
            since_us: args.since,
            until_us: args.until,
            grep: args.grep,
        }))?;
        let logs: LogsResult = decode(result)?;
        for m in &logs.missed {
            warn(&evicted_message(m));
        }
        printer.widen(logs.lines.iter().map(|l| l.process.as_str()));
        for line in &logs.lines {
            printer.print(&mut ctx.out, line)?;
        }
        return Ok(OK);
    }

    // Following everything: ask for the names too (same round trip) so the prefixes line
    // up from the first line on.
    let with_list = args.names.is_empty() && printer.prefix && !ctx.json;
    let mut requests = Vec::new();
    if with_list {
        requests.push(Request::List);
    }
    requests.push(Request::Follow(FollowParams {
        names: args.names.clone(),
        // With --since every line from then on, unless -n keeps only the most recent N.
        lines: match args.since {
            Some(_) => args.lines,
            None => Some(args.lines.unwrap_or(DEFAULT_FOLLOW_LINES)),
        },
        stream,
        since_us: args.since,
        grep: args.grep.clone(),
        resume: Default::default(),
    }));
    let mut client = ctx.connect()?;
    let (socket, out) = (&ctx.socket, &mut ctx.out);
    let mut session = client.session(requests, &mut |n| printer.notification(out, n.into()))?;
    if with_list {
        let list: ListResult = decode(session.results.remove(0))?;
        printer.widen(list.processes.iter().map(|p| p.name.as_str()));
    }
    loop {
        // Where each process's stream starts, for a resume before its first line.
        if let Some(r) = session.results.last()
            && let Ok(sub) = decode::<SubscribeResult>(r.clone())
        {
            for (name, seq) in sub.cursors {
                printer.next.entry(name).or_insert(seq);
            }
        }
        let dropped = loop {
            // Lines show up as they arrive: what is printed goes out before waiting for more.
            if !client.has_buffered_message() {
                out.flush()?;
            }
            match client.next_notification() {
                Ok(n) => printer.notification(out, n)?,
                Err(e) if resume::is_drop(&e) => break e,
                Err(e) => return Err(e),
            }
        };
        out.flush()?;
        // Lines are asked for from where each process's stream stopped: none twice, and
        // those no longer kept anywhere come back as `missed`, counted.
        let resume_at = printer.next.clone();
        let requests = || {
            vec![Request::Follow(FollowParams {
                names: args.names.clone(),
                lines: Some(0),
                stream,
                since_us: None,
                grep: args.grep.clone(),
                resume: resume_at.clone(),
            })]
        };
        (client, session) = resume::reopen(socket, dropped, &requests, &mut |n| {
            printer.notification(out, n)
        })?;
    }
}

/// `12 lines of web are no longer kept (rotated away or never written to disk)`.
pub fn evicted_message(m: &Missed) -> String {
    if m.count == 1 {
        format!(
            "1 line of {} is no longer kept (rotated away or never written to disk)",
            m.process
        )
    } else {
        format!(
            "{} lines of {} are no longer kept (rotated away or never written to disk)",
            m.count, m.process
        )
    }
}

/// `missed 3 lines of web` (the follower fell behind).
pub fn missed_message(m: &MissedParams) -> String {
    let lines = if m.count == 1 { "line" } else { "lines" };
    match &m.process {
        Some(p) => format!("missed {} {lines} of {p}", m.count),
        None => format!("missed {} {lines}", m.count),
    }
}

/// Formats log lines: raw text, `NAME | text`, or JSON.
pub struct LinePrinter {
    pub prefix: bool,
    json: bool,
    color: bool,
    /// Prefix each line with its capture time.
    pub timestamps: bool,
    /// Output is a terminal: show control characters escaped (see `safe_text`).
    pub escape: bool,
    /// Width of the longest name seen so far.
    width: usize,
    /// Per process, the seq of the next line a follower wants (the last printed + 1).
    pub next: std::collections::BTreeMap<String, u64>,
}

/// Text safe for a terminal: control characters (C0 but tab, DEL, C1) become `\xNN`, so a
/// program's output can not move the cursor, retitle the window or switch the charset.
/// Colour sequences (`ESC [ ... m`) are kept when `keep_sgr`, else dropped.
pub fn safe_text(text: &str, keep_sgr: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| (c.is_control() && c != '\t') || c == '\u{7f}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == '\x1b' && text[i + 1..].starts_with('[') {
            // A CSI sequence: parameters and intermediates, then a final byte.
            let body = &text[i + 2..];
            let end = body
                .char_indices()
                .find(|(_, ch)| ('\u{40}'..='\u{7e}').contains(ch));
            if let Some((j, 'm')) = end
                && body[..j]
                    .chars()
                    .all(|ch| ('\u{20}'..='\u{3f}').contains(&ch))
            {
                if keep_sgr {
                    out.push_str(&text[i..i + 2 + j + 1]);
                }
                // Skip the sequence.
                while let Some((k, _)) = it.peek() {
                    if *k >= i + 3 + j {
                        break;
                    }
                    it.next();
                }
                continue;
            }
        }
        if unsafe_char(c) {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

impl LinePrinter {
    pub fn new(prefix: bool, json: bool, color: bool) -> LinePrinter {
        LinePrinter {
            prefix,
            json,
            color,
            timestamps: false,
            escape: false,
            width: 0,
            next: Default::default(),
        }
    }

    pub fn widen<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for n in names {
            self.width = self.width.max(n.chars().count());
        }
    }

    pub fn format(&mut self, line: &LogLine) -> String {
        if self.json {
            return serde_json::to_string(line).unwrap_or_default();
        }
        let text = if self.escape {
            safe_text(&line.text, self.color)
        } else {
            std::borrow::Cow::Borrowed(line.text.as_str())
        };
        let mut out = String::with_capacity(text.len() + 48);
        if self.timestamps {
            out.push_str(&line.time);
            out.push(' ');
        }
        if self.prefix {
            self.widen([line.process.as_str()]);
            let prefix = format!("{:<w$} |", line.process, w = self.width);
            out.push_str(&paint(&prefix, Some(name_color(&line.process)), self.color));
            out.push(' ');
        }
        out.push_str(&text);
        out
    }

    pub fn print<W: Write>(
        &mut self,
        out: &mut Printer<W>,
        line: &LogLine,
    ) -> Result<(), CtlError> {
        out.line(&self.format(line))
    }

    /// Handles one notification of a `follow` stream.
    pub fn notification<W: Write>(
        &mut self,
        out: &mut Printer<W>,
        n: RawNotification,
    ) -> Result<(), CtlError> {
        match n.method.as_str() {
            LOG => {
                let p: LogParams = n.decode()?;
                let next = p.line.seq + 1;
                match self.next.get_mut(&p.line.process) {
                    Some(n) => *n = next,
                    None => {
                        self.next.insert(p.line.process.clone(), next);
                    }
                }
                self.print(out, &p.line)
            }
            MISSED => {
                let m: MissedParams = n.decode()?;
                // After the lines before the gap, on a terminal showing both streams.
                out.flush()?;
                warn(&missed_message(&m));
                Ok(())
            }
            // Events or notifications newer than this brummerctl: not ours to print.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brummer_proto::rpc::Notification;
    use serde_json::json;

    fn line(process: &str, seq: u64, text: &str) -> LogLine {
        LogLine {
            process: process.into(),
            seq,
            time: "2026-11-22T10:00:00.000001Z".into(),
            time_us: 1_795_341_600_000_001,
            stream: Stream::Stdout,
            pid: 7,
            text: text.into(),
            lossy: false,
            partial: false,
        }
    }

    #[test]
    fn single_process_prints_raw_text() {
        let mut p = LinePrinter::new(false, false, false);
        assert_eq!(p.format(&line("web", 0, "GET / 200")), "GET / 200");
    }

    #[test]
    fn several_processes_get_aligned_prefixes() {
        let mut p = LinePrinter::new(true, false, false);
        p.widen(["web", "worker"]);
        assert_eq!(p.format(&line("web", 0, "a")), "web    | a");
        assert_eq!(p.format(&line("worker", 0, "b")), "worker | b");
        // A longer name that shows up later widens the column from then on.
        assert_eq!(p.format(&line("scheduler", 0, "c")), "scheduler | c");
        assert_eq!(p.format(&line("web", 1, "d")), "web       | d");
        let mut p = LinePrinter::new(true, false, true);
        let colored = p.format(&line("web", 0, "a"));
        assert!(colored.starts_with("\x1b[") && colored.ends_with("web |\x1b[0m a"));
    }

    #[test]
    fn timestamps_and_terminal_safety() {
        let mut p = LinePrinter::new(false, false, false);
        p.timestamps = true;
        assert_eq!(
            p.format(&line("web", 0, "a")),
            "2026-11-22T10:00:00.000001Z a"
        );
        p.timestamps = false;
        p.escape = true;
        assert_eq!(
            p.format(&line("web", 0, "x\x1b]0;pwned\x07y")),
            "x\\x1b]0;pwned\\x07y"
        );
        assert_eq!(
            p.format(&line("web", 0, "a\tb\rc\u{9b}d")),
            "a\tb\\x0dc\\xc2\\x9bd"
        );
        assert_eq!(
            p.format(&line("web", 0, "\x1b[1;31mred\x1b[0m \x1b[2J")),
            "red \\x1b[2J"
        );
        assert_eq!(
            safe_text("\x1b[1;31mred\x1b[0m", true),
            "\x1b[1;31mred\x1b[0m"
        );
        assert_eq!(safe_text("caf\u{e9} \u{fffd}", false), "caf\u{e9} \u{fffd}");
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let mut p = LinePrinter::new(true, true, true);
        let text = p.format(&line("web", 3, "hi"));
        assert!(!text.contains('\n') && !text.contains('\x1b'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for k in ["process", "seq", "time", "stream", "text"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["seq"], 3);
        assert_eq!(v["stream"], "stdout");
    }

    #[test]
    fn missed_messages() {
        let m = Missed {
            process: "web".into(),
            count: 12,
        };
        assert_eq!(
            evicted_message(&m),
            "12 lines of web are no longer kept (rotated away or never written to disk)"
        );
        let m = MissedParams {
            subscription: 1,
            process: Some("web".into()),
            count: 3,
        };
        assert_eq!(missed_message(&m), "missed 3 lines of web");
    }

    #[test]
    fn follow_notifications_print_log_lines_only() {
        let mut p = LinePrinter::new(false, false, false);
        let mut out = Printer::new(Vec::new());
        let log = serde_json::to_value(LogParams {
            subscription: 2,
            line: line("web", 9, "hello"),
        })
        .unwrap();
        p.notification(&mut out, Notification::new(LOG, log).into())
            .unwrap();
        p.notification(
            &mut out,
            Notification::new("something-new", json!({"x": 1})).into(),
        )
        .unwrap();
        assert_eq!(String::from_utf8(out.into_inner()).unwrap(), "hello\n");
        let bad = Notification::new(LOG, json!({"subscription": 2}));
        assert!(
            p.notification(&mut Printer::new(Vec::new()), bad.into())
                .is_err()
        );
    }
}
