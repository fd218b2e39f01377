//! The operations both control planes offer, written once: one file per operation, each
//! checking who asks and whether the daemon still takes work, then acting through the
//! programs' supervisor tasks (start, stop, restart) or the server's top loop (reload).
//! Failures are an [`OpError`], which each plane maps to its own error form.
//!
//! Nothing here holds a lock across an `.await`; every wait is on a reply channel whose
//! sender is owned by a task that answers or is dropped.

pub mod enable;
pub mod error;
pub mod metrics;
pub mod reexec;
pub mod reload;
pub mod resolve;
pub mod restart;
pub mod start;
pub mod stop;

pub use error::OpError;
pub use resolve::Selection;

use crate::desired::Manual;
use crate::process::command::{Command, Reply};
use crate::process::{Done, Outcome, ProcessEntry};
use crate::state::State;
use brummer_proto::methods::OpOutcome;
use std::sync::Arc;

/// Who asks, as the plane authenticated them.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub can_write: bool,
}

/// What one program made of a lifecycle operation.
pub struct Step {
    pub entry: Arc<ProcessEntry>,
    pub outcome: Outcome,
}

impl Step {
    /// The socket's form: the program's status read after the command answered.
    pub fn to_wire(&self) -> OpOutcome {
        let (ok, error, note) = match &self.outcome {
            Ok(done) => (true, None, done.note().map(str::to_owned)),
            Err(f) => (false, Some(f.to_string()), None),
        };
        OpOutcome {
            name: self.entry.name.to_string(),
            ok,
            error,
            note,
            status: self.entry.status(),
        }
    }
}

/// Every step succeeded (or found its work done), or one `Failed` naming each failure.
pub fn all_ok(steps: &[Step]) -> Result<(), OpError> {
    let failed: Vec<(String, String)> = steps
        .iter()
        .filter_map(|s| match &s.outcome {
            Ok(_) => None,
            Err(f) => Some((s.entry.name.to_string(), f.to_string())),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(OpError::Failed(failed))
    }
}

/// Refuses a change to a caller who may only read, and any new work once shutdown began.
pub fn may_change(state: &State, caller: &Caller) -> Result<(), OpError> {
    if !caller.can_write {
        return Err(OpError::PermissionDenied {
            uid: caller.uid,
            daemon_uid: state.access().daemon_uid(),
        });
    }
    if state.is_shutting_down() {
        return Err(OpError::ShuttingDown);
    }
    Ok(())
}

/// Checks the caller, resolves the selection, records the request by hand in the runtime
/// state and sends one command to every selected program in parallel; answers when all
/// replied and the runtime state recording the request (and the children it left) is on
/// disk, in selection order.
async fn lifecycle(
    state: &State,
    caller: &Caller,
    sel: Selection,
    make: fn(Reply) -> Command,
    manual: Manual,
) -> Result<Vec<Step>, OpError> {
    may_change(state, caller)?;
    let entries = resolve::select(state, sel)?;
    // Recorded first: a brummerd that dies during the command leaves the request behind,
    // and the next one carries it out (stops the leftover, or starts the program).
    let names: Vec<&str> = entries.iter().map(|e| &*e.name).collect();
    state.desired().set_manual(&names, manual);
    let steps = run(entries.clone(), make).await;
    // The command's own record of the child it started or stopped is newer still.
    if let Err(e) = state.desired().sync_runtime().await {
        tracing::warn!(cause = %e, "the request is done but not recorded; a crash of brummerd would forget it");
    }
    Ok(steps)
}

async fn run(entries: Vec<Arc<ProcessEntry>>, make: fn(Reply) -> Command) -> Vec<Step> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e.clone();
        set.spawn(async move { (i, e.send(make).await) });
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; entries.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, outcome)) = r {
            outcomes[i] = Some(outcome);
        }
    }
    entries
        .into_iter()
        .zip(outcomes)
        .map(|(entry, outcome)| Step {
            entry,
            // A command task that panicked answers nothing.
            outcome: outcome.unwrap_or(Err(crate::process::Failure::NoAnswer)),
        })
        .collect()
}

/// A single-program start that found it running, as an error (D-Bus answers it by name).
pub fn started(steps: Vec<Step>) -> Result<(), OpError> {
    all_ok(&steps)?;
    match steps.as_slice() {
        [one] if one.outcome == Ok(Done::AlreadyRunning) => {
            Err(OpError::AlreadyRunning(one.entry.name.to_string()))
        }
        _ => Ok(()),
    }
}
