//! The rotation epoch: how a reader in brummerd knows that a segment it could not find was
//! being renamed while it looked. The writer makes the epoch odd for the time of a rotation
//! (its renames and the new active segment) and even again after; a read that found lines
//! missing while the epoch moved is read again.
//!
//! Why a retry and not a cleverer rename order: a reader lists the rotated segments and then
//! reads the active segment's header, two steps a rotation can fall between whatever order
//! the writer renames in; for a moment the segment is under neither name the reader looked
//! at. Lines found are always right (a segment's bytes never change); only a count of
//! missing lines can be wrong, so only such a read is repeated.

use super::reader::{DiskRead, Verdict, read_range};
use brummer_core::Line;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Reads repeated at most because rotations overlapped them (each rotation is a few
/// renames; a writer that rotates this often in a row is not rotating by size).
const MAX_RETRIES: u32 = 64;

/// Polls (50 us apart) for a rotation in progress to end before reading again: 2 s. A
/// rotation is a few renames, but its thread may be descheduled in the middle of them.
const MAX_WAITS: u32 = 40_000;

/// Odd while the writer rotates. Written by the capture task only.
#[derive(Debug, Default)]
pub struct Epoch(AtomicU64);

impl Epoch {
    /// Before the first rename of a rotation.
    pub fn begin(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// After the new active segment exists (or the rotation gave up).
    pub fn end(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// [`read_range`], read again when it reports lines missing (or ends before `to`) while a
/// rotation ran: the lines were on disk, under a name the listing did not catch.
#[allow(clippy::too_many_arguments)]
pub fn read_range_stable(
    dir: &Path,
    name: &str,
    epoch: &Epoch,
    from: u64,
    to: u64,
    max: usize,
    filter: &mut dyn FnMut(&Line) -> Verdict,
    out: &mut Vec<Line>,
) -> DiskRead {
    let start = out.len();
    let mut tries = 0;
    loop {
        let before = epoch.now();
        let r = read_range(dir, name, from, to, max, filter, out);
        // The file system calls above are ordered before this load.
        fence(Ordering::SeqCst);
        let moved = before % 2 == 1 || epoch.now() != before;
        let short = r.missed > 0 || (r.next_seq < to && !r.stopped && out.len() - start < max);
        if !(moved && short) || tries >= MAX_RETRIES {
            return r;
        }
        tries += 1;
        out.truncate(start);
        // Read again once the rotation is over.
        let mut waits = 0;
        while epoch.now() % 2 == 1 && waits < MAX_WAITS {
            waits += 1;
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}
