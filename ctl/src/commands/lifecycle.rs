//! `brummerctl start|stop|restart NAME...|--all`: one request for any number of processes,
//! one line per outcome, exit 1 when any of them failed.

use super::Ctx;
use crate::cli::Targets;
use crate::client::decode;
use crate::exit::{CtlError, FAILED, OK};
use crate::output::{Color, paint};
use brummer_proto::methods::{OpOutcome, OpResult, Request, Selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn request(self, selector: Selector) -> Request {
        match self {
            Verb::Start => Request::Start(selector),
            Verb::Stop => Request::Stop(selector),
            Verb::Restart => Request::Restart(selector),
        }
    }

    fn done(self) -> &'static str {
        match self {
            Verb::Start => "started",
            Verb::Stop => "stopped",
            Verb::Restart => "restarted",
        }
    }
}

pub fn run(ctx: &mut Ctx, verb: Verb, targets: Targets) -> Result<i32, CtlError> {
    let selector = if targets.all {
        Selector::all()
    } else {
        Selector::names(targets.names)
    };
    let result = ctx.call(verb.request(selector))?;
    let ops: OpResult = decode(result.clone())?;
    let code = if ops.results.iter().all(|o| o.ok) {
        OK
    } else {
        FAILED
    };
    if ctx.json {
        ctx.out.json_pretty(&result)?;
    } else {
        for o in &ops.results {
            ctx.out.line(&render_outcome(verb, o, ctx.color))?;
        }
    }
    Ok(code)
}

/// `web: started (pid 1234)`, `web: already running (pid 1234)`, `web: failed: ...`.
pub fn render_outcome(verb: Verb, o: &OpOutcome, color: bool) -> String {
    if !o.ok {
        let why = o.error.as_deref().unwrap_or("unknown error");
        return format!(
            "{}: {} {why}",
            o.name,
            paint("failed:", Some(Color::Red), color)
        );
    }
    let what = o.note.as_deref().unwrap_or(verb.done());
    match o.status.pid {
        Some(pid) if o.status.state.is_active() => format!("{}: {what} (pid {pid})", o.name),
        _ => format!("{}: {what}", o.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::status::tests::proc;
    use brummer_proto::ProcessState;

    fn outcome(name: &str, ok: bool, state: ProcessState, pid: Option<u32>) -> OpOutcome {
        let mut status = proc(name, state);
        status.pid = pid;
        OpOutcome {
            name: name.into(),
            ok,
            error: None,
            note: None,
            status,
        }
    }

    #[test]
    fn outcome_lines() {
        let o = outcome("web", true, ProcessState::Running, Some(1234));
        assert_eq!(
            render_outcome(Verb::Start, &o, false),
            "web: started (pid 1234)"
        );
        assert_eq!(
            render_outcome(Verb::Restart, &o, false),
            "web: restarted (pid 1234)"
        );
        let mut already = o.clone();
        already.note = Some("already running".into());
        assert_eq!(
            render_outcome(Verb::Start, &already, false),
            "web: already running (pid 1234)"
        );
        let stopped = outcome("web", true, ProcessState::Stopped, None);
        assert_eq!(render_outcome(Verb::Stop, &stopped, false), "web: stopped");
        let mut failed = outcome("db", false, ProcessState::Failed, None);
        failed.error = Some("spawn failed: permission denied".into());
        assert_eq!(
            render_outcome(Verb::Start, &failed, false),
            "db: failed: spawn failed: permission denied"
        );
        assert_eq!(
            render_outcome(Verb::Start, &failed, true),
            "db: \x1b[31mfailed:\x1b[0m spawn failed: permission denied"
        );
    }
}
