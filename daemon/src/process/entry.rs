//! `ProcessEntry`: everything the daemon shares about one program. The registry maps names
//! to entries; readers (status, D-Bus properties) use the fields directly, without going
//! through the supervisor task, which is the only writer of `cell`, `info` and `def`
//! (the usage sampler is the only writer of `usage`).

use super::command::{Command, Failure, Outcome, Reply};
use super::usage::{self, Usage};
use crate::config::ProcessDef;
use crate::logs::ProcessLog;
use arc_swap::{ArcSwap, ArcSwapOption};
use brummer_core::StatusCell;
use brummer_proto::methods::{ProbeResult, ProcessStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Rich status fields, replaced as a whole (one `ArcSwap` store) by the supervisor task.
#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    pub generation: u64,
    pub started_at: Option<SystemTime>,
    pub started_mono: Option<Instant>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub next_attempt: Option<SystemTime>,
    pub last_error: Option<String>,
    /// STATUS= of a notify program (this run's), shown by `status`.
    pub status_text: Option<String>,
    /// The newest probe result (kept across runs, so that a restart still shows why).
    pub last_probe: Option<ProbeResult>,
    /// While the start waits at the gate: the programs it waits for.
    pub waiting_for: Vec<String>,
}

pub struct ProcessEntry {
    pub name: Arc<str>,
    /// The definition in force; swapped by the supervisor task on reload.
    def: ArcSwap<ProcessDef>,
    /// Hot status: one atomic load. Written only by the supervisor task.
    pub cell: StatusCell,
    /// Everything else about the last run. Written only by the supervisor task.
    pub info: ArcSwap<ProcessInfo>,
    /// The program's output: ring, disk counters, URLs found.
    pub log: Arc<ProcessLog>,
    /// Commands to the supervisor task. Bounded: a full channel is an error, not a wait.
    pub cmd: mpsc::Sender<Command>,
    /// The `enable`/`disable` override of `autostart` (`OVERRIDE_*`). Written by the
    /// enable operation after the override is on disk, read by status.
    enabled: AtomicU8,
    /// What the running program costs, from the last sample. Written only by the usage
    /// sampler (`usage::run`).
    pub usage: ArcSwapOption<Usage>,
    /// Starts asked for (by an operation or autostart) that the supervisor task has not
    /// taken up yet: a program that is `stopped` but about to start is "being started"
    /// for the starts that wait for it (`supervisor::gate`).
    starts_pending: AtomicU32,
}

const OVERRIDE_NONE: u8 = 0;
const OVERRIDE_ENABLED: u8 = 1;
const OVERRIDE_DISABLED: u8 = 2;

impl ProcessEntry {
    pub fn new(
        def: Arc<ProcessDef>,
        log: Arc<ProcessLog>,
        cmd: mpsc::Sender<Command>,
    ) -> ProcessEntry {
        ProcessEntry {
            name: Arc::from(def.name.as_str()),
            def: ArcSwap::new(def),
            cell: StatusCell::default(),
            info: ArcSwap::from_pointee(ProcessInfo::default()),
            log,
            cmd,
            enabled: AtomicU8::new(OVERRIDE_NONE),
            usage: ArcSwapOption::empty(),
            starts_pending: AtomicU32::new(0),
        }
    }

    /// A start of this program is on its way (called before the command is sent, for
    /// every program of an operation before any is sent, so that a dependent never sees
    /// its dependency `stopped` with the start not yet counted).
    pub fn start_asked(&self) {
        self.starts_pending.fetch_add(1, Ordering::SeqCst);
    }

    /// The supervisor task took up a start (its state shows it from now on), or the
    /// command never reached it. Every start asked for is taken once: a task that answers
    /// a start command without going through `start()` must call this.
    pub fn start_taken(&self) {
        let _ = self
            .starts_pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether a start is on its way. Read before the state: `start_taken` comes after the
    /// state says `starting`, so a reader that finds none pending finds that state.
    pub fn start_pending(&self) -> bool {
        self.starts_pending.load(Ordering::SeqCst) > 0
    }

    /// Sets (or clears) the `enable`/`disable` override.
    pub fn set_enabled_override(&self, on: Option<bool>) {
        let v = match on {
            None => OVERRIDE_NONE,
            Some(true) => OVERRIDE_ENABLED,
            Some(false) => OVERRIDE_DISABLED,
        };
        self.enabled.store(v, Ordering::Release);
    }

    /// Whether the program starts with brummerd: its override, else `autostart`.
    pub fn enabled(&self) -> bool {
        match self.enabled.load(Ordering::Acquire) {
            OVERRIDE_ENABLED => true,
            OVERRIDE_DISABLED => false,
            _ => self.def.load().autostart,
        }
    }

    pub fn def(&self) -> Arc<ProcessDef> {
        self.def.load_full()
    }

    /// Puts a reloaded definition in force, its log settings included. Only the supervisor
    /// task calls it, so the two stores cannot interleave with another writer's.
    pub fn set_def(&self, def: Arc<ProcessDef>) {
        self.log.settings.store(Arc::new(def.logs.clone()));
        self.def.store(def);
    }

    /// Sends a command to the supervisor task and waits for its reply. A full queue or a
    /// finished task is an error at once, never a wait on the queue.
    pub async fn send(&self, make: impl FnOnce(Reply) -> Command) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.cmd.try_send(make(tx)) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => Failure::Busy,
                mpsc::error::TrySendError::Closed(_) => Failure::Removed,
            });
        }
        rx.await.unwrap_or(Err(Failure::NoAnswer))
    }

    /// The last sample of the running child, if it is of this child (a sample outlives
    /// its run by up to one interval).
    pub fn usage(&self) -> Option<Arc<Usage>> {
        let pid = self.cell.load().pid()?;
        self.usage.load_full().filter(|u| u.pid == pid)
    }

    /// The status as `status` reports it, from one cell load and one snapshot load.
    pub fn status(&self) -> ProcessStatus {
        let hot = self.cell.load().hot();
        let info = self.info.load();
        let def = self.def.load();
        let running = hot.state.is_active() && hot.pid.is_some();
        ProcessStatus {
            name: self.name.to_string(),
            state: hot.state,
            pid: hot.pid,
            restarts: hot.restarts,
            generation: info.generation,
            exit_code: info.exit_code,
            exit_signal: info.exit_signal,
            started_at: info.started_at.map(rfc3339),
            started_at_us: info.started_at.map(epoch_us),
            uptime_secs: if running {
                info.started_mono.map(|t| t.elapsed().as_secs_f64())
            } else {
                None
            },
            next_attempt: info.next_attempt.map(rfc3339),
            last_error: info.last_error.clone(),
            autostart: def.autostart,
            enabled: self.enabled(),
            restart_policy: def.restart.as_str().to_string(),
            logs: self.log.counters(),
            urls: self.log.urls.load().as_ref().clone(),
            containment: Some(usage::containment().as_str().to_owned()),
            metrics: self
                .usage
                .load()
                .as_ref()
                .filter(|u| Some(u.pid) == hot.pid)
                .map(|u| u.to_wire()),
            ready: def.ready.kind().to_owned(),
            status_text: info.status_text.clone(),
            last_probe: info.last_probe.clone(),
            waiting_for: info.waiting_for.clone(),
            requires: def.deps.requires.clone(),
            wants: def.deps.wants.clone(),
            after: def.deps.after.clone(),
        }
    }
}

impl usage::Sampled for ProcessEntry {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn pid(&self) -> Option<u32> {
        self.cell.load().pid()
    }

    fn publish(&self, usage: Option<Arc<Usage>>) {
        self.usage.store(usage);
    }
}

pub fn epoch_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

pub fn rfc3339_us(us: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_micros(us))
}
