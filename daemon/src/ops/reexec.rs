//! `daemon-reexec`: brummerd replaces its own image with its binary on disk, in the same
//! process, and every program goes on as the new image's child (`handover` has the rules).
//!
//! A plane asks with [`reexec`]; the server's top loop runs [`check`] and answers, then
//! [`hand_over`] (every supervisor and capture task detaches, in parallel) and `execve`. The
//! next image calls [`adopt`] instead of `reload::install`.

use super::{Caller, OpError, may_change};
use crate::config::{self, CommandSpec, Config, Inputs, LoadOptions, ProcessDef};
use crate::handover::{self, Handover, Pipe, Program};
use crate::logs::ProcessLog;
use crate::logs::capture::{self, CaptureHandle};
use crate::process::Command;
use crate::process::supervisor::Adopted;
use crate::shutdown::Later;
use crate::state::State;
use brummer_proto::methods::ReexecResult;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// Asks the top loop to re-execute and waits for its answer, which comes before the
/// image is replaced. With it comes `Answered`: the plane fires it (or drops it) once the
/// answer is written to the caller, and the top loop waits for that before it executes.
pub async fn reexec(state: &State, caller: &Caller) -> Result<(ReexecResult, Answered), OpError> {
    may_change(state, caller)?;
    let (rx, answered) = state
        .request_reexec()
        .ok_or_else(|| OpError::ReexecRefused("a re-exec is already under way".into()))?;
    match rx.await {
        Ok(Ok(r)) => Ok((r, Answered(answered))),
        Ok(Err(msg)) => Err(OpError::ReexecRefused(msg)),
        Err(_) => Err(OpError::ShuttingDown),
    }
}

/// Tells the top loop that the answer to a re-exec is written (or will never be): fired by
/// [`Answered::done`], or when dropped.
pub struct Answered(tokio::sync::oneshot::Sender<()>);

impl Answered {
    pub fn done(self) {
        let _ = self.0.send(());
    }
}

/// What must hold before anything is handed over, so that a refused re-exec changes
/// nothing: the binary is there and executable, and the configuration the next image
/// will read loads. It is not parsed again when its files are the ones the configuration
/// in force was loaded from (`loaded`), byte for byte: that load succeeded.
pub fn check(binary: &Path, load: &LoadOptions, loaded: &Inputs) -> Result<Checked, String> {
    rustix::fs::access(binary, rustix::fs::Access::EXEC_OK).map_err(|e| {
        format!(
            "{} is not an executable file ({e}); reinstall brummer",
            binary.display()
        )
    })?;
    if config::unchanged(load, loaded) {
        return Ok(Checked::Unchanged);
    }
    config::load(load).map_err(|e| {
        format!("the configuration does not load, so the new image could not start:\n{e}")
    })?;
    Ok(Checked::Loaded)
}

/// How [`check`] found the configuration good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Its files are the ones the configuration in force was loaded from.
    Unchanged,
    /// Changed since, and loaded now.
    Loaded,
}

/// Detaches every program (in parallel: the supervisors, then the capture tasks of each log
/// thread at once) and returns what the next image needs, with the descriptors that must
/// stay open until `execve`. From here on nothing supervises or reads: the caller must
/// exec.
pub async fn hand_over(state: &State) -> (Handover, Vec<OwnedFd>) {
    state.logs().stop_scanning();
    // Every supervisor is asked first, then the answers are awaited: they detach in
    // parallel, and no task is spawned per program.
    let mut answers = Vec::new();
    for e in state.entries() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match e.cmd.try_send(Command::Detach(tx)) {
            Ok(()) => {}
            // Unlike a client's command (`ProcessEntry::send`, an error on a full queue),
            // the hand-over waits for room: a program left out would lose its child to
            // the next image, and the commands ahead of it are answered in turn. Waited
            // for aside, so that the other programs are asked meanwhile.
            Err(tokio::sync::mpsc::error::TrySendError::Full(cmd)) => {
                let queue = e.cmd.clone();
                tokio::spawn(async move {
                    // Closed: the command and its reply end are dropped, which the answer
                    // below reports.
                    let _ = queue.send(cmd).await;
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
        answers.push((e, rx));
    }
    let mut programs = Vec::new();
    let mut keep = Vec::new();
    let mut captures = Captures::new();
    let mut logs = Vec::new();
    for (entry, rx) in answers {
        match rx.await {
            Ok(d) => {
                let thread = &entry.log.thread;
                captures
                    .entry(thread.index)
                    .or_insert_with(|| (thread.handle.clone(), Vec::new()))
                    .1
                    .push((programs.len(), d.capture));
                logs.push(entry.log.clone());
                programs.push(d.program);
                keep.extend(d.keep);
            }
            Err(_) => {
                tracing::error!(process = %entry.name, "its supervisor ended before handing over; the next image does not adopt it");
            }
        }
    }
    take_pipes(captures, &mut programs, &logs, &mut keep).await;
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    let h = Handover {
        format: handover::FORMAT,
        from_version: brummer_proto::VERSION.to_string(),
        written_mono_ns: handover::mono_ns(),
        listener: None,
        unlink_socket: false,
        event_seq: state.bus().last_seq(),
        programs,
    };
    (h, keep)
}

/// The capture tasks of the detached programs, by log thread, each with its program's index.
type Captures = BTreeMap<usize, (Handle, Vec<(usize, CaptureHandle)>)>;

/// Gives each detached program its pipes, taken from the capture tasks of each log thread
/// at once (its supervisor has ended: no new pipe follows them), and then where its ring's
/// numbering goes on. `logs[i]` is `programs[i]`'s log.
async fn take_pipes(
    captures: Captures,
    programs: &mut [Program],
    logs: &[Arc<ProcessLog>],
    keep: &mut Vec<OwnedFd>,
) {
    let detaching: Vec<_> = captures
        .into_values()
        .map(|(thread, list)| thread.spawn(capture::detach_all(list)))
        .collect();
    for detached in detaching {
        let taken = detached.await.unwrap_or_else(|e| {
            // Its capture tasks are gone with it, and their pipes closed: nothing to hand over.
            tracing::error!(error = %e, "a log thread ended before giving back its programs' pipes; the next image adopts them without their output");
            Vec::new()
        });
        for (i, pipes) in taken {
            let Some(program) = programs.get_mut(i) else {
                continue;
            };
            for (fd, mut pipe) in pipes {
                pipe.fd = fd.as_raw_fd();
                keep.push(fd);
                program.pipes.push(pipe);
            }
        }
    }
    for (program, log) in programs.iter_mut().zip(logs) {
        // Read after its capture task let go: every line it stored is counted.
        program.next_seq = log.ring.next_seq();
    }
}

/// The first configuration, with the programs the previous image handed over adopted: a
/// handed-over program that is still configured keeps its child, state and log (its
/// definition is the one on disk now, in force from its next start, as systemd's
/// daemon-reexec does with unit files); one that is not is stopped; the others are new and
/// start when `autostart`.
///
/// `reexec`: the handover is a re-exec's, which says where each log goes on (not one made
/// from systemd's store after a crash). Returns the adopted programs' tasks, to be spawned
/// once the programs are published and the planes serve.
pub fn adopt(state: &State, config: &Config, h: Handover, reexec: bool) -> Later {
    let mut later = Later::default();
    let elapsed = h.elapsed();
    let mut handed: BTreeMap<String, Program> = h
        .programs
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut entries = Vec::new();
    let mut gone = Vec::new();
    for def in config.processes.values() {
        let entry = match handed.remove(&def.name) {
            Some(p) => take(state, def.clone(), p, elapsed, reexec, &mut later),
            None => state.add_process(def.clone(), &mut later),
        };
        entries.push((def.name.clone(), entry));
    }
    for (name, p) in handed {
        let mut def = ProcessDef::with_defaults(name.clone(), CommandSpec::Shell(String::new()));
        def.autostart = false;
        def.restart = crate::config::RestartPolicy::Never;
        def.stop_signal = p.stop_signal;
        def.stop_timeout = Duration::from_millis(p.stop_timeout_ms);
        gone.push(take(state, Arc::new(def), p, elapsed, reexec, &mut later));
    }
    let adopted = entries.len();
    state.publish(entries);
    tracing::info!(
        programs = adopted,
        from = %h.from_version,
        after = ?elapsed,
        "took over from the previous image"
    );
    // Stopped as a reload stops a removed program; never published.
    for e in gone {
        tracing::info!(process = %e.name, "no longer in the configuration: stopping it");
        let shutdown = state.shutdown().clone();
        later.push(move || {
            shutdown.spawn(async move {
                if let Err(err) = e.send(Command::Remove).await {
                    tracing::error!(process = %e.name, cause = %err, "stop failed");
                }
            });
        });
    }
    later
}

/// Adopts one handed-over program, taking ownership of its descriptors.
fn take(
    state: &State,
    def: Arc<ProcessDef>,
    mut p: Program,
    elapsed: Duration,
    reexec: bool,
    later: &mut Later,
) -> Arc<crate::process::ProcessEntry> {
    // SAFETY: `handover::take_from_env` read these numbers from the handover, which names
    // each descriptor once, and nothing else in this image has taken them.
    let pidfd = p.child.as_ref().map(|c| unsafe { handover::own(c.pidfd) });
    let pipes: Vec<(OwnedFd, Pipe)> = std::mem::take(&mut p.pipes)
        .into_iter()
        .map(|pipe| (unsafe { handover::own(pipe.fd) }, pipe))
        .collect();
    let notify = p
        .notify
        .take()
        .map(|n| (unsafe { handover::own(n.fd) }, n.path));
    state.adopt_process(
        def,
        Adopted {
            program: p,
            pidfd,
            elapsed,
            notify,
        },
        pipes,
        reexec,
        later,
    )
}
