//! The reading side of a disk log: lines by sequence number or time, from `pread`s of the
//! index and segment files, so a reader never takes a lock the writer holds.

use super::format::*;
use brummer_core::{Line, LineMeta};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An opened segment: its index and data files and its header.
struct OpenSeg {
    idx: File,
    data: File,
    header: Header,
    /// Records in the index (at open time).
    n: u64,
    /// Bytes in the data file, read after `n`: the writer writes a chunk before its record,
    /// so every record counted in `n` lies inside them unless the files are damaged.
    data_len: u64,
}

impl OpenSeg {
    fn open(s: &Segment) -> Option<OpenSeg> {
        let idx = File::open(&s.idx).ok()?;
        let data = File::open(&s.data).ok()?;
        let mut b = [0u8; REC];
        idx.read_exact_at(&mut b, 0).ok()?;
        let header = Header::decode(&b)?;
        let n = idx.metadata().ok()?.len().saturating_sub(REC as u64) / REC as u64;
        let data_len = data.metadata().ok()?.len();
        Some(OpenSeg {
            idx,
            data,
            header,
            n,
            data_len,
        })
    }

    fn rec(&self, i: u64) -> Option<Rec> {
        let mut b = [0u8; REC];
        self.idx.read_exact_at(&mut b, REC as u64 * (i + 1)).ok()?;
        Some(Rec::decode(&b))
    }

    /// Records `i..i+count`, one read.
    fn recs(&self, i: u64, count: u64, out: &mut Vec<Rec>) {
        out.clear();
        let count = count.min(self.n.saturating_sub(i));
        if count == 0 {
            return;
        }
        let mut b = vec![0u8; count as usize * REC];
        if self
            .idx
            .read_exact_at(&mut b, REC as u64 * (i + 1))
            .is_err()
        {
            return;
        }
        out.extend(b.chunks_exact(REC).map(Rec::decode));
    }

    /// Index of the last record with `first_seq <= seq` (0 when none).
    fn find_seq(&self, seq: u64) -> u64 {
        let (mut lo, mut hi) = (0u64, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.rec(mid) {
                Some(r) if r.first_seq <= seq => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.saturating_sub(1)
    }

    /// Index of the first record with `wall_us >= us` (`n` when none).
    fn find_time(&self, us: u64) -> u64 {
        let (mut lo, mut hi) = (0u64, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.rec(mid) {
                Some(r) if r.wall_us < us => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    fn end_seq(&self) -> u64 {
        if self.n == 0 {
            return self.header.first_seq;
        }
        self.rec(self.n - 1)
            .map_or(self.header.first_seq, |r| r.end_seq())
    }
}

/// What a line filter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Skip,
    /// Past the end of what was asked for (e.g. `until`): stop reading.
    Stop,
}

/// Result of `read_range` besides the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskRead {
    /// Lines in the range that are not on disk (rotated away, or never written).
    pub missed: u64,
    /// Where to continue.
    pub next_seq: u64,
    /// The filter said `Stop`.
    pub stopped: bool,
}

/// Lines with `from <= seq < to` from disk, in seq order, at most `max` kept by `filter`.
/// Lines the disk does not have count as `missed` — except after the last line indexed:
/// `next_seq` then stops there, and the caller decides (the capture task may not have
/// written them yet).
pub fn read_range(
    dir: &Path,
    name: &str,
    from: u64,
    to: u64,
    max: usize,
    filter: &mut dyn FnMut(&Line) -> Verdict,
    out: &mut Vec<Line>,
) -> DiskRead {
    let mut rd = RangeRead {
        to,
        max,
        filter,
        out,
        kept: 0,
        res: DiskRead {
            missed: 0,
            next_seq: from,
            stopped: false,
        },
        recs: Vec::new(),
        data: Vec::new(),
    };
    if from >= to || max == 0 {
        return rd.res;
    }
    let segs = segments(dir, name);
    // The newest segment starting at or before `from`; earlier ones are not needed.
    let start = segs.iter().rposition(|s| s.first_seq <= from).unwrap_or(0);
    for s in &segs[start.min(segs.len())..] {
        if rd.res.next_seq >= to {
            break;
        }
        let Some(seg) = OpenSeg::open(s) else {
            // Deleted by rotation meanwhile (its lines are counted below as missed when
            // the next segment starts later), or torn: skip it.
            continue;
        };
        if rd.segment(&seg) == Flow::Done {
            break;
        }
    }
    rd.res
}

/// Where a range read goes on after a segment or a chunk.
#[derive(PartialEq, Eq)]
enum Flow {
    /// To the next chunk (or segment).
    Next,
    /// To the next segment: this one has nothing more in the range, or is truncated.
    NextSegment,
    /// The read is over: `max` lines kept, or the filter said stop.
    Done,
}

/// One `read_range` call in progress.
struct RangeRead<'a> {
    to: u64,
    max: usize,
    filter: &'a mut dyn FnMut(&Line) -> Verdict,
    out: &'a mut Vec<Line>,
    kept: usize,
    res: DiskRead,
    /// Buffers reused from chunk to chunk.
    recs: Vec<Rec>,
    data: Vec<u8>,
}

impl RangeRead<'_> {
    /// The lines of one segment from the cursor on; lines missing before its first one
    /// count as missed.
    fn segment(&mut self, seg: &OpenSeg) -> Flow {
        let cursor = self.res.next_seq;
        if seg.end_seq() <= cursor {
            return Flow::Next;
        }
        if seg.header.first_seq > cursor {
            let gap = seg.header.first_seq.min(self.to) - cursor;
            self.res.missed += gap;
            self.res.next_seq += gap;
            if self.res.next_seq >= self.to {
                return Flow::Done;
            }
        }
        let max_payload = seg.header.max_payload as usize;
        let mut i = seg.find_seq(self.res.next_seq);
        let mut recs = std::mem::take(&mut self.recs);
        let mut flow = Flow::Next;
        while i < seg.n && flow == Flow::Next {
            seg.recs(i, 256, &mut recs);
            if recs.is_empty() {
                break;
            }
            i += recs.len() as u64;
            for r in &recs {
                flow = self.chunk(seg, r, max_payload);
                if flow != Flow::Next {
                    break;
                }
            }
        }
        self.recs = recs;
        match flow {
            Flow::Done => Flow::Done,
            Flow::Next | Flow::NextSegment => Flow::Next,
        }
    }

    /// The lines of one chunk that are in the range and pass the filter.
    fn chunk(&mut self, seg: &OpenSeg, r: &Rec, max_payload: usize) -> Flow {
        let to = self.to;
        if r.end_seq() <= self.res.next_seq {
            return Flow::Next;
        }
        if r.first_seq >= to {
            return Flow::NextSegment;
        }
        // A record pointing past the data file (a damaged index) would have us allocate up
        // to 4 GiB for a read that must fail: the rest of this segment is unreadable.
        if r.offset.saturating_add(u64::from(r.len)) > seg.data_len {
            return Flow::NextSegment;
        }
        if r.first_seq > self.res.next_seq {
            self.res.missed += r.first_seq - self.res.next_seq;
            self.res.next_seq = r.first_seq;
        }
        self.data.resize(r.len as usize, 0);
        if seg.data.read_exact_at(&mut self.data, r.offset).is_err() {
            // Truncated under us: the rest of this segment is gone.
            return Flow::NextSegment;
        }
        let mut stop = false;
        let (res, filter, out, kept, max) = (
            &mut self.res,
            &mut *self.filter,
            &mut *self.out,
            &mut self.kept,
            self.max,
        );
        split_chunk(r, &self.data, max_payload, |seq, partial, bytes| {
            if stop || seq < res.next_seq || seq >= to {
                return;
            }
            let line = Line {
                meta: LineMeta {
                    seq,
                    wall_us: r.wall_us,
                    mono_ns: r.mono_ns,
                    stream: r.stream,
                    pid: r.pid,
                    generation: r.generation,
                    partial,
                },
                bytes: bytes.to_vec(),
            };
            match filter(&line) {
                Verdict::Keep => {
                    out.push(line);
                    *kept += 1;
                }
                Verdict::Skip => {}
                Verdict::Stop => {
                    res.stopped = true;
                    stop = true;
                    return;
                }
            }
            res.next_seq = seq + 1;
            if *kept >= max {
                stop = true;
            }
        });
        if stop {
            return Flow::Done;
        }
        // A chunk shorter than its record says (torn write): skip its seqs.
        let end = r.end_seq().min(to);
        if self.res.next_seq < end {
            self.res.missed += end - self.res.next_seq;
            self.res.next_seq = end;
        }
        if self.res.next_seq >= to {
            return Flow::NextSegment;
        }
        Flow::Next
    }
}

/// A lower bound for the first line captured at or after `us`: every line before the
/// returned seq was captured before `us` (wall clock assumed not to go back). `None` when
/// nothing is on disk.
pub fn seq_at_time(dir: &Path, name: &str, us: u64) -> Option<u64> {
    let segs = segments(dir, name);
    let opened: Vec<OpenSeg> = segs.iter().filter_map(OpenSeg::open).collect();
    if opened.is_empty() {
        return None;
    }
    // The last segment whose first record is before `us`.
    let mut pick = None;
    for (i, s) in opened.iter().enumerate() {
        match s.rec(0) {
            Some(r) if r.wall_us < us => pick = Some(i),
            Some(_) => break,
            None => {}
        }
    }
    let Some(i) = pick else {
        return Some(opened[0].header.first_seq);
    };
    let s = &opened[i];
    let k = s.find_time(us);
    if k < s.n {
        return s.rec(k).map(|r| r.first_seq);
    }
    Some(s.end_seq())
}

/// The oldest seq on disk and one past the newest (`None` when there is no segment).
pub fn bounds(dir: &Path, name: &str) -> Option<(u64, u64)> {
    let segs = segments(dir, name);
    let first = segs.iter().find_map(OpenSeg::open)?;
    let last = segs.iter().rev().find_map(OpenSeg::open)?;
    Some((first.header.first_seq, last.end_seq()))
}
