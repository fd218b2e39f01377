//! `enable` / `disable`: set the override of each selected program's `autostart`, as
//! systemctl's enable and disable do: the setting is on disk (state directory) before the
//! answer, and holds across restarts of brummerd and reboots. Neither starts nor stops
//! anything, unless asked to (`now`: enable then start, disable then stop, each recorded
//! as a start or stop by hand).

use super::{Caller, OpError, Selection, Step, may_change};
use crate::process::{Done, ProcessEntry};
use crate::state::State;
use brummer_proto::methods::OpOutcome;
use std::sync::Arc;

/// What one program made of it.
pub struct Enabled {
    pub entry: Arc<ProcessEntry>,
    pub on: bool,
    /// The setting changed (false: it was already so).
    pub changed: bool,
    /// The start (enable) or stop (disable) asked for with `now`.
    pub now: Option<Step>,
}

impl Enabled {
    /// `"enabled"`, `"already disabled"`, `"enabled, started"`, `"disabled, already
    /// stopped"`, ...
    pub fn note(&self) -> String {
        let what = if self.on { "enabled" } else { "disabled" };
        let mut note = if self.changed {
            what.to_owned()
        } else {
            format!("already {what}")
        };
        if let Some(Step {
            outcome: Ok(done), ..
        }) = &self.now
        {
            note.push_str(match (done, self.on) {
                (Done::AlreadyRunning, _) => ", already running",
                (Done::AlreadyStopped, _) => ", already stopped",
                (Done::Done, true) => ", started",
                (Done::Done, false) => ", stopped",
            });
        }
        note
    }

    /// The socket's form: the note, the start/stop failure if any, and the status after.
    pub fn to_wire(&self) -> OpOutcome {
        let error = match &self.now {
            Some(Step {
                outcome: Err(f), ..
            }) => Some(f.to_string()),
            _ => None,
        };
        OpOutcome {
            name: self.entry.name.to_string(),
            ok: error.is_none(),
            error,
            note: Some(self.note()),
            status: self.entry.status(),
        }
    }
}

pub async fn enable(
    state: &State,
    caller: &Caller,
    sel: Selection,
    on: bool,
    now: bool,
) -> Result<Vec<Enabled>, OpError> {
    may_change(state, caller)?;
    let entries = super::resolve::select(state, sel)?;
    let names: Vec<&str> = entries.iter().map(|e| &*e.name).collect();
    let changed = state
        .desired()
        .set_enabled(&names, on)
        .await
        .map_err(|e| OpError::StateFile(e.to_string()))?;
    for e in &entries {
        e.set_enabled_override(Some(on));
    }
    let mut steps: Vec<Option<Step>> = if now {
        let op = if on {
            super::Lifecycle::Start
        } else {
            super::Lifecycle::Stop
        };
        // The programs asked for come first; those taken along are left out here.
        super::lifecycle(state, caller, Selection::Entries(entries.clone()), op)
            .await?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        entries.iter().map(|_| None).collect()
    };
    Ok(entries
        .into_iter()
        .zip(changed)
        .zip(steps.iter_mut().map(Option::take))
        .map(|((entry, changed), now)| Enabled {
            entry,
            on,
            changed,
            now,
        })
        .collect())
}

/// Every program's start or stop succeeded, or one `Failed` naming each failure.
pub fn all_ok(done: &[Enabled]) -> Result<(), OpError> {
    let failed: Vec<(String, String)> = done
        .iter()
        .filter_map(|d| match &d.now {
            Some(Step {
                outcome: Err(f), ..
            }) => Some((d.entry.name.to_string(), f.to_string())),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(OpError::Failed(failed))
    }
}
