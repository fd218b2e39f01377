//! The disk log of one process: segments of raw bytes with an index beside each, rotated by
//! brummerd itself. Format (see `docs/logs.md`):
//!
//! - `NAME.log`: the active segment, the bytes exactly as the program wrote them.
//! - `NAME.log.idx`: its index: a 48-byte header, then one 48-byte little-endian record per
//!   disk write (= per captured chunk of complete lines, or per piece of an over-long line).
//! - `NAME.log.<first_seq:020>` and `NAME.log.<first_seq:020>.idx`: rotated segments, named
//!   by the sequence number of their first line so that a listing sorts them.
//!
//! The capture task is the only writer (`DiskLog`); readers (`logs`, `follow`) open the files
//! read-only and use `pread`, so they never take a lock the writer holds.

use brummer_core::{Line, LineMeta};
use brummer_proto::Stream;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Index file magic, first 8 bytes of the header.
pub const IDX_MAGIC: [u8; 8] = *b"BRMLIDX1";
/// Size of the index header and of every record.
pub const REC: usize = 48;
/// Format version in the header.
pub const VERSION: u32 = 1;
/// Most seqs one record may cover (the count shares a word with the flags).
pub const MAX_REC_LINES: u32 = (1 << 24) - 1;

const FLAG_STDERR: u32 = 1;
/// The record's bytes carry no newline: they are pieces of one over-long line.
const FLAG_PIECES: u32 = 2;

/// One index record: a run of lines written with one `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    /// Sequence number of the first line in the chunk.
    pub first_seq: u64,
    /// Byte offset of the chunk in the segment.
    pub offset: u64,
    /// Capture time of every line in the chunk, µs since the epoch.
    pub wall_us: u64,
    /// Monotonic capture time, ns since brummerd started.
    pub mono_ns: u64,
    /// Bytes in the chunk.
    pub len: u32,
    /// Sequence numbers the chunk covers.
    pub lines: u32,
    pub pid: u32,
    pub generation: u32,
    pub stream: Stream,
    /// No newline in the chunk: `lines` pieces of `max_payload` bytes of one long line.
    pub pieces: bool,
}

impl Rec {
    pub fn encode(&self) -> [u8; REC] {
        let mut b = [0u8; REC];
        b[0..8].copy_from_slice(&self.first_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.wall_us.to_le_bytes());
        b[24..32].copy_from_slice(&self.mono_ns.to_le_bytes());
        b[32..36].copy_from_slice(&self.len.to_le_bytes());
        let mut flags = 0;
        if self.stream == Stream::Stderr {
            flags |= FLAG_STDERR;
        }
        if self.pieces {
            flags |= FLAG_PIECES;
        }
        let lf = (self.lines & MAX_REC_LINES) | (flags << 24);
        b[36..40].copy_from_slice(&lf.to_le_bytes());
        b[40..44].copy_from_slice(&self.pid.to_le_bytes());
        b[44..48].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Rec {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let lf = u32_at(36);
        let flags = lf >> 24;
        Rec {
            first_seq: u64_at(0),
            offset: u64_at(8),
            wall_us: u64_at(16),
            mono_ns: u64_at(24),
            len: u32_at(32),
            lines: lf & MAX_REC_LINES,
            pid: u32_at(40),
            generation: u32_at(44),
            stream: if flags & FLAG_STDERR != 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            pieces: flags & FLAG_PIECES != 0,
        }
    }

    /// The sequence number after the chunk.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.lines)
    }
}

/// The index header: what a reader needs to cut a chunk into lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Lines longer than this were split into pieces of this size (the ring's record limit).
    pub max_payload: u32,
    /// Sequence number of the segment's first line (also when it has none yet).
    pub first_seq: u64,
    /// When the segment was started, µs since the epoch.
    pub created_us: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; REC] {
        let mut b = [0u8; REC];
        b[0..8].copy_from_slice(&IDX_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.max_payload.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_us.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < REC || b[0..8] != IDX_MAGIC {
            return None;
        }
        let version = u32::from_le_bytes(b[8..12].try_into().ok()?);
        if version != VERSION {
            return None;
        }
        Some(Header {
            max_payload: u32::from_le_bytes(b[12..16].try_into().ok()?),
            first_seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
            created_us: u64::from_le_bytes(b[24..32].try_into().ok()?),
        })
    }
}

/// Sequence numbers one line of `len` bytes takes: pieces of `max` bytes, at least one.
pub fn pieces_of(len: usize, max: usize) -> u64 {
    if len == 0 {
        1
    } else {
        len.div_ceil(max.max(1)) as u64
    }
}

/// Cuts a chunk into its lines (pieces of over-long lines are lines of their own, all but
/// the last of a line marked partial), as the capture task pushed them into the ring.
pub fn split_chunk(rec: &Rec, data: &[u8], max: usize, mut f: impl FnMut(u64, bool, &[u8])) {
    let max = max.max(1);
    let mut seq = rec.first_seq;
    if rec.pieces {
        for piece in data.chunks(max) {
            f(seq, true, piece);
            seq += 1;
        }
        return;
    }
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        let line = &data[start..nl];
        if line.len() <= max {
            f(seq, false, line);
            seq += 1;
        } else {
            let mut rest = line;
            while rest.len() > max {
                f(seq, true, &rest[..max]);
                seq += 1;
                rest = &rest[max..];
            }
            f(seq, false, rest);
            seq += 1;
        }
        start = nl + 1;
    }
    // Bytes after the last newline can only come from a recovered, unfinished write.
    if start < data.len() {
        for piece in data[start..].chunks(max) {
            f(seq, true, piece);
            seq += 1;
        }
    }
}

/// Lines `split_chunk` would produce.
pub fn count_lines(data: &[u8], max: usize, pieces: bool) -> u64 {
    let rec = Rec {
        first_seq: 0,
        offset: 0,
        wall_us: 0,
        mono_ns: 0,
        len: 0,
        lines: 0,
        pid: 0,
        generation: 0,
        stream: Stream::Stdout,
        pieces,
    };
    let mut n = 0;
    split_chunk(&rec, data, max, |_, _, _| n += 1);
    n
}

pub fn active_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

fn idx_of(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

fn rotated_path(dir: &Path, name: &str, first_seq: u64) -> PathBuf {
    dir.join(format!("{name}.log.{first_seq:020}"))
}

/// One segment on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first_seq: u64,
    pub data: PathBuf,
    pub idx: PathBuf,
    pub active: bool,
}

/// The rotated segments of `name`, oldest first (from the file names alone).
pub fn rotated_segments(dir: &Path, name: &str) -> Vec<Segment> {
    let prefix = format!("{name}.log.");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for ent in rd.flatten() {
        let fname = ent.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        let Some(rest) = fname.strip_prefix(&prefix) else {
            continue;
        };
        if rest.len() != 20 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = rest.parse::<u64>() {
            let data = ent.path();
            out.push(Segment {
                first_seq: seq,
                idx: idx_of(&data),
                data,
                active: false,
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    out
}

/// Every segment of `name`, oldest first: the rotated ones and the active one.
pub fn segments(dir: &Path, name: &str) -> Vec<Segment> {
    let mut out = rotated_segments(dir, name);
    let data = active_path(dir, name);
    let idx = idx_of(&data);
    if let Some(h) = read_header(&idx) {
        out.push(Segment {
            first_seq: h.first_seq,
            data,
            idx,
            active: true,
        });
    }
    out
}

fn read_header(idx: &Path) -> Option<Header> {
    let f = File::open(idx).ok()?;
    let mut b = [0u8; REC];
    f.read_exact_at(&mut b, 0).ok()?;
    Header::decode(&b)
}

fn wall_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)
}

/// What the capture task knows about a chunk besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ChunkMeta {
    pub first_seq: u64,
    pub lines: u64,
    pub wall_us: u64,
    pub mono_ns: u64,
    pub pid: u32,
    pub generation: u32,
    pub stream: Stream,
    pub pieces: bool,
}

/// Limits the writer applies after each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_files: u32,
}

/// The writer side: the capture task owns the only one per process.
pub struct DiskLog {
    dir: PathBuf,
    name: String,
    max_payload: u32,
    data: File,
    idx: File,
    /// Bytes in the active segment.
    size: u64,
    /// First seq of the active segment.
    seg_first: u64,
    /// Segments rotated away (all time, this run).
    pub rotations: u64,
}

impl DiskLog {
    /// Opens (or creates) the active segment and returns the writer and the sequence
    /// number the next line must get: one past the last line on disk.
    ///
    /// An active segment written with another line limit, or whose index is damaged, is
    /// rotated first; bytes written but not indexed (a crash between the two writes) are
    /// indexed now, so they stay readable.
    pub fn open(dir: &Path, name: &str, max_payload: usize) -> io::Result<(DiskLog, u64)> {
        let data_path = active_path(dir, name);
        let idx_path = idx_of(&data_path);
        let max_payload = max_payload as u32;
        // Where the newest rotated segment left off, for a missing or empty active segment.
        let rotated_next = rotated_segments(dir, name)
            .last()
            .and_then(|s| last_seq_of(&s.idx))
            .unwrap_or(0);
        let header = read_header(&idx_path);
        let data_exists = data_path.exists();
        let mut next = rotated_next;
        let mut reuse = false;
        if let Some(h) = header {
            next = next.max(last_seq_of(&idx_path).unwrap_or(h.first_seq));
            reuse = h.max_payload == max_payload;
        } else if data_exists && std::fs::metadata(&data_path)?.len() > 0 {
            // A log from before the index existed (or a damaged index): keep it aside,
            // unread; its lines have no sequence numbers.
            let keep = dir.join(format!("{name}.log.unindexed"));
            std::fs::rename(&data_path, &keep)?;
            let _ = std::fs::remove_file(&idx_path);
        }
        let mut log = if reuse {
            let data = open_append(&data_path)?;
            let idx = open_append(&idx_path)?;
            let size = data.metadata()?.len();
            let h = header.unwrap_or(Header {
                max_payload,
                first_seq: next,
                created_us: 0,
            });
            let mut log = DiskLog {
                dir: dir.to_path_buf(),
                name: name.to_owned(),
                max_payload,
                data,
                idx,
                size,
                seg_first: h.first_seq,
                rotations: 0,
            };
            next = log.repair(next)?;
            log
        } else {
            if header.is_some() {
                // Written with another line limit: rotate it away untouched.
                let first = header.map_or(next, |h| h.first_seq);
                let _ = std::fs::rename(&idx_path, idx_of(&rotated_path(dir, name, first)));
                let _ = std::fs::rename(&data_path, rotated_path(dir, name, first));
            }
            let (data, idx) = create_segment(dir, name, max_payload, next)?;
            DiskLog {
                dir: dir.to_path_buf(),
                name: name.to_owned(),
                max_payload,
                data,
                idx,
                size: 0,
                seg_first: next,
                rotations: 0,
            }
        };
        log.size = log.data.metadata()?.len();
        Ok((log, next))
    }

    /// Cuts a torn index record and indexes data bytes that have none. Returns the next seq.
    fn repair(&mut self, mut next: u64) -> io::Result<u64> {
        let idx_len = self.idx.metadata()?.len();
        let whole = idx_len.max(REC as u64) - (idx_len.max(REC as u64) - REC as u64) % REC as u64;
        if whole != idx_len {
            self.idx.set_len(whole)?;
        }
        let n = (whole - REC as u64) / REC as u64;
        let indexed_end = if n > 0 {
            let mut b = [0u8; REC];
            self.idx.read_exact_at(&mut b, REC as u64 * n)?;
            let r = Rec::decode(&b);
            r.offset + u64::from(r.len)
        } else {
            0
        };
        let len = self.data.metadata()?.len();
        if len > indexed_end {
            let mut tail = vec![0u8; (len - indexed_end) as usize];
            self.data.read_exact_at(&mut tail, indexed_end)?;
            let max = self.max_payload as usize;
            let lines = count_lines(&tail, max, false);
            let rec = Rec {
                first_seq: next,
                offset: indexed_end,
                wall_us: wall_now_us(),
                mono_ns: 0,
                len: tail.len() as u32,
                lines: lines.min(u64::from(MAX_REC_LINES)) as u32,
                pid: 0,
                generation: 0,
                stream: Stream::Stdout,
                pieces: false,
            };
            self.idx.write_all(&rec.encode())?;
            next += lines;
            tracing::warn!(process = %self.name, bytes = tail.len(), lines, "indexed disk log bytes written before a crash");
        } else if len < indexed_end {
            tracing::warn!(process = %self.name, "disk log shorter than its index; it was truncated by someone");
        }
        Ok(next)
    }

    /// Appends one chunk and its index record. On an error the bytes that did land are
    /// still counted in `size` (the offset of the next record stays right).
    pub fn append(&mut self, parts: &[&[u8]], meta: &ChunkMeta) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let offset = self.size;
        let r = write_all_vectored(&mut self.data, parts);
        if r.is_err() {
            self.size = self.data.metadata().map(|m| m.len()).unwrap_or(offset);
            return r;
        }
        self.size += total as u64;
        let mut rec = Rec {
            first_seq: meta.first_seq,
            offset,
            wall_us: meta.wall_us,
            mono_ns: meta.mono_ns,
            len: total as u32,
            lines: 0,
            pid: meta.pid,
            generation: meta.generation,
            stream: meta.stream,
            pieces: meta.pieces,
        };
        // One chunk is at most a few hundred KiB, far below the per-record line limit; a
        // larger count is split across records only in theory.
        let mut left = meta.lines;
        let mut recs = Vec::with_capacity(1);
        loop {
            let now = left.min(u64::from(MAX_REC_LINES));
            rec.lines = now as u32;
            recs.push(rec);
            left -= now;
            if left == 0 {
                break;
            }
            rec.first_seq += now;
            rec.len = 0;
        }
        let mut bytes = Vec::with_capacity(REC * recs.len());
        for r in &recs {
            bytes.extend_from_slice(&r.encode());
        }
        self.idx.write_all(&bytes)
    }

    /// Bytes in the active segment.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes the active segment under its rotated name, starts a new one whose first line
    /// is `next_seq`, and deletes the oldest segments beyond `max_files`.
    pub fn rotate(&mut self, next_seq: u64, max_files: u32) -> io::Result<()> {
        let data_path = active_path(&self.dir, &self.name);
        let keep = rotated_path(&self.dir, &self.name, self.seg_first);
        // Index first: a reader that lists between the two renames finds the data under
        // the active name without an index and retries.
        std::fs::rename(idx_of(&data_path), idx_of(&keep))?;
        std::fs::rename(&data_path, &keep)?;
        let (data, idx) = create_segment(&self.dir, &self.name, self.max_payload, next_seq)?;
        self.data = data;
        self.idx = idx;
        self.size = 0;
        self.seg_first = next_seq;
        self.rotations += 1;
        let rotated = rotated_segments(&self.dir, &self.name);
        let keep_rotated = max_files.saturating_sub(1) as usize;
        if rotated.len() > keep_rotated {
            for s in &rotated[..rotated.len() - keep_rotated] {
                let _ = std::fs::remove_file(&s.data);
                let _ = std::fs::remove_file(&s.idx);
            }
        }
        Ok(())
    }
}

fn create_segment(
    dir: &Path,
    name: &str,
    max_payload: u32,
    first_seq: u64,
) -> io::Result<(File, File)> {
    let data_path = active_path(dir, name);
    let idx_path = idx_of(&data_path);
    // The index (with its header) first, so a reader that sees the data file finds it.
    let mut idx = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .mode(0o640)
        .open(&idx_path)?;
    idx.write_all(
        &Header {
            max_payload,
            first_seq,
            created_us: wall_now_us(),
        }
        .encode(),
    )?;
    drop(idx);
    let idx = open_append(&idx_path)?;
    let data = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .mode(0o640)
        .open(&data_path)?;
    drop(data);
    let data = open_append(&data_path)?;
    Ok((data, idx))
}

/// One past the last line indexed in `idx` (the header's first seq when it has no record).
fn last_seq_of(idx: &Path) -> Option<u64> {
    let f = File::open(idx).ok()?;
    let mut b = [0u8; REC];
    f.read_exact_at(&mut b, 0).ok()?;
    let h = Header::decode(&b)?;
    let len = f.metadata().ok()?.len();
    let n = len.saturating_sub(REC as u64) / REC as u64;
    if n == 0 {
        return Some(h.first_seq);
    }
    f.read_exact_at(&mut b, REC as u64 * n).ok()?;
    Some(Rec::decode(&b).end_seq().max(h.first_seq))
}

fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading

/// An opened segment: its index and data files and its header.
struct OpenSeg {
    idx: File,
    data: File,
    header: Header,
    /// Records in the index (at open time).
    n: u64,
}

impl OpenSeg {
    fn open(s: &Segment) -> Option<OpenSeg> {
        let idx = File::open(&s.idx).ok()?;
        let data = File::open(&s.data).ok()?;
        let mut b = [0u8; REC];
        idx.read_exact_at(&mut b, 0).ok()?;
        let header = Header::decode(&b)?;
        let n = idx.metadata().ok()?.len().saturating_sub(REC as u64) / REC as u64;
        Some(OpenSeg {
            idx,
            data,
            header,
            n,
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
    let mut res = DiskRead {
        missed: 0,
        next_seq: from,
        stopped: false,
    };
    if from >= to || max == 0 {
        return res;
    }
    let segs = segments(dir, name);
    // The newest segment starting at or before `from`; earlier ones are not needed.
    let start = segs.iter().rposition(|s| s.first_seq <= from).unwrap_or(0);
    let mut kept = 0usize;
    let mut recs = Vec::new();
    let mut data = Vec::new();
    for s in &segs[start.min(segs.len())..] {
        let cursor = res.next_seq;
        if cursor >= to {
            break;
        }
        let Some(seg) = OpenSeg::open(s) else {
            // Deleted by rotation meanwhile (its lines are counted below as missed when
            // the next segment starts later), or torn: skip it.
            continue;
        };
        let seg_end = seg.end_seq();
        if seg_end <= cursor {
            continue;
        }
        if seg.header.first_seq > cursor {
            let gap = seg.header.first_seq.min(to) - cursor;
            res.missed += gap;
            res.next_seq += gap;
            if res.next_seq >= to {
                break;
            }
        }
        let max_payload = seg.header.max_payload as usize;
        let mut i = seg.find_seq(res.next_seq);
        'recs: while i < seg.n {
            seg.recs(i, 256, &mut recs);
            if recs.is_empty() {
                break;
            }
            i += recs.len() as u64;
            for r in &recs {
                if r.end_seq() <= res.next_seq {
                    continue;
                }
                if r.first_seq >= to {
                    break 'recs;
                }
                if r.first_seq > res.next_seq {
                    res.missed += r.first_seq - res.next_seq;
                    res.next_seq = r.first_seq;
                }
                data.resize(r.len as usize, 0);
                if seg.data.read_exact_at(&mut data, r.offset).is_err() {
                    // Truncated under us: the rest of this segment is gone.
                    break 'recs;
                }
                let mut stop = false;
                split_chunk(r, &data, max_payload, |seq, partial, bytes| {
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
                            kept += 1;
                        }
                        Verdict::Skip => {}
                        Verdict::Stop => {
                            res.stopped = true;
                            stop = true;
                            return;
                        }
                    }
                    res.next_seq = seq + 1;
                    if kept >= max {
                        stop = true;
                    }
                });
                if stop {
                    return res;
                }
                // A chunk shorter than its record says (torn write): skip its seqs.
                if res.next_seq < r.end_seq().min(to) {
                    res.missed += r.end_seq().min(to) - res.next_seq;
                    res.next_seq = r.end_seq().min(to);
                }
                if res.next_seq >= to {
                    break 'recs;
                }
            }
        }
    }
    res
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: u64, lines: u64, pieces: bool) -> ChunkMeta {
        ChunkMeta {
            first_seq,
            lines,
            wall_us: 1000 + first_seq,
            mono_ns: 5,
            pid: 42,
            generation: 3,
            stream: Stream::Stderr,
            pieces,
        }
    }

    fn all(dir: &Path, name: &str, from: u64) -> (Vec<Line>, DiskRead) {
        let mut out = Vec::new();
        let r = read_range(
            dir,
            name,
            from,
            u64::MAX,
            usize::MAX,
            &mut |_| Verdict::Keep,
            &mut out,
        );
        (out, r)
    }

    #[test]
    fn record_roundtrip() {
        let r = Rec {
            first_seq: u64::MAX - 5,
            offset: 1 << 40,
            wall_us: 123,
            mono_ns: 456,
            len: u32::MAX,
            lines: MAX_REC_LINES,
            pid: 7,
            generation: u32::MAX,
            stream: Stream::Stderr,
            pieces: true,
        };
        assert_eq!(Rec::decode(&r.encode()), r);
        let h = Header {
            max_payload: 65536,
            first_seq: 9,
            created_us: 77,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
    }

    #[test]
    fn split_matches_ring_rules() {
        let mut got = Vec::new();
        let rec = Rec::decode(&[0u8; REC]);
        split_chunk(&rec, b"ab\n\nabcdefghij\nxyz", 4, |s, p, b| {
            got.push((s, p, b.to_vec()))
        });
        let want: Vec<(u64, bool, Vec<u8>)> = vec![
            (0, false, b"ab".to_vec()),
            (1, false, b"".to_vec()),
            (2, true, b"abcd".to_vec()),
            (3, true, b"efgh".to_vec()),
            (4, false, b"ij".to_vec()),
            (5, true, b"xyz".to_vec()),
        ];
        assert_eq!(got, want);
        assert_eq!(count_lines(b"abcdefgh\n", 4, false), 2);
        assert_eq!(count_lines(b"abcdefgh", 4, true), 2);
    }

    #[test]
    fn write_read_rotate_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut log, next) = DiskLog::open(dir, "web", 8).unwrap();
        assert_eq!(next, 0);
        let mut seq = 0;
        for i in 0..100u64 {
            let line = format!("line {i}\n");
            log.append(&[line.as_bytes()], &meta(seq, 1, false))
                .unwrap();
            seq += 1;
            if log.size() >= 200 {
                log.rotate(seq, 3).unwrap();
            }
        }
        let segs = segments(dir, "web");
        assert_eq!(segs.len(), 3, "{segs:?}");
        let (lo, hi) = bounds(dir, "web").unwrap();
        assert_eq!(hi, 100);
        assert!(lo > 0);
        let (lines, r) = all(dir, "web", 0);
        assert_eq!(r.missed, lo);
        assert_eq!(r.next_seq, 100);
        assert_eq!(lines.len() as u64, 100 - lo);
        for l in &lines {
            assert_eq!(l.bytes, format!("line {}", l.meta.seq).as_bytes());
            assert_eq!(l.meta.pid, 42);
            assert_eq!(l.meta.stream, Stream::Stderr);
        }
        // Seek by seq and by time.
        let mut out = Vec::new();
        let r = read_range(dir, "web", 95, 98, 10, &mut |_| Verdict::Keep, &mut out);
        assert_eq!(
            out.iter().map(|l| l.meta.seq).collect::<Vec<_>>(),
            [95, 96, 97]
        );
        assert_eq!(r.next_seq, 98);
        assert_eq!(seq_at_time(dir, "web", 1000 + 97), Some(97));
        assert_eq!(seq_at_time(dir, "web", 5000), Some(100));
        assert_eq!(seq_at_time(dir, "web", 0), Some(lo));
        drop(log);
        // Reopen continues the sequence; a torn write is indexed.
        let (mut log, next) = DiskLog::open(dir, "web", 8).unwrap();
        assert_eq!(next, 100);
        log.append(&[b"more\n"], &meta(100, 1, false)).unwrap();
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(active_path(dir, "web"))
            .unwrap();
        f.write_all(b"torn1\ntorn2\n").unwrap();
        let (_log, next) = DiskLog::open(dir, "web", 8).unwrap();
        assert_eq!(next, 103);
        let (lines, _) = all(dir, "web", 100);
        let texts: Vec<&[u8]> = lines.iter().map(|l| &l.bytes[..]).collect();
        assert_eq!(texts, [&b"more"[..], b"torn1", b"torn2"]);
        // Another line limit: the old segment is rotated away, numbering goes on.
        let (_log, next) = DiskLog::open(dir, "web", 16).unwrap();
        assert_eq!(next, 103);
    }

    #[test]
    fn gaps_and_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut log, _) = DiskLog::open(dir, "p", 4).unwrap();
        log.append(&[b"abcd"], &meta(0, 1, true)).unwrap();
        log.append(&[b"abcdefg\n"], &meta(1, 2, false)).unwrap();
        // seqs 3..5 never reached the disk.
        log.append(&[b"z\n"], &meta(5, 1, false)).unwrap();
        let (lines, r) = all(dir, "p", 0);
        let got: Vec<(u64, bool, Vec<u8>)> = lines
            .iter()
            .map(|l| (l.meta.seq, l.meta.partial, l.bytes.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, true, b"abcd".to_vec()),
                (1, true, b"abcd".to_vec()),
                (2, false, b"efg".to_vec()),
                (5, false, b"z".to_vec()),
            ]
        );
        assert_eq!(r.missed, 2);
        assert_eq!(r.next_seq, 6);
    }
}
