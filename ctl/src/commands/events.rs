//! `brummerctl events`: subscribe and print one line per daemon event until interrupted or
//! until the daemon goes away (exit 3). `--json` prints each notification's params object.

use super::{Ctx, resume};
use crate::client::RawNotification;
use crate::exit::CtlError;
use crate::output::{Printer, last_exit, paint, state_color, warn};
use crate::time::rfc3339_millis;
use brummer_proto::events::{EVENT, Event, EventParams, MISSED, MissedParams};
use brummer_proto::methods::{Request, SubscribeParams};
use serde_json::Value;
use std::io::Write;

pub fn run(ctx: &mut Ctx) -> Result<i32, CtlError> {
    let (json, color) = (ctx.json, ctx.color);
    // The seq of the last event printed (or the subscription's starting point): after a
    // lost connection the stream resumes after it (`resume`).
    let last = std::cell::Cell::new(None::<u64>);
    let requests = || {
        vec![Request::Subscribe(SubscribeParams {
            after_seq: last.get(),
        })]
    };
    let mut client = ctx.connect()?;
    let (socket, out) = (&ctx.socket, &mut ctx.out);
    let mut resumed = false;
    let opened = client.session(requests(), &mut |n| {
        handle(out, n.into(), json, color, &last, resumed)
    });
    let mut session = opened?;
    loop {
        if last.get().is_none() {
            last.set(session.results.first().and_then(|r| r["seq"].as_u64()));
        }
        let dropped = loop {
            if !client.has_buffered_message() {
                out.flush()?;
            }
            match client.next_notification() {
                Ok(n) => handle(out, n, json, color, &last, false)?,
                Err(e) if resume::is_drop(&e) => break e,
                Err(e) => return Err(e),
            }
        };
        out.flush()?;
        resumed = true;
        (client, session) = resume::reopen(socket, dropped, &requests, &mut |n| {
            handle(out, n, json, color, &last, resumed)
        })?;
    }
}

/// Prints one notification; `resumed`: it came while a new connection was opened, where a
/// `missed` report means events that happened while the client was away.
fn handle<W: Write>(
    out: &mut Printer<W>,
    n: RawNotification,
    json: bool,
    color: bool,
    last: &std::cell::Cell<Option<u64>>,
    resumed: bool,
) -> Result<(), CtlError> {
    match n.method.as_str() {
        EVENT => {
            let v: Value = n.decode()?;
            if let Some(seq) = v["seq"].as_u64() {
                last.set(Some(seq));
            }
            if json {
                out.json_line(&v)
            } else {
                out.line(&render(&v, color))
            }
        }
        MISSED => {
            let m: MissedParams = n.decode()?;
            out.flush()?;
            let what = if m.count == 1 { "event" } else { "events" };
            let why = if resumed {
                "they happened while brummerctl was reconnecting"
            } else {
                "brummerctl read them too slowly"
            };
            warn(&format!("missed {} {what}: {why}", m.count));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `2026-11-22T10:00:00.123Z web running -> backoff (exit code 1)`. Events of a kind this
/// brummerctl does not know still print with their time, process and type.
pub fn render(params: &Value, color: bool) -> String {
    let Ok(p) = serde_json::from_value::<EventParams>(params.clone()) else {
        let time = params["time_us"].as_u64().map(rfc3339_millis);
        let field = |k: &str| params[k].as_str().unwrap_or("-").to_owned();
        return format!(
            "{} {} {}",
            time.unwrap_or_else(|| "-".into()),
            field("process"),
            field("type")
        );
    };
    let time = rfc3339_millis(p.time_us);
    let what = match &p.event {
        Event::StateChanged {
            old,
            new,
            pid,
            exit_code,
            exit_signal,
            restarts,
            reason,
            ..
        } => {
            let mut details = Vec::new();
            if let Some(reason) = reason {
                details.push(reason.clone());
            }
            if let (Some(pid), true) = (pid, new.is_active()) {
                details.push(format!("pid {pid}"));
            }
            if exit_code.is_some() || exit_signal.is_some() {
                let exit = last_exit(*exit_code, *exit_signal);
                details.push(exit.replacen("code", "exit code", 1));
            }
            if *restarts > 0 && *new == brummer_proto::ProcessState::Backoff {
                details.push(format!("restart {restarts}"));
            }
            let details = if details.is_empty() {
                String::new()
            } else {
                format!(" ({})", details.join(", "))
            };
            format!(
                "{old} -> {}{details}",
                paint(new.as_str(), Some(state_color(*new)), color)
            )
        }
        Event::ProcessAdded { .. } => "added".to_owned(),
        Event::ProcessRemoved { .. } => "removed".to_owned(),
        Event::UrlDetected { url, .. } => format!("url {url}"),
        Event::ErrorDetected { line, .. } => format!("error: {line}"),
        Event::StatusText { text: Some(t), .. } => format!("status: {t}"),
        Event::StatusText { text: None, .. } => "status: -".to_owned(),
    };
    format!("{time} {} {what}", p.event.process())
}

#[cfg(test)]
mod tests {
    use super::*;
    use brummer_proto::ProcessState;
    use brummer_proto::rpc::Notification;
    use serde_json::json;

    const T: u64 = 1_795_341_600_123_456;

    fn params(event: Event) -> Value {
        serde_json::to_value(EventParams {
            subscription: 1,
            seq: 5,
            time_us: T,
            event,
        })
        .unwrap()
    }

    #[test]
    fn state_changes() {
        let v = params(Event::StateChanged {
            process: "web".into(),
            old: ProcessState::Running,
            new: ProcessState::Backoff,
            pid: None,
            exit_code: Some(1),
            exit_signal: None,
            restarts: 0,
            reason: None,
        });
        assert_eq!(
            render(&v, false),
            "2026-11-22T10:00:00.123Z web running -> backoff (exit code 1)"
        );
        let v = params(Event::StateChanged {
            process: "web".into(),
            old: ProcessState::Starting,
            new: ProcessState::Running,
            pid: Some(1234),
            exit_code: None,
            exit_signal: None,
            restarts: 2,
            reason: None,
        });
        assert_eq!(
            render(&v, false),
            "2026-11-22T10:00:00.123Z web starting -> running (pid 1234)"
        );
        let v = params(Event::StateChanged {
            process: "db".into(),
            old: ProcessState::Stopping,
            new: ProcessState::Stopped,
            pid: Some(9),
            exit_code: None,
            exit_signal: Some(9),
            restarts: 0,
            reason: None,
        });
        assert_eq!(
            render(&v, false),
            "2026-11-22T10:00:00.123Z db stopping -> stopped (SIGKILL)"
        );
        assert!(render(&v, true).contains("\x1b[2mstopped\x1b[0m"));
    }

    #[test]
    fn other_events() {
        let added = params(Event::ProcessAdded {
            process: "web".into(),
        });
        assert_eq!(render(&added, false), "2026-11-22T10:00:00.123Z web added");
        let url = params(Event::UrlDetected {
            process: "web".into(),
            url: "http://localhost:3000".into(),
            line_seq: 4,
        });
        assert_eq!(
            render(&url, false),
            "2026-11-22T10:00:00.123Z web url http://localhost:3000"
        );
        let status = params(Event::StatusText {
            process: "db".into(),
            text: Some("replaying the journal".into()),
        });
        assert_eq!(
            render(&status, false),
            "2026-11-22T10:00:00.123Z db status: replaying the journal"
        );
        let failed = params(Event::StateChanged {
            process: "web".into(),
            old: ProcessState::Running,
            new: ProcessState::Stopping,
            pid: Some(7),
            exit_code: None,
            exit_signal: None,
            restarts: 0,
            reason: Some("health check failed: HTTP 500 from http://127.0.0.1:8080/".into()),
        });
        assert!(
            render(&failed, false)
                .ends_with("web running -> stopping (health check failed: HTTP 500 from http://127.0.0.1:8080/, pid 7)"),
            "{}",
            render(&failed, false)
        );
        let unknown = json!({"subscription": 1, "seq": 1, "time_us": T, "type": "new-kind",
                             "process": "web"});
        assert_eq!(
            render(&unknown, false),
            "2026-11-22T10:00:00.123Z web new-kind"
        );
    }

    #[test]
    fn json_mode_prints_params_per_line() {
        let mut out = Printer::new(Vec::new());
        let v = params(Event::ProcessRemoved {
            process: "old".into(),
        });
        let last = std::cell::Cell::new(None);
        handle(
            &mut out,
            Notification::new(EVENT, v.clone()).into(),
            true,
            false,
            &last,
            false,
        )
        .unwrap();
        handle(
            &mut out,
            Notification::new("log", json!({})).into(),
            true,
            false,
            &last,
            false,
        )
        .unwrap();
        assert_eq!(last.get(), v["seq"].as_u64());
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 1);
        let back: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(back, v);
    }
}
