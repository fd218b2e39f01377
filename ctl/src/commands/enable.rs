//! `brummerctl enable|disable [--now] NAME...|--all`: set whether processes start with
//! brummerd. As with systemctl, enable does not start and disable does not stop (unless
//! `--now`), and each line says so when the process is not in the state its setting
//! implies. Exit 1 when a `--now` start or stop failed.

use super::Ctx;
use crate::cli::EnableArgs;
use crate::client::decode;
use crate::exit::{CtlError, FAILED, OK};
use crate::output::{Color, paint};
use brummer_proto::methods::{EnableParams, OpOutcome, OpResult, Request};

pub fn run(ctx: &mut Ctx, on: bool, args: EnableArgs) -> Result<i32, CtlError> {
    let params = EnableParams {
        names: args.targets.names,
        all: args.targets.all,
        now: args.now,
    };
    let request = if on {
        Request::Enable(params)
    } else {
        Request::Disable(params)
    };
    let result = ctx.call(request)?;
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
            ctx.out.line(&render(on, args.now, o, ctx.color))?;
        }
    }
    Ok(code)
}

/// `web: enabled (not running; start it with: brummerctl start web, or enable --now)`,
/// `web: disabled, stopped`, `web: failed: ...`.
pub fn render(on: bool, now: bool, o: &OpOutcome, color: bool) -> String {
    let note = o
        .note
        .clone()
        .unwrap_or_else(|| (if on { "enabled" } else { "disabled" }).to_owned());
    if !o.ok {
        let why = o.error.as_deref().unwrap_or("unknown error");
        return format!(
            "{}: {note}; {} {why}",
            o.name,
            paint("failed:", Some(Color::Red), color)
        );
    }
    let active = o.status.state.is_active();
    let hint = match (on, now, active) {
        (true, false, false) => format!(
            " (not running; start it with: brummerctl start {}, or enable --now)",
            o.name
        ),
        (false, false, true) => format!(
            " (still running; stop it with: brummerctl stop {}, or disable --now)",
            o.name
        ),
        _ => String::new(),
    };
    match o.status.pid {
        Some(pid) if active => format!("{}: {note} (pid {pid}){hint}", o.name),
        _ => format!("{}: {note}{hint}", o.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::status::tests::proc;
    use brummer_proto::ProcessState;

    fn outcome(note: &str, state: ProcessState, pid: Option<u32>) -> OpOutcome {
        let mut status = proc("web", state);
        status.pid = pid;
        OpOutcome {
            name: "web".into(),
            ok: true,
            error: None,
            note: Some(note.into()),
            status,
        }
    }

    #[test]
    fn lines_say_what_the_setting_did_not_do() {
        let o = outcome("enabled", ProcessState::Stopped, None);
        assert_eq!(
            render(true, false, &o, false),
            "web: enabled (not running; start it with: brummerctl start web, or enable --now)"
        );
        let o = outcome("disabled", ProcessState::Running, Some(7));
        assert_eq!(
            render(false, false, &o, false),
            "web: disabled (pid 7) (still running; stop it with: brummerctl stop web, or disable --now)"
        );
        let o = outcome("already enabled, started", ProcessState::Running, Some(7));
        assert_eq!(
            render(true, true, &o, false),
            "web: already enabled, started (pid 7)"
        );
        let o = outcome("disabled, stopped", ProcessState::Stopped, None);
        assert_eq!(render(false, true, &o, false), "web: disabled, stopped");
        let mut f = outcome("enabled", ProcessState::Failed, None);
        f.ok = false;
        f.error = Some("spawn failed: no such file".into());
        assert_eq!(
            render(true, true, &f, false),
            "web: enabled; failed: spawn failed: no such file"
        );
    }
}
