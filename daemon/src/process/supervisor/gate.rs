//! The start gate: before a spawn, a program waits until every program it requires, wants
//! or is after, among those active or being started, is `running`. A `requires` target
//! that is down for good (failed, exited or stopped, with no start on its way) fails the
//! start; a `wants` or `after` target that is down releases the wait. Waiting has no time
//! limit. While it waits the program is `starting` without a pid, `waiting_for` names what
//! it waits for, and its supervisor still takes commands: a stop, restart, removal or
//! detach ends the wait at once, another start joins it, a reload's new definition is put
//! in force and the wait goes on with its dependencies.

use super::Task;
use crate::config::{DepKind, Deps};
use crate::process::board::Programs;
use crate::process::command::{Command, Done, Failure, Outcome, Reply};
use brummer_core::Recv;
use brummer_proto::ProcessState;
use std::sync::Arc;

/// Events queued for one waiting start; more are dropped (counted by the bus) and cost
/// nothing but a look at the board, which is what every wake does anyway.
const GATE_QUEUE: usize = 16;

/// What the gate says about a start now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Go,
    /// The programs still starting (or about to), in the order of the definition.
    Wait(Vec<String>),
    /// Why the start fails: "requires db, which failed".
    Fail(String),
}

/// A target as the gate sees it: whether a start of it is on its way, and its state.
type Seen = (bool, ProcessState);

/// Looks at a target on the board.
fn seen(programs: &Programs, name: &str) -> Option<Seen> {
    let target = programs.get(name)?;
    // Pending first: see `ProcessEntry::start_pending`.
    let pending = target.start_pending();
    Some((pending, target.cell.load().state()))
}

/// The gate's rule, given how each target is seen (`None`: not on the board yet, as
/// during a reload, which publishes the board after it created the programs).
pub(super) fn verdict(deps: &Deps, look: impl Fn(&str) -> Option<Seen>) -> Verdict {
    let mut waiting = Vec::new();
    for (kind, name) in deps.all() {
        let Some((pending, state)) = look(name) else {
            waiting.push(name.to_owned());
            continue;
        };
        match state {
            ProcessState::Running => {}
            ProcessState::Starting | ProcessState::Stopping | ProcessState::Backoff => {
                waiting.push(name.to_owned())
            }
            ProcessState::Stopped | ProcessState::Exited | ProcessState::Failed => {
                if pending {
                    waiting.push(name.to_owned());
                } else if kind == DepKind::Requires {
                    let what = match state {
                        ProcessState::Stopped => "is stopped",
                        ProcessState::Exited => "exited",
                        _ => "failed",
                    };
                    return Verdict::Fail(format!("requires {name}, which {what}"));
                }
            }
        }
    }
    if waiting.is_empty() {
        Verdict::Go
    } else {
        Verdict::Wait(waiting)
    }
}

/// How a wait ended without a spawn.
enum Ended {
    Failed(String),
    /// A command that ends the start arrived (it is in `Task::pending`), or the command
    /// channel closed.
    Interrupted,
}

impl Task {
    /// Waits at the gate. `Ok`: spawn now. `Err`: the start ends with this outcome (the
    /// program's state says why).
    pub(super) async fn gate(&mut self) -> Result<(), Outcome> {
        // The state says `starting` now: the start is no longer only pending.
        self.entry.start_taken();
        if self.entry.def().deps.is_empty() {
            return Ok(());
        }
        let mut board = self.shared.board.watch();
        // Subscribed before the first look, so that no change after it goes unseen.
        let events = self.shared.bus.subscribe(GATE_QUEUE);
        // A closed bus (shutdown) answers at once for ever: then the board and the commands
        // are all there is to wait on.
        let mut bus_open = true;
        let mut joined: Vec<Reply> = Vec::new();
        let mut shown: Vec<String> = Vec::new();
        let ended = loop {
            let programs: Arc<Programs> = board.borrow_and_update().clone();
            match verdict(&self.entry.def().deps, |n| seen(&programs, n)) {
                Verdict::Go => break None,
                Verdict::Fail(why) => break Some(Ended::Failed(why)),
                Verdict::Wait(names) => {
                    if names != shown {
                        self.show_waiting(names.clone());
                        shown = names;
                    }
                }
            }
            tokio::select! {
                r = events.recv(), if bus_open => bus_open = !matches!(r, Recv::Closed),
                // The sender lives as long as `Shared`, which outlives this task.
                _ = board.changed() => {}
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Start(reply)) => {
                        // Taken up by this start: no longer on its way.
                        self.entry.start_taken();
                        joined.push(reply);
                    }
                    Some(Command::Reconfigure(def, reply)) => {
                        // Not spawned yet: the new definition simply applies to this start.
                        self.entry.set_def(def);
                        let _ = reply.send(Ok(Done::Done));
                    }
                    Some(other) => {
                        self.pending = Some(other);
                        break Some(Ended::Interrupted);
                    }
                    None => break Some(Ended::Interrupted),
                },
            }
        };
        if !shown.is_empty() {
            self.show_waiting(Vec::new());
        }
        let result = match ended {
            None => Ok(()),
            Some(Ended::Failed(why)) => {
                tracing::warn!(process = %self.entry.name, cause = %why, "not started");
                let mut info = (**self.entry.info.load()).clone();
                info.last_error = Some(why.clone());
                info.next_attempt = None;
                self.entry.info.store(Arc::new(info));
                self.set_state_because(ProcessState::Failed, None, Some(why.clone()));
                Err(Err(Failure::Start(why)))
            }
            Some(Ended::Interrupted) => {
                let what = shown.join(", ");
                Err(Err(Failure::Interrupted(format!(
                    "the start was cancelled while it waited for {what}"
                ))))
            }
        };
        // Starts that arrived during the wait share its end: a spawn to come is reported
        // as done (its failure, if any, shows in the status).
        for reply in joined {
            let _ = reply.send(match &result {
                Ok(()) => Ok(Done::Done),
                Err(o) => o.clone(),
            });
        }
        result
    }

    fn show_waiting(&self, names: Vec<String>) {
        let mut info = (**self.entry.info.load()).clone();
        info.waiting_for = names;
        self.entry.info.store(Arc::new(info));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn board(es: &[(&str, bool, ProcessState)]) -> BTreeMap<String, Seen> {
        es.iter()
            .map(|(n, p, s)| (n.to_string(), (*p, *s)))
            .collect()
    }

    fn deps(requires: &[&str], wants: &[&str], after: &[&str]) -> Deps {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Deps {
            requires: v(requires),
            wants: v(wants),
            after: v(after),
        }
    }

    fn check(d: &Deps, b: &BTreeMap<String, Seen>) -> Verdict {
        verdict(d, |n| b.get(n).copied())
    }

    #[test]
    fn waits_for_targets_on_their_way_up() {
        use ProcessState::*;
        let b = board(&[
            ("db", false, Starting),
            ("cache", false, Backoff),
            ("log", false, Running),
        ]);
        assert_eq!(
            check(&deps(&["db"], &["cache"], &["log"]), &b),
            Verdict::Wait(vec!["db".into(), "cache".into()])
        );
        let b = board(&[("db", false, Running), ("cache", false, Running)]);
        assert_eq!(check(&deps(&["db"], &["cache"], &[]), &b), Verdict::Go);
    }

    #[test]
    fn a_required_target_down_for_good_fails_the_start() {
        use ProcessState::*;
        for (state, words) in [
            (Failed, "requires db, which failed"),
            (Exited, "requires db, which exited"),
            (Stopped, "requires db, which is stopped"),
        ] {
            let b = board(&[("db", false, state)]);
            assert_eq!(
                check(&deps(&["db"], &[], &[]), &b),
                Verdict::Fail(words.into())
            );
            // Wanted or ordered after only: released.
            assert_eq!(check(&deps(&[], &["db"], &["db"]), &b), Verdict::Go);
            // A start on its way: waited for.
            let b = board(&[("db", true, state)]);
            assert_eq!(
                check(&deps(&["db"], &[], &[]), &b),
                Verdict::Wait(vec!["db".into()])
            );
        }
    }

    #[test]
    fn an_unpublished_target_is_waited_for() {
        assert_eq!(
            check(&deps(&[], &[], &["db"]), &board(&[])),
            Verdict::Wait(vec!["db".into()])
        );
    }
}
