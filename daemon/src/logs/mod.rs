//! The log plane: every program's output from its pipes to the ring, the disk and the
//! readers. [`LogPlane`] owns the log threads, the log directory, the per-program
//! [`ProcessLog`]s (a registry of their own, so that readers here never need the process
//! layer above) and the capture tasks, which it drains at shutdown.
//!
//! Data flow: `capture` (pipes -> lines -> ring, and the disk through `disk`) on a log
//! thread (`threads`); `read` finds lines by sequence number in the ring or on disk;
//! `follow` streams them to a sink it is given (no transport here); `scanner` reads every
//! ring for URLs and error lines and publishes them on the event bus.

pub mod capture;
mod defer;
pub mod disk;
pub mod follow;
pub mod merge;
mod persist;
pub mod read;
mod refill;
pub mod scanner;
pub mod threads;

use crate::config::{LogSettings, ProcessDef};
use crate::shutdown::{Later, Shutdown};
use arc_swap::{ArcSwap, ArcSwapOption};
use brummer_core::{LogRing, Registry, Snapshot};
use brummer_proto::methods::LogCounters;
use capture::CaptureHandle;
use disk::DiskLog;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use threads::{LogThreads, ThreadWake};
use tokio::sync::Notify;

/// Default size of each program's in-memory log ring.
pub const DEFAULT_RING_BYTES: usize = 1024 * 1024;

/// Counters of one program's log, each written by one task and read by `status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Failed disk operations: writes (each try while the disk fails), rotations, making
    /// the log again. Written by the capture task.
    pub disk_errors: AtomicU64,
    /// Lines that never reached the disk: the ring overwrote them while the disk failed.
    /// Written by the capture task.
    pub disk_lost_lines: AtomicU64,
    /// Every line with a smaller seq is on disk, lost to a disk error, or waiting in the
    /// ring for a failing disk: a reader that misses a line in the ring may look for it on
    /// disk. Written by the capture task.
    pub disk_seq: AtomicU64,
    /// The first line waiting in the ring for a failing disk; `u64::MAX` while the disk
    /// is healthy. Written by the capture task.
    pub disk_unwritten: AtomicU64,
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

/// One program's log as every reader and its capture task see it.
pub struct ProcessLog {
    pub name: Arc<str>,
    /// In-memory log; its single writer lives in the capture task.
    pub ring: Arc<LogRing>,
    /// The program's `[logs]` settings in force (rotation, scanning); replaced as a whole
    /// when a reload changes the program.
    pub settings: ArcSwap<LogSettings>,
    /// The log thread the capture task runs on, and its followers' wake-up.
    pub thread: Arc<ThreadWake>,
    pub counters: Counters,
    /// What fails on the disk log now (`status`'s `disk_failing`), `None` while it is
    /// healthy. Written by the capture task.
    pub disk_failing: ArcSwapOption<String>,
    /// Odd while the capture task rotates the disk log: readers that found lines missing
    /// then read again. Written by the capture task.
    pub epoch: disk::Epoch,
    /// URLs the scanner found in the output, oldest first, each once. Written by the scanner.
    pub urls: ArcSwap<Vec<String>>,
}

impl ProcessLog {
    /// The counters as `status` reports them.
    pub fn counters(&self) -> LogCounters {
        let stats = self.ring.stats();
        let c = &self.counters;
        LogCounters {
            lines: stats.lines,
            bytes: stats.bytes,
            ring_evicted: stats.evicted,
            disk_errors: c.disk_errors.load(Ordering::Relaxed),
            disk_lost_lines: c.disk_lost_lines.load(Ordering::Relaxed),
            disk_failing: self.disk_failing.load_full().map(|s| (*s).clone()),
            rotations: c.rotations.load(Ordering::Relaxed),
            scanned: c.scanned.load(Ordering::Relaxed),
            scanner_skips: c.scanner_skips.load(Ordering::Relaxed),
            followers_behind: c.followers_behind.load(Ordering::Relaxed),
            follower_lag_max: c.follower_lag_max.load(Ordering::Relaxed),
            follower_missed: c.follower_missed.load(Ordering::Relaxed),
            // Lines not on disk yet: the chunk being written, and those the ring keeps for
            // a failing disk.
            disk_pending: {
                let written = c.disk_seq.load(Ordering::Acquire);
                let waiting = c
                    .disk_unwritten
                    .load(Ordering::Acquire)
                    .max(self.ring.oldest_seq());
                self.ring.next_seq().saturating_sub(written.min(waiting))
            },
        }
    }
}

/// The log side of the daemon. Created once by the server; shared by everything that
/// reads or writes logs.
pub struct LogPlane {
    dir: PathBuf,
    /// Mode and owner of the log folder at start, for making it again if it is deleted.
    dir_mode: u32,
    dir_owner: Option<(u32, u32)>,
    /// Size of a new program's ring; a reload may change it for programs added later.
    ring_bytes: ArcSwap<usize>,
    /// The origin of every line's monotonic timestamp.
    origin: Instant,
    /// Woken by every capture task after each chunk; the scanner and followers that are
    /// not on a log thread wait on it.
    activity: Notify,
    threads: LogThreads,
    logs: Registry<ProcessLog>,
    /// Capture tasks: they end on their own once their pipes close and their program's
    /// supervisor is gone, and are drained at shutdown so the last lines reach the disk.
    captures: Shutdown,
    /// The folder as listed at start, for the first programs' logs ([`disk::Listing`]);
    /// `None` once start-up is over ([`end_startup`](Self::end_startup)). Held only for a
    /// lookup, never across I/O.
    listing: Mutex<Option<disk::Listing>>,
    /// Start-up's rings, mapped at once ([`LogPlane::reserve_rings`]) until it ends.
    arena: Mutex<Option<brummer_core::RingArena>>,
    /// Cleared when a re-exec begins: the scanner ends instead of going over every ring
    /// at each capture task's last chunk (its cursors are not handed over anyway).
    scanning: std::sync::atomic::AtomicBool,
}

impl LogPlane {
    pub fn start(dir: PathBuf, ring_bytes: usize) -> std::io::Result<LogPlane> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&dir).ok();
        let listing = disk::Listing::read(&dir);
        Ok(LogPlane {
            dir_mode: meta.as_ref().map_or(0o700, |m| m.mode() & 0o7777),
            dir_owner: meta.map(|m| (m.uid(), m.gid())),
            dir,
            ring_bytes: ArcSwap::from_pointee(ring_bytes),
            origin: Instant::now(),
            activity: Notify::new(),
            threads: LogThreads::start()?,
            logs: Registry::new(),
            captures: Shutdown::new(),
            listing: Mutex::new(Some(listing)),
            arena: Mutex::new(None),
            scanning: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Maps the rings of the `count` programs start-up opens (at the start, or adopted
    /// from the previous image) at once; [`LogPlane::end_startup`] unmaps what is left.
    pub fn reserve_rings(&self, count: usize) {
        let arena = brummer_core::RingArena::new(**self.ring_bytes.load(), count);
        *self.arena.lock().unwrap_or_else(|e| e.into_inner()) = arena;
    }

    /// Start-up's logs are open: later ones list the folder themselves, and map their
    /// own ring.
    pub fn end_startup(&self) {
        *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.arena.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_ring_bytes(&self, bytes: usize) {
        self.ring_bytes.store(Arc::new(bytes));
    }

    /// Ends the scanner (a re-exec: the next image starts its own).
    pub fn stop_scanning(&self) {
        self.scanning
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.activity.notify_waiters();
    }

    pub fn scanning(&self) -> bool {
        self.scanning.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn activity(&self) -> &Notify {
        &self.activity
    }

    /// The logs of every program, by name.
    pub fn logs(&self) -> &Registry<ProcessLog> {
        &self.logs
    }

    /// Opens the log of a new program: its disk log (sequence numbers continue where an
    /// earlier run's ended), its ring and its capture task on the next log thread.
    pub fn open(self: &Arc<Self>, def: &ProcessDef) -> (Arc<ProcessLog>, CaptureHandle) {
        self.open_from(def, 0)
    }

    /// [`open`](Self::open), with sequence numbers going on from no lower than `min_seq`
    /// (a re-exec: the previous image's ring may be ahead of a disk log that failed).
    pub fn open_from(
        self: &Arc<Self>,
        def: &ProcessDef,
        min_seq: u64,
    ) -> (Arc<ProcessLog>, CaptureHandle) {
        let ring_bytes = **self.ring_bytes.load();
        // The ring's line limit decides how long lines are cut; the disk index records it.
        let max_payload = LogRing::max_payload_for(ring_bytes);
        let rotated = self.listed(&def.name);
        let (disk, first_seq) = match DiskLog::open_listed(
            &self.dir,
            &def.name,
            max_payload,
            rotated,
        ) {
            Ok((d, next)) => (Ok(d), next),
            Err(e) => {
                tracing::error!(process = %def.name, dir = %self.dir.display(), cause = %e, "cannot open disk log; output kept in memory until it can be opened");
                (Err(e), 0)
            }
        };
        let (log, writer, target) = self.make(def, first_seq.max(min_seq));
        let capture = capture::spawn(self.clone(), log.clone(), writer, disk, target);
        (log, capture)
    }

    /// The log of a program a re-exec handed over, whose ring goes on at `next_seq`: its
    /// capture task is spawned by `later`, and opens the disk log itself.
    pub fn open_handed(
        self: &Arc<Self>,
        def: &ProcessDef,
        next_seq: u64,
        later: &mut Later,
    ) -> (Arc<ProcessLog>, CaptureHandle) {
        let (log, writer, target) = self.make(def, next_seq);
        let rotated = self.listed(&def.name);
        let (capture, start) =
            capture::spawn_later(self.clone(), log.clone(), writer, target, rotated);
        let thread = &log.thread;
        later.push_on(thread.index, &self.captures, &thread.handle, start);
        (log, capture)
    }

    /// `name`'s rotated segments from the start-up listing, while it lasts.
    fn listed(&self, name: &str) -> Option<Vec<disk::Segment>> {
        self.listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|l| l.take(name))
    }

    /// A program's ring and log at `first_seq`, and where its disk log lives.
    fn make(
        &self,
        def: &ProcessDef,
        first_seq: u64,
    ) -> (Arc<ProcessLog>, brummer_core::RingWriter, persist::Target) {
        let ring_bytes = **self.ring_bytes.load();
        let reserved = self
            .arena
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|a| a.take(ring_bytes, first_seq));
        let (ring, writer) = reserved.unwrap_or_else(|| LogRing::new(ring_bytes, first_seq));
        let log = Arc::new(ProcessLog {
            name: Arc::from(def.name.as_str()),
            ring,
            settings: ArcSwap::from_pointee(def.logs.clone()),
            thread: self.threads.next(),
            counters: Counters::default(),
            disk_failing: ArcSwapOption::empty(),
            epoch: disk::Epoch::default(),
            urls: ArcSwap::from_pointee(Vec::new()),
        });
        log.counters.disk_seq.store(first_seq, Ordering::Release);
        log.counters
            .disk_unwritten
            .store(u64::MAX, Ordering::Release);
        let target = persist::Target {
            dir: self.dir.clone(),
            name: def.name.clone(),
            max_payload: LogRing::max_payload_for(ring_bytes),
            dir_mode: self.dir_mode,
            dir_owner: self.dir_owner,
        };
        (log, writer, target)
    }

    /// Makes `logs` the set readers see, and wakes the followers that wait on a log thread:
    /// a program they follow may now be captured on another one.
    pub fn publish(&self, logs: impl IntoIterator<Item = (String, Arc<ProcessLog>)>) {
        self.logs.update(|_| (Snapshot::from_entries(logs), ()));
        self.threads.wake_all();
    }

    /// Waits, at most `limit`, for every capture task to write what it read; false when
    /// some were still busy.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.captures.wait(limit).await
    }
}
