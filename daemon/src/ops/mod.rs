//! The operations both control planes offer, written once: one file per operation, each
//! checking who asks and whether the daemon still takes work, then acting through the
//! programs' supervisor tasks (start, stop, restart) or the server's top loop (reload).
//! Failures are an [`OpError`], which each plane maps to its own error form.
//!
//! Nothing here holds a lock across an `.await`; every wait is on a reply channel whose
//! sender is owned by a task that answers or is dropped.

pub mod deps;
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
use crate::process::{Done, Failure, Outcome, ProcessEntry};
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
    /// Why a program not asked for was acted on ("stopped because it requires db").
    pub why: Option<String>,
}

impl Step {
    /// The socket's form: the program's status read after the command answered.
    pub fn to_wire(&self) -> OpOutcome {
        let (ok, error, note) = match &self.outcome {
            Ok(done) => (
                true,
                None,
                self.why.clone().or(done.note().map(str::to_owned)),
            ),
            Err(f) => (false, Some(f.to_string()), self.why.clone()),
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

/// A lifecycle operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

/// Checks the caller, resolves the selection and adds what the dependency graph takes
/// along (`deps`), records the request by hand in the runtime state, and acts: starts all
/// at once (each waits at its gate for what it depends on), stops dependents first, and
/// restarts as an ordered stop and then a start when more than one program is involved.
/// Answers when all replied and the runtime state recording the request (and the children
/// it left) is on disk: the programs asked for, in selection order, then the ones taken
/// along (a program pulled in by a start that was running already is left out).
async fn lifecycle(
    state: &State,
    caller: &Caller,
    sel: Selection,
    op: Lifecycle,
) -> Result<Vec<Step>, OpError> {
    may_change(state, caller)?;
    let asked = resolve::select(state, sel)?;
    let graph = deps::graph(state);
    let plan = match op {
        Lifecycle::Start => deps::pulled_in(state, &graph, asked),
        Lifecycle::Stop => deps::requirers(state, &graph, asked, "stopped"),
        Lifecycle::Restart => deps::requirers(state, &graph, asked, "restarted"),
    };
    let manual = match op {
        Lifecycle::Stop => Manual::Stopped,
        Lifecycle::Start | Lifecycle::Restart => Manual::Started,
    };
    // Recorded first: a brummerd that dies during the command leaves the request behind,
    // and the next one carries it out (stops the leftover, or starts the program).
    let names: Vec<&str> = plan.iter().map(|p| &*p.entry.name).collect();
    state.desired().set_manual(&names, manual);
    let entries: Vec<Arc<ProcessEntry>> = plan.iter().map(|p| p.entry.clone()).collect();
    let outcomes = match op {
        Lifecycle::Start => starts(&entries, Command::Start).await,
        Lifecycle::Stop => deps::stop_in_order(&entries, &graph, Command::Stop).await,
        Lifecycle::Restart if entries.len() == 1 => starts(&entries, Command::Restart).await,
        Lifecycle::Restart => {
            let mut outcomes = deps::stop_in_order(&entries, &graph, Command::Stop).await;
            // What could not be stopped is not started beside what is left of it.
            let again: Vec<usize> = (0..entries.len())
                .filter(|&i| outcomes[i].is_ok())
                .collect();
            let picked: Vec<Arc<ProcessEntry>> =
                again.iter().map(|&i| entries[i].clone()).collect();
            for (i, o) in again.into_iter().zip(starts(&picked, Command::Start).await) {
                outcomes[i] = o;
            }
            outcomes
        }
    };
    let steps = plan
        .into_iter()
        .zip(outcomes)
        .map(|(p, outcome)| Step {
            entry: p.entry,
            outcome,
            why: p.why,
        })
        .filter(|s| s.why.is_none() || s.outcome != Ok(Done::AlreadyRunning))
        .collect();
    // The command's own record of the child it started or stopped is newer still.
    if let Err(e) = state.desired().sync_runtime().await {
        tracing::warn!(cause = %e, "the request is done but not recorded; a crash of brummerd would forget it");
    }
    Ok(steps)
}

/// Sends a starting command to every entry in parallel, each start counted as on its way
/// before any is sent (so that no start sees a dependency `stopped` that is about to
/// start: `ProcessEntry::start_asked`).
async fn starts(entries: &[Arc<ProcessEntry>], make: fn(Reply) -> Command) -> Vec<Outcome> {
    for e in entries {
        e.start_asked();
    }
    let outcomes = run(entries, make).await;
    for (e, o) in entries.iter().zip(&outcomes) {
        if matches!(o, Err(Failure::Busy | Failure::Removed)) {
            // The command never reached the task.
            e.start_taken();
        }
    }
    outcomes
}

async fn run(entries: &[Arc<ProcessEntry>], make: fn(Reply) -> Command) -> Vec<Outcome> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in entries.iter().enumerate() {
        let e = e.clone();
        set.spawn(async move { (i, e.send(make).await) });
    }
    // A command task that panicked answers nothing.
    let mut outcomes: Vec<Outcome> = vec![Err(Failure::NoAnswer); entries.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, outcome)) = r {
            outcomes[i] = outcome;
        }
    }
    outcomes
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
