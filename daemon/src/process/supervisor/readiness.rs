//! The supervisor's side of readiness and health: what a run needs before its spawn (a
//! notify socket, its variables), whether it is `running` at once or `starting` until its
//! watcher says ready, and what the watcher's notes do to the program's status. A failed
//! run (not ready in time, a missed watchdog, failing health checks) is stopped like a
//! crash: the restart policy decides, with its backoff and start limit, and the reason
//! goes into `last_error` and the state-changed events.

use super::watch::notify::NotifySocket;
use super::watch::{Note, Spec, Watch};
use super::{ExitKind, SETTLE_LIMIT, Task, stop};
use crate::config::{ProcessDef, Ready};
use brummer_proto::ProcessState;
use brummer_proto::events::Event;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a run gets before its spawn.
pub(super) struct Prepared {
    notify: Option<Arc<NotifySocket>>,
    /// Variables set after the program's own `env` (NOTIFY_SOCKET, WATCHDOG_USEC).
    pub env: Vec<(OsString, OsString)>,
    log_from: u64,
}

impl Prepared {
    /// The run's notify socket, for systemd's descriptor store.
    pub(super) fn notify_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.notify.as_deref().map(NotifySocket::as_fd)
    }
}

impl Task {
    /// Makes what the next run needs before its spawn; the error is the start failure.
    pub(super) fn prepare_run(&self, def: &ProcessDef) -> Result<Prepared, String> {
        let mut env = Vec::new();
        let notify = if def.ready == Ready::Notify {
            let owner = def
                .user
                .as_ref()
                .map(|u| (u.uid, def.group.as_ref().map_or(u.gid, |g| g.gid)));
            let s =
                NotifySocket::bind(&self.shared.notify_dir, owner).map_err(|e| e.to_string())?;
            env.push(s.env());
            if let Some(w) = def.watchdog {
                // WATCHDOG_PID is left unset: the pid is known only after the spawn, and
                // without it sd_watchdog_enabled() holds for every process of the tree,
                // as NotifyAccess=all accepts pings from all of them.
                env.push(("WATCHDOG_USEC".into(), w.as_micros().to_string().into()));
            }
            Some(Arc::new(s))
        } else {
            None
        };
        Ok(Prepared {
            notify,
            env,
            log_from: self.entry.log.ring.next_seq(),
        })
    }

    /// After the spawn of `pid`: `running` at once, or `starting` (with its pid) until the
    /// watcher says ready. Starts the watcher when there is something to watch.
    pub(super) fn watch_run(&mut self, prepared: Prepared, pid: i32, def: Arc<ProcessDef>) {
        let ready = def.ready == Ready::Started;
        self.watch = Watch::start(
            Spec {
                def,
                pid,
                generation: self.generation as u32,
                log: self.entry.log.clone(),
                log_from: prepared.log_from,
                notify: prepared.notify,
                shared: self.shared.clone(),
                spawned: tokio::time::Instant::now(),
                ready,
            },
            &self.shutdown,
        );
        let state = if ready {
            ProcessState::Running
        } else {
            ProcessState::Starting
        };
        self.set_state(state, Some(pid as u32));
    }

    /// A run adopted from the previous image (re-exec), with the notify socket it handed
    /// over: the watcher starts again, its timers (ready_timeout, watchdog) from now. A
    /// notify program whose socket did not come along counts as ready.
    pub(super) fn rewatch_adopted(&mut self, notify: Option<(std::os::fd::OwnedFd, PathBuf)>) {
        let Some(child) = &self.child else {
            return;
        };
        let pid = child.pid;
        let def = self.entry.def();
        let notify = notify.and_then(|(fd, path)| match NotifySocket::adopt(fd, path) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(process = %self.entry.name, cause = %e, "cannot watch the handed-over notify socket");
                None
            }
        });
        let starting = self.entry.cell.load().state() == ProcessState::Starting;
        let ready = !starting
            || match def.ready {
                Ready::Started => true,
                Ready::Notify => notify.is_none(),
                Ready::Probe(_) => false,
            };
        self.watch = Watch::start(
            Spec {
                def,
                pid,
                generation: self.generation as u32,
                log: self.entry.log.clone(),
                log_from: self.entry.log.ring.next_seq(),
                notify,
                shared: self.shared.clone(),
                spawned: tokio::time::Instant::now(),
                ready,
            },
            &self.shutdown,
        );
        if starting && ready {
            self.set_state(ProcessState::Running, Some(pid as u32));
        }
    }

    /// Acts on a note of the run's watcher (`None`: it ended).
    pub(super) async fn note(&mut self, note: Option<Note>) {
        let Some(note) = note else {
            self.watch = None;
            return;
        };
        match note {
            Note::Ready => {
                if let Some(pid) = self.child.as_ref().map(|c| c.pid as u32) {
                    tracing::info!(process = %self.entry.name, pid, "ready");
                    self.set_state(ProcessState::Running, Some(pid));
                }
            }
            Note::Status(text) => {
                let text = Some(text).filter(|t| !t.is_empty());
                let mut info = (**self.entry.info.load()).clone();
                if info.status_text == text {
                    return;
                }
                info.status_text = text.clone();
                self.entry.info.store(Arc::new(info));
                self.shared.bus.publish(Event::StatusText {
                    process: self.entry.name.to_string(),
                    text,
                });
            }
            Note::Probe(result) => {
                let mut info = (**self.entry.info.load()).clone();
                info.last_probe = Some(result);
                self.entry.info.store(Arc::new(info));
            }
            Note::Fail(reason) => self.fail_run(reason).await,
        }
    }

    /// Stops a run that failed while its process lived, then lets the restart policy
    /// decide as after a crash. A run that never became ready counts as unstable whatever
    /// its age, so its restarts back off.
    async fn fail_run(&mut self, reason: String) {
        self.watch = None;
        let Some(child) = self.child.take() else {
            return;
        };
        let was_ready = self.entry.cell.load().state() == ProcessState::Running;
        tracing::warn!(process = %self.entry.name, pid = child.pid, reason = %reason, "run failed; stopping it");
        let mut info = (**self.entry.info.load()).clone();
        info.last_error = Some(reason.clone());
        self.entry.info.store(Arc::new(info));
        self.set_state_because(
            ProcessState::Stopping,
            Some(child.pid as u32),
            Some(reason.clone()),
        );
        let def = self.entry.def();
        let result = stop::stop_tree(
            &child,
            &self.shared.procs,
            def.stop_signal,
            def.stop_timeout,
        )
        .await;
        if let Some(leaf) = &child.leaf {
            leaf.end().await;
        }
        self.shared.children.untrack(child.pid);
        self.capture
            .settle(self.generation as u32, SETTLE_LIMIT)
            .await;
        let uptime = if was_ready {
            child.started.elapsed()
        } else {
            Duration::ZERO
        };
        let mut info = (**self.entry.info.load()).clone();
        match result {
            Ok(kind) => {
                info.exit_code = kind.code();
                info.exit_signal = kind.signal();
            }
            Err(e) => {
                info.last_error = Some(format!("{reason}; stop incomplete: {e}"));
            }
        }
        self.entry.info.store(Arc::new(info));
        // However the program ended on the stop signal, the run failed: `on-failure`
        // restarts it, `never` leaves it failed.
        self.decide_because(ExitKind::Signal(libc::SIGKILL), uptime, Some(reason))
            .await;
    }
}
