//! The disk side of a capture: appends each chunk of finished lines to the program's disk
//! log with its index record, rotates the segment by the program's `[logs]` limits, and
//! keeps `disk_seq` (every line below it is on disk, lost, or waiting in the ring for the
//! disk) and the disk counters current.
//!
//! A failing disk (full, read-only, an I/O error, the log folder or file deleted) never
//! stops the capture: lines then stay in the ring, `status` says what failed
//! (`disk_failing`), and the capture calls [`Persist::retry`] every [`RETRY_EVERY`]. When
//! the disk takes writes again, the lines the ring still holds are written first, from the
//! ring (`refill`), so the disk log has no hole that memory could fill; lines the ring
//! overwrote meanwhile are counted in `disk_lost_lines`, and readers are told of them as
//! missed, with the same count.

use super::ProcessLog;
use super::disk::{ChunkMeta, DiskLog, Segment};
use super::refill::Chunker;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One chunk's disk write: the bytes of `buf` it covers, and its index data.
pub type Write = (Range<usize>, ChunkMeta);

/// How often a failing disk log is tried again.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How often a healthy disk log checks that its file is still linked (a deleted file or
/// folder takes writes without error, into a file nobody can open).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Ring lines read per step while refilling the disk.
const REFILL_BATCH: usize = 1024;

/// Where a program's disk log lives, to make it again when its folder or file was deleted.
#[derive(Debug, Clone)]
pub struct Target {
    pub dir: PathBuf,
    pub name: String,
    pub max_payload: usize,
    /// Mode and owner the log folder had when brummerd started.
    pub dir_mode: u32,
    pub dir_owner: Option<(u32, u32)>,
}

pub struct Persist {
    log: Arc<ProcessLog>,
    target: Target,
    /// `None` when the disk log could not be opened or was deleted: made again on a retry.
    disk: Option<DiskLog>,
    /// The log was open once this run, so the ring's sequence numbers continue the disk's;
    /// if not, a retry must check that they do.
    was_open: bool,
    /// The first line not on disk because the disk failed; `None` while it is healthy.
    unwritten: Option<u64>,
    /// When the active file was last found linked, and the first line written after that.
    checked: (Instant, u64),
    /// What fails now: a write (lines wait in memory), a rotation (the segment grows).
    write_error: Option<String>,
    rotate_error: Option<String>,
    /// Lines lost since the disk began to fail (for the message when it recovers).
    lost_now: u64,
    /// The disk log is opened by [`Persist::open_deferred`], with its rotated segments
    /// when they were listed already (`None`: it lists the folder), and where the handed
    /// ring began.
    pending_open: Option<(Option<Vec<Segment>>, u64)>,
}

impl Persist {
    /// `disk` is the error when the disk log could not be opened: lines then wait in
    /// memory and the log is opened on a retry.
    pub fn new(log: Arc<ProcessLog>, disk: io::Result<DiskLog>, target: Target) -> Persist {
        let next = log.ring.next_seq();
        let (disk, error) = match disk {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        let mut p = Persist {
            log,
            target,
            unwritten: None,
            checked: (Instant::now(), next),
            write_error: None,
            rotate_error: None,
            lost_now: 0,
            pending_open: None,
            was_open: disk.is_some(),
            disk,
        };
        if let Some(e) = error {
            p.set_unwritten(Some(next));
            p.count_error();
            p.write_error = Some(p.error_text("open", &e));
            p.publish();
        }
        p
    }

    /// A disk log opened by the capture task when it first writes
    /// ([`Persist::open_deferred`]), not by whoever made the program: a re-exec, whose
    /// handover says where the ring goes on, opens none on the path to the first answer,
    /// and none at all for a program that writes nothing until the next re-exec.
    pub fn deferred(
        log: Arc<ProcessLog>,
        target: Target,
        rotated: Option<Vec<Segment>>,
    ) -> Persist {
        let next = log.ring.next_seq();
        Persist {
            log,
            target,
            disk: None,
            was_open: false,
            unwritten: None,
            checked: (Instant::now(), next),
            write_error: None,
            rotate_error: None,
            lost_now: 0,
            pending_open: Some((rotated, next)),
        }
    }

    /// Opens the disk log of [`Persist::deferred`], before the first write. Its lines must
    /// not go past where the handed-over ring began (they came from the previous image's
    /// ring); a log behind it has a gap, as the previous image's disk log had. Failing,
    /// lines wait in memory and the log is opened on a retry.
    fn open_deferred(&mut self) {
        let Some((rotated, from)) = self.pending_open.take() else {
            return;
        };
        let t = &self.target;
        let opened = DiskLog::open_listed(&t.dir, &t.name, t.max_payload, rotated).and_then(|(d, next)| {
            if next > from {
                return Err(io::Error::other(format!(
                    "it holds lines up to {} but the handed-over ring goes on at {from}; restart brummerd to continue the log",
                    next - 1
                )));
            }
            Ok((d, next))
        });
        match opened {
            Ok((d, next)) => {
                if next < from {
                    // The previous image held these lines for a failing disk and could not
                    // write them before it handed over; the ring it handed holds none.
                    let gap = from - next;
                    self.count_lost(gap);
                    tracing::warn!(process = %self.target.name, disk_next = next, ring_next = from, lost = gap, "disk log ends before the handed-over ring: lines the previous image had not written are missing from it");
                }
                self.disk = Some(d);
                self.was_open = true;
            }
            Err(e) => {
                tracing::error!(process = %self.target.name, dir = %self.target.dir.display(), cause = %e, "cannot open disk log; output kept in memory until it can be opened");
                self.set_unwritten(Some(from));
                self.count_error();
                self.write_error = Some(self.error_text("open", &e));
                self.publish();
            }
        }
    }

    /// Whether the capture should call [`Persist::retry`] in a while.
    pub fn needs_retry(&self) -> bool {
        self.unwritten.is_some()
    }

    /// The lines waiting in the ring for a failing disk: a hand-over does not carry the
    /// ring, so these are what it would lose.
    pub fn unwritten_lines(&self) -> u64 {
        self.unwritten
            .map_or(0, |from| self.log.ring.next_seq().saturating_sub(from))
    }

    /// Appends the finished lines of one read to the disk log, in order, rotating when
    /// the active segment is full. While the disk fails they only wait in the ring.
    pub fn write(&mut self, buf: &[u8], writes: &[Write]) {
        let Some((_, first)) = writes.first() else {
            return;
        };
        self.open_deferred();
        let end = writes.last().map_or(0, |(_, m)| m.first_seq + m.lines);
        if self.unwritten.is_none() && self.checked.0.elapsed() >= CHECK_EVERY {
            self.check_linked(first.first_seq);
        }
        if self.unwritten.is_none() {
            for (range, meta) in writes {
                if let Err(e) = self.append(&[&buf[range.clone()]], meta) {
                    self.failed(meta.first_seq, "write", &e);
                    break;
                }
            }
        }
        // Every line before `end` is now on disk, lost, or in the ring waiting for the
        // disk: a reader that misses one in the ring may look for it on disk.
        self.log.counters.disk_seq.store(end, Ordering::Release);
    }

    /// Tries the disk again: makes the log again if it was deleted, then writes the lines
    /// the ring still holds since the failure. Called by the capture while
    /// [`Persist::needs_retry`], and once more before it ends.
    pub fn retry(&mut self) {
        let Some(from) = self.unwritten else {
            return;
        };
        let ring_oldest = self.log.ring.oldest_seq();
        let linked = match &self.disk {
            Some(d) => !matches!(d.unlinked(), Ok(true)),
            None => false,
        };
        if !linked {
            self.disk = None;
            let start = from.max(ring_oldest);
            let made = if self.was_open {
                self.recreate(start)
            } else {
                self.open_late(from)
            };
            match made {
                Ok(d) => {
                    if self.was_open {
                        tracing::warn!(process = %self.log.name, dir = %self.target.dir.display(), first_seq = start, "disk log made again (its file or folder was deleted)");
                    }
                    self.disk = Some(d);
                    self.was_open = true;
                }
                Err(e) => {
                    self.count_error();
                    self.note_write_error("open", &e);
                    return;
                }
            }
        }
        self.refill(from);
    }

    /// Appends one chunk, then rotates if the segment is full. A failed rotation keeps
    /// the active segment (it grows past `max_bytes` until a rotation succeeds).
    fn append(&mut self, parts: &[&[u8]], meta: &ChunkMeta) -> io::Result<()> {
        let Some(d) = self.disk.as_mut() else {
            return Err(io::ErrorKind::NotFound.into());
        };
        d.append(parts, meta)?;
        let (max_bytes, max_files) = {
            let settings = self.log.settings.load();
            (settings.max_bytes, settings.max_files)
        };
        if d.size() >= max_bytes {
            let next = meta.first_seq + meta.lines;
            match d.rotate(next, max_files, &self.log.epoch) {
                Ok(()) => {
                    self.log.counters.rotations.fetch_add(1, Ordering::Relaxed);
                    if self.rotate_error.take().is_some() {
                        tracing::info!(process = %self.log.name, "disk log rotates again");
                        self.publish();
                    }
                }
                Err(e) => {
                    self.count_error();
                    if self.rotate_error.is_none() {
                        tracing::error!(process = %self.log.name, dir = %self.target.dir.display(), cause = %e, "cannot rotate disk log; the active segment grows past max_bytes until a rotation succeeds");
                        self.rotate_error =
                            Some(format!("cannot rotate {}.log: {e}", self.target.name));
                        self.publish();
                    }
                }
            }
        }
        Ok(())
    }

    /// Once a second: a deleted active file (or folder) takes writes without error, so
    /// ask whether it is still linked. If not, everything since the last check may have
    /// gone into it: the log is made again and those lines written from the ring.
    fn check_linked(&mut self, next: u64) {
        let since = self.checked.1;
        self.checked = (Instant::now(), next);
        let Some(d) = &self.disk else {
            return;
        };
        if !matches!(d.unlinked(), Ok(true)) {
            return;
        }
        tracing::error!(process = %self.log.name, file = %self.target.dir.join(format!("{}.log", self.target.name)).display(), "disk log was deleted while brummerd wrote it; making it again with the lines still in memory");
        self.disk = None;
        self.set_unwritten(Some(since));
        self.write_error = Some(format!("{}.log was deleted", self.target.name));
        self.publish();
        self.retry();
    }

    /// The lines from `from` on that the ring still holds, written from there; the ones
    /// it no longer holds are lost. On success the disk is healthy again.
    fn refill(&mut self, from: u64) {
        let end = self.log.counters.disk_seq.load(Ordering::Acquire);
        let start = from.max(self.log.ring.oldest_seq()).min(end);
        let lost = start - from;
        if lost > 0 {
            self.count_lost(lost);
            self.lost_now += lost;
        }
        self.set_unwritten(Some(start));
        let mut cursor = start;
        let mut chunker = Chunker::default();
        let mut lines = Vec::new();
        while cursor < end {
            lines.clear();
            let want = REFILL_BATCH.min((end - cursor) as usize);
            // This task is the ring's only writer: nothing moves while it reads.
            let r = self.log.ring.read_from(cursor, want, None, &mut lines);
            if lines.is_empty() || r.missed > 0 {
                break;
            }
            for l in &lines {
                chunker.push(l);
            }
            cursor = r.next_seq.min(end);
            let chunks = if cursor >= end {
                std::mem::take(&mut chunker).finish()
            } else {
                chunker.take()
            };
            for c in chunks {
                if let Err(e) = self.append(&[&c.bytes], &c.meta) {
                    self.failed(c.meta.first_seq, "write", &e);
                    return;
                }
                self.set_unwritten(Some(c.meta.first_seq + c.meta.lines));
            }
        }
        if cursor < end {
            // Not in the ring after all (it cannot shrink under its only writer, so this
            // is not expected): counted as lost rather than waited for.
            let gone = end - cursor;
            self.count_lost(gone);
            self.lost_now += gone;
        }
        let written = cursor.min(end) - start;
        self.set_unwritten(None);
        self.checked = (Instant::now(), end);
        if self.write_error.take().is_some() {
            tracing::info!(process = %self.log.name, written, lost = self.lost_now, "disk log writable again; wrote the lines kept in memory");
        }
        self.lost_now = 0;
        self.publish();
    }

    /// A write failed at line `first_seq`: from there on, lines wait in the ring.
    fn failed(&mut self, first_seq: u64, what: &str, e: &io::Error) {
        self.count_error();
        if self.unwritten.is_none() {
            self.set_unwritten(Some(first_seq));
        }
        self.note_write_error(what, e);
    }

    fn note_write_error(&mut self, what: &str, e: &io::Error) {
        let text = self.error_text(what, e);
        if self.write_error.as_deref() != Some(text.as_str()) {
            tracing::error!(process = %self.log.name, cause = %text, "disk log failing; lines stay in memory and are written when it takes writes again");
            self.write_error = Some(text);
            self.publish();
        }
    }

    /// `cannot write /var/log/brummer/web.log: No space left on device (os error 28)`.
    fn error_text(&self, what: &str, e: &io::Error) -> String {
        format!(
            "cannot {what} {}: {e}",
            self.target
                .dir
                .join(format!("{}.log", self.target.name))
                .display()
        )
    }

    /// Lines that never reach the disk log (`disk_lost_lines`; readers are told of the gap).
    fn count_lost(&self, lines: u64) {
        self.log
            .counters
            .disk_lost_lines
            .fetch_add(lines, Ordering::Relaxed);
    }

    fn count_error(&self) {
        self.log
            .counters
            .disk_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    fn set_unwritten(&mut self, v: Option<u64>) {
        self.unwritten = v;
        self.log
            .counters
            .disk_unwritten
            .store(v.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// What `status` shows as `disk_failing`.
    fn publish(&self) {
        let text = match (&self.write_error, &self.rotate_error) {
            (Some(w), _) => Some(format!(
                "{w}; lines stay in memory until the disk takes writes again"
            )),
            (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        };
        self.log.disk_failing.store(text.map(Arc::new));
    }

    /// The disk log that could not be opened when the program was added. Its lines must
    /// continue where the ring began (a fresh log, or one whose last line is just before
    /// the ring's first): otherwise the disk has lines of an earlier run under the numbers
    /// this run gave its own, and the lines stay in memory (until brummerd restarts and
    /// opens the log first).
    fn open_late(&self, from: u64) -> io::Result<DiskLog> {
        let t = &self.target;
        let (d, next) = DiskLog::open(&t.dir, &t.name, t.max_payload)?;
        if next != from {
            return Err(io::Error::other(format!(
                "it holds lines up to {} from an earlier run, this run numbered its own from {from}; restart brummerd to continue the log",
                next.saturating_sub(1)
            )));
        }
        Ok(d)
    }

    /// A new active segment at `first_seq`, in a log folder made again if it is gone (with
    /// the mode and owner it had).
    fn recreate(&self, first_seq: u64) -> io::Result<DiskLog> {
        let t = &self.target;
        if !t.dir.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&t.dir)?;
            std::fs::set_permissions(&t.dir, std::fs::Permissions::from_mode(t.dir_mode))?;
            if let Some((uid, gid)) = t.dir_owner {
                std::os::unix::fs::chown(&t.dir, Some(uid), Some(gid))?;
            }
        }
        DiskLog::create(&t.dir, &t.name, t.max_payload, first_seq)
    }
}
