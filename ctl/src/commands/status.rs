//! `brummerctl status [NAME...]`: one table row per process, or the daemon's JSON as is.

use super::Ctx;
use crate::client::decode;
use crate::exit::{CtlError, OK};
use crate::output::{Cell, Table, last_exit, paint, state_color};
use crate::time::{countdown, now_us, parse_rfc3339, short_duration};
use brummer_proto::ProcessState;
use brummer_proto::methods::{ProcessStatus, Request, Selector, StatusResult};

pub fn run(ctx: &mut Ctx, names: Vec<String>) -> Result<i32, CtlError> {
    let result = ctx.call(Request::Status(Selector::names(names)))?;
    if ctx.json {
        // Exactly the daemon's object: scripts get every field, including ones newer than
        // this brummerctl.
        ctx.out.json_pretty(&result)?;
        return Ok(OK);
    }
    let status: StatusResult = decode(result)?;
    ctx.out
        .text(&render(&status.processes, now_us(), ctx.color))?;
    Ok(OK)
}

/// The status table; `now_us` (microseconds since the epoch) dates the backoff countdown.
pub fn render(processes: &[ProcessStatus], now_us: i64, color: bool) -> String {
    if processes.is_empty() {
        return "no processes configured\n".to_owned();
    }
    let notes: Vec<String> = processes.iter().map(|p| note(p, now_us)).collect();
    let with_notes = notes.iter().any(|n| !n.is_empty());
    let with_urls = processes.iter().any(|p| !p.urls.is_empty());
    let mut headers = vec![
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "CPU",
        "MEM",
        "RESTARTS",
        "LAST EXIT",
        "ENABLED",
    ];
    if with_urls {
        headers.push("URLS");
    }
    if with_notes {
        headers.push("NOTE");
    }
    let mut table = Table::new(headers);
    for (p, note) in processes.iter().zip(notes) {
        let mut row = vec![
            Cell::from(p.name.as_str()),
            Cell::colored(p.state.as_str(), state_color(p.state)),
            Cell::from(p.pid.map_or("-".to_owned(), |pid| pid.to_string())),
            Cell::from(
                p.uptime_secs
                    .filter(|_| p.pid.is_some())
                    .map_or("-".to_owned(), short_duration),
            ),
            Cell::from(cpu(p)),
            Cell::from(mem(p)),
            Cell::from(p.restarts.to_string()),
            Cell::from(last_exit(p.exit_code, p.exit_signal)),
            Cell::from(if p.enabled { "enabled" } else { "disabled" }),
        ];
        if with_urls {
            row.push(Cell::from(if p.urls.is_empty() {
                "-".to_owned()
            } else {
                p.urls.join(" ")
            }));
        }
        if with_notes {
            row.push(Cell::from(note));
        }
        table.push(row);
    }
    let text = table.render(color);
    // Headers dimmed on a terminal, like the rest of the decoration.
    match text.split_once('\n') {
        Some((header, rest)) if color => {
            format!(
                "{}\n{rest}",
                paint(header, Some(crate::output::Color::Dim), true)
            )
        }
        _ => text,
    }
}

/// CPU percent of the last sample interval, `-` without one.
fn cpu(p: &ProcessStatus) -> String {
    match p.metrics.as_ref().and_then(|m| m.cpu_percent) {
        Some(v) if v < 10.0 => format!("{v:.1}%"),
        Some(v) => format!("{v:.0}%"),
        None => "-".to_owned(),
    }
}

/// Resident memory of the tree, in binary units as pm2 and top show it, `-` without a
/// sample.
fn mem(p: &ProcessStatus) -> String {
    let Some(b) = p.metrics.as_ref().map(|m| m.memory_bytes) else {
        return "-".to_owned();
    };
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{b}B"),
        _ if v < 10.0 => format!("{v:.1}{}", UNITS[unit]),
        _ => format!("{v:.0}{}", UNITS[unit]),
    }
}

/// `next in 1.2s; error: spawn failed: ...; disk log: ...` or empty.
fn note(p: &ProcessStatus, now_us: i64) -> String {
    let mut parts = Vec::new();
    if !p.waiting_for.is_empty() {
        parts.push(format!("waiting for {}", p.waiting_for.join(", ")));
    }
    // Only a program in backoff waits for an attempt (a daemon before issue 17 kept the
    // time of a cancelled one after `stop`).
    if let Some(next) = p
        .next_attempt
        .as_ref()
        .filter(|_| p.state == ProcessState::Backoff)
    {
        match parse_rfc3339(next) {
            Some(at) => parts.push(format!("next in {}", countdown((at - now_us) as f64 / 1e6))),
            None => parts.push(format!("next at {next}")),
        }
    }
    if p.state == ProcessState::Starting && p.pid.is_some() && p.ready != "started" {
        parts.push(format!("waiting to be ready ({})", p.ready));
    }
    if let Some(text) = &p.status_text {
        parts.push(format!("status: {text}"));
    }
    if let Some(err) = &p.last_error {
        parts.push(format!("error: {err}"));
    }
    if let Some(probe) = &p.last_probe {
        let verdict = if probe.ok { "ok" } else { "failed" };
        parts.push(format!("{} probe {verdict}: {}", probe.phase, probe.detail));
    }
    if let Some(disk) = &p.logs.disk_failing {
        parts.push(format!("disk log: {disk}"));
    }
    match p.logs.disk_lost_lines {
        0 => {}
        1 => parts.push("1 line never reached the disk log".to_owned()),
        n => parts.push(format!("{n} lines never reached the disk log")),
    }
    parts.join("; ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use brummer_proto::ProcessState;
    use brummer_proto::methods::{LogCounters, ProcessMetrics};

    pub(crate) fn proc(name: &str, state: ProcessState) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            state,
            pid: None,
            restarts: 0,
            generation: 1,
            exit_code: None,
            exit_signal: None,
            started_at: None,
            started_at_us: None,
            uptime_secs: None,
            next_attempt: None,
            last_error: None,
            autostart: true,
            enabled: true,
            restart_policy: "on-failure".into(),
            logs: LogCounters::default(),
            urls: Vec::new(),
            containment: None,
            metrics: None,
            ready: "started".into(),
            status_text: None,
            last_probe: None,
            waiting_for: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            after: Vec::new(),
        }
    }

    const NOW: i64 = 1_795_341_600_000_000; // 2026-11-22T10:00:00Z

    #[test]
    fn urls_get_a_column_when_any_process_has_one() {
        let mut web = proc("web", ProcessState::Running);
        web.urls = vec!["http://localhost:5173/".into(), "http://[::1]:5173/".into()];
        let db = proc("db", ProcessState::Running);
        let text = render(&[db.clone(), web], NOW, false);
        assert!(text.lines().next().unwrap().contains("URLS"), "{text}");
        assert!(
            text.contains("http://localhost:5173/ http://[::1]:5173/"),
            "{text}"
        );
        let text = render(&[db], NOW, false);
        assert!(!text.contains("URLS"), "{text}");
    }

    #[test]
    fn table_is_aligned_without_colour() {
        let mut web = proc("web", ProcessState::Running);
        web.pid = Some(1234);
        web.uptime_secs = Some(3.0 * 3600.0 + 125.0);
        web.metrics = Some(metrics(Some(99.52), 50 << 20));
        let mut worker = proc("worker-2", ProcessState::Exited);
        worker.exit_code = Some(1);
        worker.restarts = 12;
        let mut db = proc("db", ProcessState::Stopped);
        db.exit_signal = Some(9);
        db.enabled = false;
        let text = render(&[web, worker, db], NOW, false);
        assert_eq!(
            text,
            "\
NAME      STATE    PID   UPTIME  CPU   MEM  RESTARTS  LAST EXIT  ENABLED
web       running  1234  3h02m   100%  50M  0         -          enabled
worker-2  exited   -     -       -     -    12        code 1     enabled
db        stopped  -     -       -     -    0         SIGKILL    disabled
"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn backoff_and_errors_get_a_note_column() {
        let mut api = proc("api", ProcessState::Backoff);
        api.exit_code = Some(1);
        api.restarts = 3;
        api.next_attempt = Some("2026-11-22T10:00:01.200Z".into());
        let mut web = proc("web", ProcessState::Failed);
        web.last_error = Some("spawn failed: no such file: /usr/bin/webd".into());
        let text = render(&[api, web], NOW, false);
        assert_eq!(
            text,
            "\
NAME  STATE    PID  UPTIME  CPU  MEM  RESTARTS  LAST EXIT  ENABLED  NOTE
api   backoff  -    -       -    -    3         code 1     enabled  next in 1.2s
web   failed   -    -       -    -    0         -          enabled  error: spawn failed: no such file: /usr/bin/webd
"
        );
    }

    fn metrics(cpu_percent: Option<f64>, memory_bytes: u64) -> ProcessMetrics {
        ProcessMetrics {
            source: "proc".into(),
            sampled_at_us: 0,
            cpu_percent,
            cpu_usage_ns: 0,
            memory_bytes,
            memory_peak_bytes: memory_bytes,
            tasks: 1,
            io_read_bytes: None,
            io_write_bytes: None,
            cpu_pressure: None,
            memory_pressure: None,
            io_pressure: None,
        }
    }

    #[test]
    fn cpu_and_memory_are_short_and_dashed_without_a_sample() {
        let mut p = proc("web", ProcessState::Running);
        assert_eq!((cpu(&p), mem(&p)), ("-".into(), "-".into()));
        for (percent, bytes, want) in [
            (None, 900, ("-", "900B")),
            (Some(0.04), 1536, ("0.0%", "1.5K")),
            (Some(7.25), 10 << 20, ("7.2%", "10M")),
            (Some(199.6), (3 << 30) + (1 << 29), ("200%", "3.5G")),
        ] {
            p.metrics = Some(metrics(percent, bytes));
            assert_eq!((cpu(&p).as_str(), mem(&p).as_str()), want);
        }
    }

    #[test]
    fn readiness_status_text_and_the_last_probe_get_a_note() {
        let mut db = proc("db", ProcessState::Starting);
        db.pid = Some(42);
        db.ready = "notify".into();
        db.status_text = Some("replaying the journal".into());
        let mut web = proc("web", ProcessState::Running);
        web.ready = "http".into();
        web.last_error = Some("health check failed: HTTP 500 from http://127.0.0.1:8080/".into());
        web.last_probe = Some(brummer_proto::methods::ProbeResult {
            phase: "health".into(),
            probe: "http".into(),
            ok: true,
            detail: "HTTP 200 from http://127.0.0.1:8080/".into(),
            time: "2026-11-22T10:00:00Z".into(),
            time_us: NOW as u64,
        });
        let text = render(&[db, web], NOW, false);
        assert!(
            text.contains("starting  42 ")
                && text.contains("waiting to be ready (notify); status: replaying the journal"),
            "{text}"
        );
        assert!(
            text.contains(
                "error: health check failed: HTTP 500 from http://127.0.0.1:8080/; \
                 health probe ok: HTTP 200 from http://127.0.0.1:8080/"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failing_disk_log_and_lost_lines_get_a_note() {
        let mut web = proc("web", ProcessState::Running);
        web.logs.disk_failing = Some("cannot write /l/web.log: No space left on device".into());
        web.logs.disk_lost_lines = 12;
        let text = render(&[web], NOW, false);
        assert!(
            text.contains(
                "disk log: cannot write /l/web.log: No space left on device; \
                 12 lines never reached the disk log"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_stale_next_attempt_outside_backoff_is_not_counted_down() {
        let mut api = proc("api", ProcessState::Stopped);
        api.next_attempt = Some("2026-11-22T10:00:01.200Z".into());
        assert!(!render(&[api], NOW, false).contains("next in"));
    }

    #[test]
    fn colour_on_a_tty_keeps_alignment() {
        let mut web = proc("web", ProcessState::Running);
        web.pid = Some(7);
        web.uptime_secs = Some(45.0);
        let failed = proc("longer-name", ProcessState::Failed);
        let colored = render(&[web.clone(), failed.clone()], NOW, true);
        assert!(colored.contains("\x1b[32mrunning\x1b[0m"));
        assert!(colored.contains("\x1b[31mfailed\x1b[0m"));
        let strip = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        assert_eq!(strip(&colored), render(&[web, failed], NOW, false));
    }

    #[test]
    fn empty_registry() {
        assert_eq!(render(&[], NOW, false), "no processes configured\n");
    }
}
