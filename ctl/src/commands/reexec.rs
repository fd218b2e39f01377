//! `brummerctl daemon-reexec`: brummerd replaces its own image with its binary on disk,
//! keeping every program running (the same pids, no line lost). The daemon answers before
//! it re-executes and then closes the connection; this waits until the new image answers
//! `version` on a new connection, and reports it.

use super::{Ctx, resume};
use crate::client::decode;
use crate::exit::{CtlError, OK};
use brummer_proto::methods::{ReexecResult, Request, VersionResult};

pub fn run(ctx: &mut Ctx) -> Result<i32, CtlError> {
    let mut client = ctx.connect()?;
    let session = client.session(
        vec![Request::DaemonReexec],
        &mut super::ignore_notifications,
    )?;
    let asked: ReexecResult = decode(session.results[0].clone())?;
    // The old image closes this connection when it executes the new one.
    let dropped = loop {
        if let Err(e) = client.next_notification() {
            break e;
        }
    };
    if !resume::is_drop(&dropped) {
        return Err(dropped);
    }
    let (_, session) = resume::reopen(
        &ctx.socket,
        dropped,
        &|| vec![Request::Version],
        &mut |_| Ok(()),
    )?;
    let now: VersionResult = decode(session.results[0].clone())?;
    if ctx.json {
        ctx.out.json_pretty(&serde_json::json!({
            "pid": asked.pid,
            "binary": asked.binary,
            "from_version": asked.version,
            "version": now.version,
        }))?;
    } else {
        ctx.out.line(&format!(
            "brummerd re-executed {} (pid {}): version {} -> {}",
            asked.binary, asked.pid, asked.version, now.version
        ))?;
    }
    Ok(OK)
}
