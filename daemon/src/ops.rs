//! The operations both control planes offer, written once: name resolution with
//! did-you-mean, start/stop/restart on a set of programs (in parallel, through each program's
//! supervisor task), reload (through the top-level loop), and the checks in front of them
//! (who may change things, whether the daemon still takes work).
//!
//! Called by the socket's `control::methods` and by the D-Bus objects in `dbus`. Nothing here
//! holds a lock across an `.await`; every wait is on a reply channel whose sender is owned by
//! a task that answers or is dropped.

use crate::daemon::{self, Daemon, ReloadRequest};
use crate::entry::ProcessEntry;
use crate::supervisor::{Command, OpReply};
use brummer_proto::methods::{OpOutcome, ReloadResult};
use brummer_proto::name::suggest;
use brummer_proto::{ErrorCode, RpcError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Which command an operation sends to each selected program.
pub type MakeCommand = fn(oneshot::Sender<OpReply>) -> Command;

/// Every program, in name order.
pub fn all(d: &Daemon) -> Vec<Arc<ProcessEntry>> {
    d.registry.load().iter().map(|(_, e)| e.clone()).collect()
}

/// The entries for the names asked for (duplicates once), or a did-you-mean error.
pub fn resolve_names(d: &Daemon, names: &[String]) -> Result<Vec<Arc<ProcessEntry>>, RpcError> {
    let snap = d.registry.load();
    let mut out: Vec<Arc<ProcessEntry>> = Vec::with_capacity(names.len());
    for n in names {
        match snap.get(n) {
            Some(e) => {
                if !out.iter().any(|o| o.name == e.name) {
                    out.push(e.clone());
                }
            }
            None => return Err(RpcError::no_such_process(n, suggest(n, snap.names()))),
        }
    }
    Ok(out)
}

/// The error a caller gets when it may read but not change anything.
pub fn permission_denied(uid: u32, daemon_uid: u32) -> RpcError {
    RpcError::new(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: uid {uid} may read but not change anything (needs root, uid {daemon_uid} or group brummer)"
        ),
    )
}

/// Refuses new work once shutdown has begun.
pub fn accepting(d: &Daemon) -> Result<(), RpcError> {
    if d.is_shutting_down() {
        Err(RpcError::new(
            ErrorCode::ShuttingDown,
            "brummerd is shutting down",
        ))
    } else {
        Ok(())
    }
}

/// Runs one command on every entry in parallel; answers when all replied, in input order.
pub async fn run(entries: &[Arc<ProcessEntry>], make: MakeCommand) -> Vec<OpOutcome> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e.clone();
        set.spawn(async move { (i, daemon::command(&e, make).await) });
    }
    let mut replies: Vec<Option<OpReply>> = vec![None; entries.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, reply)) = r {
            replies[i] = Some(reply);
        }
    }
    entries
        .iter()
        .zip(replies)
        .map(|(e, r)| {
            let r = r.unwrap_or(OpReply {
                ok: false,
                error: Some("internal error: the command task failed".into()),
                note: None,
            });
            OpOutcome {
                name: e.name.to_string(),
                ok: r.ok,
                error: r.error,
                note: r.note,
                status: e.status(),
            }
        })
        .collect()
}

/// Asks the top-level loop to reload and waits for its answer.
pub async fn reload(d: &Daemon) -> Result<ReloadResult, RpcError> {
    let (tx, rx) = oneshot::channel();
    d.reload_tx
        .try_send(ReloadRequest { reply: tx })
        .map_err(|_| {
            RpcError::new(
                ErrorCode::OperationFailed,
                "too many reloads queued; try again",
            )
        })?;
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(msg)) => Err(RpcError::new(
            ErrorCode::ConfigInvalid,
            format!("reload failed, keeping the running configuration:\n{msg}"),
        )),
        Err(_) => Err(RpcError::new(
            ErrorCode::ShuttingDown,
            "brummerd is shutting down",
        )),
    }
}
