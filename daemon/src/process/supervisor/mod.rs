//! One supervisor task per program: it owns the child, runs the state machine, and is the
//! only writer of the program's `StatusCell` and `ProcessInfo`. Commands (start, stop,
//! restart, reconfigure, remove) arrive over a bounded channel, each with a reply sender
//! (`process::command`). Reads never come here.

mod children;
mod contain;
mod gate;
pub mod leftover;
mod machine;
pub(crate) mod procfs;
mod procscan;
mod readiness;
pub mod readopt;
mod spawn;
mod stop;
mod takeover;
mod watch;

pub use children::Children;
pub use machine::ExitKind;
pub use procscan::ProcScanner;
pub use spawn::base_env;
pub use takeover::Adopted;

use super::board::Board;
use super::command::{Command, Done, Failure, Outcome};
use super::entry::{ProcessEntry, ProcessInfo};
use crate::desired::Desired;
use crate::logs::capture::{CaptureHandle, Source};
use crate::shutdown::{Later, Shutdown};
use brummer_core::{EventBus, Hot};
use brummer_proto::ProcessState;
use brummer_proto::events::Event;
use machine::{Decision, RestartState};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Semaphore, mpsc};

/// What every supervisor task shares.
pub struct Shared {
    pub children: Children,
    pub bus: Arc<EventBus<Event>>,
    pub base_env: Vec<(OsString, OsString)>,
    /// /proc scans shared by every stop (a shutdown stops all programs at once).
    pub procs: ProcScanner,
    /// The runtime state: every change of child is recorded there (`set_state`).
    pub desired: Arc<Desired>,
    /// Every program, for the start gate (`gate`).
    pub board: Board,
    /// Where the notify sockets of `ready = "notify"` programs are made.
    pub notify_dir: PathBuf,
    /// Probes (exec, http, tcp) running at once, across all programs.
    pub probes: Semaphore,
}

impl Shared {
    /// The probe limit every program shares.
    pub fn probe_limit() -> Semaphore {
        Semaphore::new(watch::probe::CONCURRENT_PROBES)
    }
}

/// The folder of the notify sockets of the daemon listening on `socket`: beside it, named
/// after it (`brummer.sock` -> `brummer.notify/`), as its runtime state file is.
pub fn notify_dir(socket: &std::path::Path) -> PathBuf {
    let stem = socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "brummer".into());
    socket.with_file_name(format!("{stem}.notify"))
}

/// How long a stop waits for the stopped run's output pipes to end. Only a descendant that
/// escaped the stop (a new session, reparented away) holds one longer; its lines are
/// still captured, later.
const SETTLE_LIMIT: Duration = Duration::from_millis(250);

/// A running child: its pid and the pidfd that tells when it exits.
pub struct Child {
    pub pid: i32,
    pub pidfd: AsyncFd<OwnedFd>,
    started: Instant,
    /// Its cgroup, where brummerd has cgroup containment.
    leaf: Option<contain::RunLeaf>,
}

impl Child {
    /// Waits until the child exits and reaps it (waitid on the pidfd: no pid reuse race,
    /// no SIGCHLD). Cancel-safe: nothing is consumed until the reap succeeds.
    pub async fn wait_exit(&self) -> ExitKind {
        loop {
            let mut guard = match self.pidfd.readable().await {
                Ok(g) => g,
                Err(_) => return ExitKind::Code(-1),
            };
            match rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.get_ref().as_fd()),
                rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
            ) {
                Ok(Some(st)) => {
                    return match (st.exit_status(), st.terminating_signal()) {
                        (_, Some(sig)) => ExitKind::Signal(sig),
                        (Some(code), None) => ExitKind::Code(code),
                        (None, None) => ExitKind::Code(-1),
                    };
                }
                Ok(None) => guard.clear_ready(),
                // ECHILD: not our child (re-adopted after a crash of brummerd, its parent
                // is another process now): the pidfd says it ended, not how.
                Err(_) => return ExitKind::Unknown,
            }
        }
    }
}

/// How a supervisor task begins.
pub enum Begin {
    /// A new program: started at once when `autostart`.
    Fresh { autostart: bool },
    /// A program the previous brummerd image handed over (re-exec): its child, if any, is
    /// still running and still ours.
    Adopted(Box<Adopted>),
}

/// Starts the supervisor task of one program.
pub fn spawn_task(
    entry: Arc<ProcessEntry>,
    rx: mpsc::Receiver<Command>,
    capture: CaptureHandle,
    shared: Arc<Shared>,
    begin: Begin,
    shutdown: &Shutdown,
    later: Option<&mut Later>,
) {
    if matches!(begin, Begin::Fresh { autostart: true }) {
        entry.start_asked();
    }
    let mut task = Task {
        entry,
        rx,
        pending: None,
        shared,
        capture,
        restart: RestartState::default(),
        child: None,
        retry_at: None,
        generation: 0,
        restarts: 0,
        rng: seed(),
        watch: None,
        shutdown: shutdown.clone(),
        stored: Vec::new(),
        record_adopted: None,
    };
    let autostart = match begin {
        Begin::Fresh { autostart } => autostart,
        Begin::Adopted(a) => {
            let notify = task.adopt(*a);
            task.rewatch_adopted(notify);
            false
        }
    };
    // Boxed once here: the future is large, and unboxed it would be copied whole at every
    // move on its way into the runtime (into `later`, out of it, into the task).
    let run = Box::pin(task.run(autostart));
    match later {
        Some(later) => {
            let shutdown = shutdown.clone();
            later.push(move || {
                shutdown.spawn(run);
            });
        }
        None => {
            shutdown.spawn(run);
        }
    }
}

struct Task {
    entry: Arc<ProcessEntry>,
    rx: mpsc::Receiver<Command>,
    /// A command that ended a start waiting at the gate, handled next.
    pending: Option<Command>,
    shared: Arc<Shared>,
    capture: CaptureHandle,
    restart: RestartState,
    child: Option<Child>,
    /// Backoff: when the next automatic start is due.
    retry_at: Option<tokio::time::Instant>,
    generation: u64,
    restarts: u32,
    rng: u64,
    /// The current run's watcher (readiness, watchdog, health); dropped with the run.
    watch: Option<watch::Watch>,
    /// For the watchers this task starts.
    shutdown: Shutdown,
    /// The names of the running child's descriptors in systemd's store (`fdstore`), for
    /// its runtime record.
    stored: Vec<String>,
    /// An adopted child's runtime record is still to be written (by the task, first thing:
    /// not on the path to the first answer after a re-exec), with its start time when the
    /// handover carried it (else it is read from /proc).
    record_adopted: Option<Option<u64>>,
}

enum Wake {
    Cmd(Option<Command>),
    Exit(ExitKind),
    Retry,
    Note(Option<watch::Note>),
}

impl Task {
    async fn run(mut self, autostart: bool) {
        if let Some(start) = self.record_adopted.take() {
            self.record_adopted(start);
        }
        if autostart && let Err(e) = self.start(true).await {
            tracing::warn!(process = %self.entry.name, cause = %e, "autostart failed");
        }
        loop {
            if let Some(cmd) = self.pending.take() {
                if !self.command(cmd).await {
                    return;
                }
                continue;
            }
            let wake = tokio::select! {
                c = self.rx.recv() => Wake::Cmd(c),
                k = wait_opt(self.child.as_ref()), if self.child.is_some() => Wake::Exit(k),
                _ = sleep_opt(self.retry_at), if self.retry_at.is_some() => Wake::Retry,
                n = next_note(self.watch.as_mut()), if self.watch.is_some() => Wake::Note(n),
            };
            match wake {
                Wake::Cmd(Some(cmd)) => {
                    if !self.command(cmd).await {
                        return;
                    }
                }
                Wake::Cmd(None) => {
                    // Nobody waits for an answer; a failure is in the program's status.
                    let _ = self.stop().await;
                    return;
                }
                Wake::Exit(k) => self.exited(k).await,
                Wake::Note(n) => self.note(n).await,
                Wake::Retry => {
                    self.retry_at = None;
                    // A failed automatic start applies the restart policy itself.
                    let _ = self.start(false).await;
                }
            }
        }
    }

    /// Handles one command; false ends the task.
    async fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Start(reply) => {
                let r = self.start(true).await;
                let _ = reply.send(r);
            }
            Command::Stop(reply) => {
                let r = self.stop().await;
                let _ = reply.send(r);
            }
            Command::Restart(reply) => {
                let r = match self.stop().await {
                    Ok(_) => self.start(true).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Reconfigure(def, reply) => {
                let active = self.child.is_some() || self.retry_at.is_some();
                // New dependencies alone order the next start; the running child stays.
                let r = if active && !def.same_but_deps(&self.entry.def()) {
                    let stopped = self.stop().await;
                    self.entry.set_def(def);
                    match stopped {
                        Ok(_) => self.start(true).await,
                        Err(e) => Err(e),
                    }
                } else {
                    self.entry.set_def(def);
                    Ok(Done::Done)
                };
                let _ = reply.send(r);
            }
            Command::Remove(reply) => {
                let r = self.stop().await;
                let _ = reply.send(r);
                return false;
            }
            Command::Detach(reply) => {
                let _ = reply.send(self.detach());
                return false;
            }
        }
        true
    }

    /// Spawns the child. `explicit`: asked for by a user (resets restart counters) rather
    /// than by the restart policy.
    async fn start(&mut self, explicit: bool) -> Outcome {
        if self.child.is_some() {
            self.entry.start_taken();
            return Ok(Done::AlreadyRunning);
        }
        if explicit {
            self.restart.reset();
            self.restarts = 0;
            self.retry_at = None;
        }
        self.set_state(ProcessState::Starting, None);
        if let Err(outcome) = self.gate().await {
            return outcome;
        }
        let def = self.entry.def();
        let prepared = match self.prepare_run(&def) {
            Ok(p) => p,
            Err(e) => return self.spawn_failed(e, explicit).await,
        };
        let leaf = match contain::RunLeaf::prepare(&def).await {
            Ok(l) => l,
            Err(e) => return self.spawn_failed(e, explicit).await,
        };
        let procs = match leaf
            .as_ref()
            .map(|l| l.leaf.procs_for_writing())
            .transpose()
        {
            Ok(fd) => fd,
            Err(e) => {
                return self
                    .spawn_failed(
                        format!("cannot open its cgroup's cgroup.procs: {e}"),
                        explicit,
                    )
                    .await;
            }
        };
        match spawn::spawn(
            &def,
            &self.shared.base_env,
            &prepared.env,
            &self.shared.children,
            procs.as_ref(),
        ) {
            Ok(s) => {
                self.generation += 1;
                // Kept by systemd before anything can go wrong with them here: a crash of
                // brummerd from now on leaves this run to be re-adopted.
                let mut keep = vec![
                    (crate::fdstore::STDOUT, s.stdout.as_fd()),
                    (crate::fdstore::STDERR, s.stderr.as_fd()),
                    (crate::fdstore::PIDFD, s.pidfd.as_fd()),
                ];
                keep.extend(prepared.notify_fd().map(|fd| (crate::fdstore::NOTIFY, fd)));
                self.stored = crate::fdstore::store(&self.entry.name, &keep);
                let pidfd = match crate::fd::watch_readable(s.pidfd) {
                    Ok(fd) => fd,
                    Err(e) => {
                        // Cannot watch it: kill it rather than leave an unsupervised child.
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(s.pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        return self
                            .spawn_failed(format!("cannot watch pid {}: {e}", s.pid), explicit)
                            .await;
                    }
                };
                if let Err(e) = self.capture.attach(Source {
                    stdout: s.stdout,
                    stderr: s.stderr,
                    pid: s.pid as u32,
                    generation: self.generation as u32,
                }) {
                    tracing::error!(process = %self.entry.name, cause = e, "output of this run is not captured");
                }
                let now = SystemTime::now();
                self.child = Some(Child {
                    pid: s.pid,
                    pidfd,
                    started: Instant::now(),
                    leaf,
                });
                // exit_code/exit_signal describe the last run that ended; a new run keeps
                // them (status shows how the previous run ended, e.g. after a restart).
                // An automatic restart keeps the last error (why it restarted) and the
                // last probe result; a start by hand forgives them.
                let last = self.entry.info.load_full();
                self.entry.info.store(Arc::new(ProcessInfo {
                    generation: self.generation,
                    started_at: Some(now),
                    started_mono: Some(Instant::now()),
                    exit_code: last.exit_code,
                    exit_signal: last.exit_signal,
                    last_error: last.last_error.clone().filter(|_| !explicit),
                    last_probe: last.last_probe.clone(),
                    ..Default::default()
                }));
                self.watch_run(prepared, s.pid, def.clone());
                tracing::info!(process = %self.entry.name, pid = s.pid, "started");
                Ok(Done::Done)
            }
            Err(e) => self.spawn_failed(e.to_string(), explicit).await,
        }
    }

    async fn spawn_failed(&mut self, err: String, explicit: bool) -> Outcome {
        tracing::warn!(process = %self.entry.name, cause = %err, "cannot start");
        let mut info = (**self.entry.info.load()).clone();
        info.last_error = Some(err.clone());
        info.next_attempt = None;
        self.entry.info.store(Arc::new(info));
        if explicit {
            self.set_state_because(ProcessState::Failed, None, Some(err.clone()));
        } else {
            // An automatic restart that cannot spawn counts as a crash at once.
            self.decide(ExitKind::Code(127), Duration::ZERO).await;
        }
        Err(Failure::Start(err))
    }

    /// The child ended on its own.
    async fn exited(&mut self, kind: ExitKind) {
        let Some(child) = self.child.take() else {
            return;
        };
        self.watch = None;
        self.shared.children.untrack(child.pid);
        self.forget_stored();
        let uptime = child.started.elapsed();
        let oom = child.leaf.as_ref().and_then(contain::RunLeaf::oom_report);
        if let Some(leaf) = &child.leaf {
            leaf.end().await;
        }
        let mut info = (**self.entry.info.load()).clone();
        info.exit_code = kind.code();
        info.exit_signal = kind.signal();
        if kind == ExitKind::Unknown {
            info.last_error = Some(
                "exit status unknown: it ended while brummerd was not its parent (re-adopted after a crash of brummerd)".into(),
            );
        }
        if let Some(why) = &oom {
            info.last_error = Some(why.clone());
        }
        self.entry.info.store(Arc::new(info));
        tracing::info!(process = %self.entry.name, pid = child.pid, exit = ?kind, oom = oom.is_some(), "exited");
        drop(child);
        match oom {
            // An OOM kill fails the run even when the main process then exited 0 (the
            // killer's victim was another of its processes).
            Some(why) => {
                let kind = if kind.success() {
                    ExitKind::Signal(libc::SIGKILL)
                } else {
                    kind
                };
                self.decide_because(kind, uptime, Some(why)).await
            }
            None => self.decide(kind, uptime).await,
        }
    }

    /// Applies the restart policy to an exit.
    async fn decide(&mut self, kind: ExitKind, uptime: Duration) {
        self.decide_because(kind, uptime, None).await
    }

    /// [`decide`](Self::decide) for a run that failed for `reason` (readiness, watchdog,
    /// health), which the state-changed event carries; such a run is never just `exited`.
    async fn decide_because(&mut self, kind: ExitKind, uptime: Duration, reason: Option<String>) {
        let def = self.entry.def();
        let jitter = self.next_jitter();
        let decision = self.restart.on_exit(
            def.restart,
            &def.backoff,
            &def.start_limit,
            kind,
            uptime,
            Instant::now(),
            jitter,
        );
        match decision {
            Decision::Restart(delay) => {
                self.restarts = self.restarts.saturating_add(1);
                if delay.is_zero() {
                    // Box: start -> spawn_failed -> decide -> start recursion.
                    let _ = Box::pin(self.start(false)).await;
                } else {
                    let mut info = (**self.entry.info.load()).clone();
                    info.next_attempt = Some(SystemTime::now() + delay);
                    self.entry.info.store(Arc::new(info));
                    self.retry_at = Some(tokio::time::Instant::now() + delay);
                    self.set_state_because(ProcessState::Backoff, None, reason);
                }
            }
            Decision::Exited if reason.is_some() => {
                self.set_state_because(ProcessState::Failed, None, reason)
            }
            Decision::Exited => self.set_state(ProcessState::Exited, None),
            Decision::Failed => {
                let mut info = (**self.entry.info.load()).clone();
                let mut why = format!(
                    "restarted {} times within {}; giving up (start it again with: brummerctl start {})",
                    def.start_limit.burst,
                    humantime::format_duration(def.start_limit.interval),
                    self.entry.name
                );
                if let Some(r) = &reason {
                    why.push_str(&format!("; the last run: {r}"));
                }
                info.last_error = Some(why.clone());
                self.entry.info.store(Arc::new(info));
                self.set_state_because(ProcessState::Failed, None, Some(why));
            }
        }
    }

    /// Stops the child and everything it started.
    async fn stop(&mut self) -> Outcome {
        if self.retry_at.take().is_some() {
            // No attempt is due any more: status must not count down to one (issue 17).
            let mut info = (**self.entry.info.load()).clone();
            info.next_attempt = None;
            self.entry.info.store(Arc::new(info));
            self.set_state(ProcessState::Stopped, None);
            return Ok(Done::Done);
        }
        self.watch = None;
        let Some(child) = self.child.take() else {
            let state = self.entry.cell.load().state();
            if state != ProcessState::Stopped {
                self.set_state(ProcessState::Stopped, None);
            }
            // `starting` without a child: a start that waited at the gate, now stopped.
            return Ok(if state == ProcessState::Starting {
                Done::Done
            } else {
                Done::AlreadyStopped
            });
        };
        self.set_state(ProcessState::Stopping, Some(child.pid as u32));
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
        self.forget_stored();
        // The tree is gone, so its pipes end: wait for their last lines, so that a stop
        // that returned has them counted and `logs` shows them.
        self.capture
            .settle(self.generation as u32, SETTLE_LIMIT)
            .await;
        let mut info = (**self.entry.info.load()).clone();
        let reply = match result {
            Ok(kind) => {
                info.exit_code = kind.code();
                info.exit_signal = kind.signal();
                Ok(Done::Done)
            }
            Err(e) => {
                let failure = Failure::Stop(e.to_string());
                info.last_error = Some(failure.to_string());
                Err(failure)
            }
        };
        info.next_attempt = None;
        self.entry.info.store(Arc::new(info));
        self.set_state(ProcessState::Stopped, None);
        tracing::info!(process = %self.entry.name, pid = child.pid, "stopped");
        reply
    }

    /// The run ended: its descriptors leave systemd's store.
    fn forget_stored(&mut self) {
        if !self.stored.is_empty() {
            self.stored.clear();
            crate::fdstore::remove(&self.entry.name);
        }
    }

    /// Publishes a state change: cell first (what readers see), then the event.
    fn set_state(&mut self, new: ProcessState, pid: Option<u32>) {
        self.set_state_because(new, pid, None);
    }

    /// [`set_state`](Self::set_state) with the reason the event carries.
    fn set_state_because(&mut self, new: ProcessState, pid: Option<u32>, reason: Option<String>) {
        let old = self.entry.cell.load().hot();
        self.entry.cell.store(Hot {
            state: new,
            pid,
            restarts: self.restarts,
            generation: self.generation as u32,
        });
        if old.pid != pid {
            // For the next brummerd, should this one die (never waits on the disk).
            let run = pid
                .and_then(|p| leftover::record(p, self.generation, &self.entry.def()))
                .map(|mut r| {
                    r.fds = self.stored.clone();
                    r
                });
            self.shared.desired.set_run(&self.entry.name, run);
        }
        if old.state != new || old.pid != pid {
            let info = self.entry.info.load();
            self.shared.bus.publish(Event::StateChanged {
                process: self.entry.name.to_string(),
                old: old.state,
                new,
                pid,
                exit_code: info.exit_code.filter(|_| !new.is_active()),
                exit_signal: info.exit_signal.filter(|_| !new.is_active()),
                restarts: self.restarts,
                reason,
            });
        }
    }

    /// xorshift64*: jitter needs spread, not cryptographic quality.
    fn next_jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    // The pid once: `std::process::id` is a system call, and a re-exec seeds every
    // program's generator at once (the pid stays the same across one).
    static PID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    (t ^ *PID.get_or_init(|| u64::from(std::process::id())) << 32) | 1
}

async fn wait_opt(child: Option<&Child>) -> ExitKind {
    match child {
        Some(c) => c.wait_exit().await,
        None => std::future::pending().await,
    }
}

async fn next_note(w: Option<&mut watch::Watch>) -> Option<watch::Note> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
