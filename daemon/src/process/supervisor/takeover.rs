//! The supervisor's side of a re-exec: a task hands its state over without touching its
//! program ([`Task::detach`]), and the next image's task takes it back ([`Task::adopt`]).
//!
//! A detached task ends at once; its child keeps running and stays tracked (the orphan
//! reaper must not reap it before the next image waits on its pidfd). The adopting task
//! tracks it again before it can be reaped, and publishes the handed-over state as it was,
//! without an event: nothing changed for a reader.

use super::machine::RestartState;
use super::{Child, Task};
use crate::handover::{ChildFd, NotifyFd, Program};
use crate::process::command::Detached;
use crate::process::entry::{ProcessInfo, epoch_us};
use brummer_core::Hot;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// A handed-over program as the next image's supervisor task receives it.
pub struct Adopted {
    pub program: Program,
    /// Its child's pidfd, when it had a running child.
    pub pidfd: Option<OwnedFd>,
    /// How long ago the handover was written: added to every age in it.
    pub elapsed: Duration,
    /// The running child's notify socket and its path.
    pub notify: Option<(OwnedFd, std::path::PathBuf)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Task {
    /// Ends supervision without stopping anything: the state to hand over, and the capture
    /// task to take the pipes from (after this task has ended, so that no new pipe follows
    /// them).
    pub(super) fn detach(&mut self) -> Detached {
        let now = Instant::now();
        let hot = self.entry.cell.load().hot();
        let info = self.entry.info.load();
        let def = self.entry.def();
        let (attempts, ages) = self.restart.to_ages(now);
        let mut keep = Vec::new();
        let child = self.child.take().map(|c| {
            let age = now.saturating_duration_since(c.started);
            let pidfd = crate::fd::unwatch_for_exec(c.pidfd);
            let raw = pidfd.as_raw_fd();
            keep.push(pidfd);
            ChildFd {
                pid: c.pid,
                pidfd: raw,
                started_at_us: info.started_at.map(epoch_us).unwrap_or(0),
                age_ns: nanos(age),
                start_ticks: self.shared.desired.run_start(&self.entry.name, c.pid),
            }
        });
        let retry_in = self
            .retry_at
            .take()
            .map(|t| nanos(t.saturating_duration_since(tokio::time::Instant::now())));
        let notify = match self
            .watch
            .as_ref()
            .and_then(|w| w.notify())
            .map(|n| n.hand_over())
        {
            Some(Ok((fd, path))) => {
                let n = NotifyFd {
                    fd: fd.as_raw_fd(),
                    path,
                };
                keep.push(fd);
                Some(n)
            }
            Some(Err(e)) => {
                tracing::warn!(process = %self.entry.name, cause = %e, "cannot hand the notify socket over");
                None
            }
            None => None,
        };
        let program = Program {
            name: self.entry.name.to_string(),
            state: hot.state,
            restarts: self.restarts,
            generation: self.generation,
            child,
            retry_in_ns: retry_in,
            restart_attempts: attempts,
            restart_ages_ns: ages.into_iter().map(nanos).collect(),
            exit_code: info.exit_code,
            exit_signal: info.exit_signal,
            last_error: info.last_error.clone(),
            next_attempt_us: info.next_attempt.map(epoch_us),
            stop_signal: def.stop_signal,
            stop_timeout_ms: u64::try_from(def.stop_timeout.as_millis()).unwrap_or(u64::MAX),
            // Both filled in by the hand-over once the capture task has let go of its
            // pipes (`ops::reexec::hand_over`).
            pipes: Vec::new(),
            next_seq: 0,
            urls: self.entry.log.urls.load().as_ref().clone(),
            notify,
            status_text: info.status_text.clone(),
        };
        Detached {
            program,
            keep,
            capture: self.capture.clone(),
        }
    }

    /// Takes a handed-over program back: its child, its restart memory, its backoff timer
    /// and its status, published as they were.
    pub(super) fn adopt(&mut self, a: Adopted) -> Option<(OwnedFd, std::path::PathBuf)> {
        let p = a.program;
        let now = Instant::now();
        let age = |ns: u64| Duration::from_nanos(ns).saturating_add(a.elapsed);
        self.generation = p.generation;
        self.restarts = p.restarts;
        let ages: Vec<Duration> = p.restart_ages_ns.iter().map(|n| age(*n)).collect();
        self.restart = RestartState::from_ages(p.restart_attempts, &ages, now);
        self.retry_at = p.retry_in_ns.map(|ns| {
            tokio::time::Instant::now() + Duration::from_nanos(ns).saturating_sub(a.elapsed)
        });
        let mut started_mono = None;
        if let (Some(c), Some(pidfd)) = (&p.child, a.pidfd) {
            // Tracked before the first orphan scan of this image can see its zombie.
            self.shared.children.adopt(c.pid);
            let started = now.checked_sub(age(c.age_ns)).unwrap_or(now);
            match crate::fd::watch_readable(pidfd) {
                Ok(fd) => {
                    self.child = Some(Child {
                        pid: c.pid,
                        pidfd: fd,
                        started,
                        leaf: super::contain::RunLeaf::adopt(&self.entry.def()),
                    });
                    started_mono = Some(started);
                }
                Err(e) => {
                    tracing::error!(process = %p.name, pid = c.pid, cause = %e, "cannot watch the handed-over child; it is not supervised");
                    self.shared.children.untrack(c.pid);
                }
            }
        }
        let started_at = p
            .child
            .as_ref()
            .map(|c| UNIX_EPOCH + Duration::from_micros(c.started_at_us));
        self.entry.info.store(Arc::new(ProcessInfo {
            generation: p.generation,
            started_at,
            started_mono,
            exit_code: p.exit_code,
            exit_signal: p.exit_signal,
            next_attempt: p
                .next_attempt_us
                .map(|us| UNIX_EPOCH + Duration::from_micros(us))
                .filter(|_| self.retry_at.is_some()),
            last_error: p.last_error,
            status_text: p.status_text.filter(|_| self.child.is_some()),
            last_probe: None,
            waiting_for: Vec::new(),
        }));
        let (state, pid) = match &self.child {
            Some(c) => (p.state, Some(c.pid as u32)),
            // A child that could not be watched is not ours to report as running.
            None if p.state.is_active() && self.retry_at.is_none() => {
                (brummer_proto::ProcessState::Stopped, None)
            }
            None => (p.state, None),
        };
        self.entry.cell.store(Hot {
            state,
            pid,
            restarts: self.restarts,
            generation: self.generation as u32,
        });
        self.record_adopted = pid.map(|_| p.child.as_ref().and_then(|c| c.start_ticks));
        if pid.is_none() {
            self.shared.desired.set_run(&self.entry.name, None);
        }
        a.notify
    }

    /// Records the adopted child in this image's runtime state, which starts without
    /// children, so that a crash of this image finds it. `start`: its start time as the
    /// previous image recorded it (same pid, same process: an exec changes neither).
    pub(super) fn record_adopted(&mut self, start: Option<u64>) {
        let pid = self.entry.cell.load().hot().pid;
        if pid.is_some() && crate::fdstore::enabled() {
            // The same service: what the previous image stored is still there.
            let notify = self.watch.as_ref().and_then(|w| w.notify()).is_some();
            self.stored = [
                crate::fdstore::STDOUT,
                crate::fdstore::STDERR,
                crate::fdstore::PIDFD,
            ]
            .into_iter()
            .chain(notify.then_some(crate::fdstore::NOTIFY))
            .map(|k| crate::fdstore::name(&self.entry.name, k))
            .collect();
        }
        let run = pid
            .and_then(|p| match start {
                Some(start) => Some(super::leftover::record_known(
                    i32::try_from(p).ok()?,
                    start,
                    self.generation,
                    &self.entry.def(),
                )),
                None => super::leftover::record(p, self.generation, &self.entry.def()),
            })
            .map(|mut r| {
                r.fds = self.stored.clone();
                r
            });
        self.shared.desired.set_run(&self.entry.name, run);
    }
}
