//! Reading one process's log by sequence number from wherever the lines are: the ring for
//! the newest, the disk log (via its index) for everything older. Used by `logs` (on a
//! blocking thread) and by `follow` (disk reads on a blocking thread, ring reads inline).
//!
//! A line counts as missed only when it is neither in the ring nor on disk (rotated away,
//! or never written because the disk failed); the count is exact.

use super::ProcessLog;
use super::disk::{self as disklog, Verdict};
use brummer_core::Line;
use brummer_proto::{ErrorCode, RpcError, Stream};
use regex::Regex;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Polls (50 us apart) for lines that left the ring but are not on disk yet: 2 s.
const MAX_DISK_WAITS: u32 = 40_000;

/// Records read from a ring per call.
const RING_BATCH: usize = 1024;

/// Which lines a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stream: Option<Stream>,
    pub grep: Option<Regex>,
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
}

impl Filter {
    pub fn new(
        stream: Option<Stream>,
        grep: Option<&str>,
        since_us: Option<u64>,
        until_us: Option<u64>,
    ) -> Result<Filter, RpcError> {
        let grep = match grep {
            None => None,
            Some(p) => Some(
                regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        RpcError::new(
                            ErrorCode::InvalidParams,
                            format!("grep is not a valid regular expression: {e}"),
                        )
                    })?,
            ),
        };
        Ok(Filter {
            stream,
            grep,
            since_us,
            until_us,
        })
    }

    /// Keeps every line (a tail can then be computed by sequence arithmetic).
    pub fn keeps_all(&self) -> bool {
        self.stream.is_none()
            && self.grep.is_none()
            && self.since_us.is_none()
            && self.until_us.is_none()
    }

    pub fn verdict(&self, l: &Line) -> Verdict {
        if self.until_us.is_some_and(|u| l.meta.wall_us > u) {
            return Verdict::Stop;
        }
        if self.since_us.is_some_and(|s| l.meta.wall_us < s)
            || self.stream.is_some_and(|s| s != l.meta.stream)
        {
            return Verdict::Skip;
        }
        if let Some(re) = &self.grep {
            let hit = match std::str::from_utf8(&l.bytes) {
                Ok(s) => re.is_match(s),
                Err(_) => re.is_match(&String::from_utf8_lossy(&l.bytes)),
            };
            if !hit {
                return Verdict::Skip;
            }
        }
        Verdict::Keep
    }
}

/// What a forward read found besides the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Lines in the range that exist nowhere any more.
    pub missed: u64,
    /// Where to continue.
    pub next_seq: u64,
    /// The filter's `until` was passed.
    pub stopped: bool,
}

/// Lines of `e` with `from <= seq < to`, in order, at most `max` kept by `f`: from disk
/// below the ring's oldest line, then from the ring. Blocks on disk reads: call it on a
/// blocking thread when `from` is below the ring.
pub fn read_forward(
    log_dir: &Path,
    e: &ProcessLog,
    from: u64,
    to: u64,
    max: usize,
    f: &Filter,
    out: &mut Vec<Line>,
) -> Outcome {
    let mut o = Outcome {
        missed: 0,
        next_seq: from,
        stopped: false,
    };
    let start = out.len();
    let mut buf = Vec::new();
    let mut waits = 0u32;
    loop {
        let kept = out.len() - start;
        if kept >= max || o.next_seq >= to {
            return o;
        }
        let cur = o.next_seq;
        let oldest = e.ring.oldest_seq();
        if cur < oldest {
            let on_disk = e.counters.disk_seq.load(Ordering::Acquire);
            let upto = oldest.min(on_disk).min(to);
            if cur < upto {
                let r = disklog::read_range_stable(
                    log_dir,
                    &e.name,
                    &e.epoch,
                    cur,
                    upto,
                    max - kept,
                    &mut |l| f.verdict(l),
                    out,
                );
                o.missed += r.missed;
                o.next_seq = r.next_seq;
                if r.stopped {
                    o.stopped = true;
                    return o;
                }
                if out.len() - start < max && o.next_seq < upto {
                    // The disk ends early: deleted by a rotation meanwhile, or not written.
                    o.missed += upto - o.next_seq;
                    o.next_seq = upto;
                }
                continue;
            }
            // Overwritten in the ring before the capture wrote its chunk to disk (a ring
            // smaller than one read chunk): the lines land on disk in a moment. Only
            // a disk that takes more than MAX_DISK_WAITS x 50 us for one chunk gets them
            // counted as missed.
            waits += 1;
            if waits > MAX_DISK_WAITS {
                o.missed += oldest.min(to) - cur;
                o.next_seq = oldest.min(to);
                continue;
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
            continue;
        }
        match read_ring(e, cur, to, max - kept, f, &mut buf, out) {
            RingRead::Overtaken => continue,
            RingRead::Done(next, stopped) => {
                let progressed = next > cur;
                o.next_seq = next;
                if stopped {
                    o.stopped = true;
                    return o;
                }
                if !progressed || next >= e.ring.next_seq() {
                    return o;
                }
            }
        }
    }
}

/// Result of one ring read.
pub enum RingRead {
    /// The writer overwrote lines at the cursor: they are (or soon will be) on disk.
    Overtaken,
    /// Next cursor, and whether the filter said stop.
    Done(u64, bool),
}

/// One batch from the ring only, never from disk: safe on a runtime thread.
pub fn read_ring(
    e: &ProcessLog,
    cur: u64,
    to: u64,
    max: usize,
    f: &Filter,
    buf: &mut Vec<Line>,
    out: &mut Vec<Line>,
) -> RingRead {
    buf.clear();
    let want = RING_BATCH.min(usize::try_from(to.saturating_sub(cur)).unwrap_or(usize::MAX));
    let r = e.ring.read_from(cur, want, None, buf);
    if r.missed > 0 {
        return RingRead::Overtaken;
    }
    let mut next = cur;
    let mut kept = 0;
    for l in buf.drain(..) {
        if kept >= max || l.meta.seq >= to {
            return RingRead::Done(next, false);
        }
        match f.verdict(&l) {
            Verdict::Keep => {
                next = l.meta.seq + 1;
                out.push(l);
                kept += 1;
            }
            Verdict::Skip => next = l.meta.seq + 1,
            Verdict::Stop => return RingRead::Done(next, true),
        }
    }
    RingRead::Done(r.next_seq.max(next), false)
}

/// Where a time-based read of `e` starts: a lower bound of the first line at or after `us`.
pub fn seq_at_time(log_dir: &Path, e: &ProcessLog, us: u64) -> u64 {
    match disklog::seq_at_time(log_dir, &e.name, us) {
        Some(seq) => seq.min(e.ring.next_seq()),
        None => e.ring.oldest_seq(),
    }
}

/// The first seq any reader could still get (disk or ring).
pub fn oldest_seq(log_dir: &Path, e: &ProcessLog) -> u64 {
    match disklog::bounds(log_dir, &e.name) {
        Some((lo, _)) => lo.min(e.ring.oldest_seq()),
        None => e.ring.oldest_seq(),
    }
}

/// The last `n` lines of `e` kept by `f` (between its `since` and `until`), oldest first;
/// returns the lines missed among the last `n` when `f` keeps every line.
pub fn tail(log_dir: &Path, e: &ProcessLog, n: usize, f: &Filter, out: &mut Vec<Line>) -> u64 {
    let mut end = e.ring.next_seq();
    if let Some(u) = f.until_us {
        // Lines from the first chunk after `until` on are all later: skip them unread.
        let on_disk = e.counters.disk_seq.load(Ordering::Acquire);
        if let Some(seq) = disklog::seq_at_time(log_dir, &e.name, u.saturating_add(1))
            && seq < on_disk
        {
            end = end.min(seq);
        }
    }
    if n == 0 {
        return 0;
    }
    if f.keeps_all() {
        let from = end.saturating_sub(n as u64);
        return read_forward(log_dir, e, from, end, n, f, out).missed;
    }
    // Filtered: windows of growing size, backwards, until enough lines matched; never below
    // the first line `since` could keep.
    let mut floor = oldest_seq(log_dir, e);
    if let Some(s) = f.since_us {
        floor = floor.max(seq_at_time(log_dir, e, s));
    }
    let mut hi = end;
    let mut window = (n as u64).saturating_mul(4).max(4096);
    let mut parts: Vec<Vec<Line>> = Vec::new();
    let mut have = 0usize;
    while hi > floor && have < n {
        let lo = hi.saturating_sub(window).max(floor);
        let mut got = Vec::new();
        read_forward(log_dir, e, lo, hi, usize::MAX, f, &mut got);
        let need = n - have;
        if got.len() > need {
            got.drain(..got.len() - need);
        }
        have += got.len();
        parts.push(got);
        hi = lo;
        window = window.saturating_mul(4);
    }
    for p in parts.into_iter().rev() {
        out.extend(p);
    }
    0
}
