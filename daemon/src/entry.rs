//! `ProcessEntry`: everything the daemon shares about one program. The registry maps names
//! to entries; readers (status, logs, follow) use the fields directly, without going
//! through the supervisor task, which is the only writer of `cell`, `info` and `def`.

use crate::config::ProcessDef;
use crate::logthread::ThreadWake;
use crate::supervisor::Command;
use arc_swap::ArcSwap;
use brummer_core::{LogRing, StatusCell};
use brummer_proto::methods::{LogCounters, ProcessStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};

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
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the disk log could not take (plus failed rotations). Written by the capture task.
    pub disk_errors: AtomicU64,
    /// Every line with a smaller seq is on disk or was lost to a disk error: a reader that
    /// misses a line in the ring may look for it on disk. Written by the capture task.
    pub disk_seq: AtomicU64,
    /// Segments rotated (this run of brummerd).
    pub rotations: AtomicU64,
    /// Lines the scanners did not see because the ring overwrote them first.
    pub scanner_skips: AtomicU64,
    /// Lines scanned.
    pub scanned: AtomicU64,
    /// Followers currently reading behind the ring (backfilled from disk).
    pub followers_behind: AtomicU64,
    /// Largest distance (lines) between a follower and the newest line, all time.
    pub follower_lag_max: AtomicU64,
    /// Lines followers could not get at all (gone from the ring and from disk).
    pub follower_missed: AtomicU64,
}

pub struct ProcessEntry {
    pub name: Arc<str>,
    /// The definition in force; swapped by the supervisor task on reload.
    pub def: ArcSwap<ProcessDef>,
    /// Hot status: one atomic load. Written only by the supervisor task.
    pub cell: StatusCell,
    /// Everything else about the last run. Written only by the supervisor task.
    pub info: ArcSwap<ProcessInfo>,
    /// In-memory log; its single writer lives in the capture task.
    pub ring: Arc<LogRing>,
    /// Woken (once per chunk) by the capture task when lines were added.
    pub log_notify: Arc<Notify>,
    /// The log thread the capture task runs on, and its followers' wake-up.
    pub thread: Arc<ThreadWake>,
    pub counters: Counters,
    /// URLs the scanner found in the output, oldest first, each once. Written by the scanner.
    pub urls: ArcSwap<Vec<String>>,
    /// Commands to the supervisor task. Bounded: a full channel is an error, not a wait.
    pub cmd: mpsc::Sender<Command>,
}

impl ProcessEntry {
    /// The status as `status` reports it, from one cell load and one snapshot load.
    pub fn status(&self) -> ProcessStatus {
        let hot = self.cell.load().hot();
        let info = self.info.load();
        let def = self.def.load();
        let stats = self.ring.stats();
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
            restart_policy: def.restart.as_str().to_string(),
            logs: LogCounters {
                lines: stats.lines,
                bytes: stats.bytes,
                ring_evicted: stats.evicted,
                disk_errors: self.counters.disk_errors.load(Ordering::Relaxed),
                rotations: self.counters.rotations.load(Ordering::Relaxed),
                scanned: self.counters.scanned.load(Ordering::Relaxed),
                scanner_skips: self.counters.scanner_skips.load(Ordering::Relaxed),
                followers_behind: self.counters.followers_behind.load(Ordering::Relaxed),
                follower_lag_max: self.counters.follower_lag_max.load(Ordering::Relaxed),
                follower_missed: self.counters.follower_missed.load(Ordering::Relaxed),
                disk_pending: self
                    .ring
                    .next_seq()
                    .saturating_sub(self.counters.disk_seq.load(Ordering::Acquire)),
            },
            urls: self.urls.load().as_ref().clone(),
        }
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
