//! The disk log's format: the index header and records, how a chunk's bytes are cut into
//! lines again, and how segments are named and found. Shared by the writer and the reader;
//! `docs/logs.md` describes the bytes.

use brummer_proto::Stream;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
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

    /// The sequence number after the chunk (`u64::MAX` at most: a damaged record may hold
    /// any first seq).
    pub fn end_seq(&self) -> u64 {
        self.first_seq.saturating_add(u64::from(self.lines))
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
/// the last of a line marked partial), as the capture task pushed them into the ring. Seqs
/// stop at `u64::MAX` (a damaged record may start near it and hold more lines than it says).
pub fn split_chunk(rec: &Rec, data: &[u8], max: usize, mut f: impl FnMut(u64, bool, &[u8])) {
    let max = max.max(1);
    let mut seq = rec.first_seq;
    if rec.pieces {
        for piece in data.chunks(max) {
            f(seq, true, piece);
            seq = seq.saturating_add(1);
        }
        return;
    }
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        let line = &data[start..nl];
        if line.len() <= max {
            f(seq, false, line);
            seq = seq.saturating_add(1);
        } else {
            let mut rest = line;
            while rest.len() > max {
                f(seq, true, &rest[..max]);
                seq = seq.saturating_add(1);
                rest = &rest[max..];
            }
            f(seq, false, rest);
            seq = seq.saturating_add(1);
        }
        start = nl + 1;
    }
    // Bytes after the last newline can only come from a recovered, unfinished write.
    if start < data.len() {
        for piece in data[start..].chunks(max) {
            f(seq, true, piece);
            seq = seq.saturating_add(1);
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

pub(super) fn idx_of(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

pub(super) fn rotated_path(dir: &Path, name: &str, first_seq: u64) -> PathBuf {
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
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for ent in rd.flatten() {
        if let Some((of, seq)) = ent.file_name().to_str().and_then(parse_rotated)
            && of == name
        {
            out.push(rotated_segment(ent.path(), seq));
        }
    }
    out.sort_by_key(|s| s.first_seq);
    out
}

/// The program and first seq a rotated segment's file name (`NAME.log.<first_seq:020>`)
/// names; `None` for any other file.
fn parse_rotated(fname: &str) -> Option<(&str, u64)> {
    let digits = fname.len().checked_sub(20)?;
    let rest = fname.get(digits..)?;
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = fname.get(..digits)?.strip_suffix(".log.")?;
    Some((name, rest.parse().ok()?))
}

fn rotated_segment(data: PathBuf, first_seq: u64) -> Segment {
    Segment {
        first_seq,
        idx: idx_of(&data),
        data,
        active: false,
    }
}

/// The rotated segments of every log in a folder, from one listing of it: opening every
/// program's log at start-up lists the folder once, not once per program (which made
/// start-up quadratic in the number of programs).
///
/// Only a log's own writer adds or removes its segments, so what was listed stays true for
/// a program until its log is first opened; a program taken once is not answered again
/// (its writer may have rotated since), and its caller lists the folder.
pub struct Listing {
    rotated: HashMap<String, Vec<Segment>>,
    taken: HashSet<String>,
}

impl Listing {
    /// Lists `dir`; an unreadable folder lists as empty, as [`rotated_segments`] does.
    pub fn read(dir: &Path) -> Listing {
        let mut rotated: HashMap<String, Vec<Segment>> = HashMap::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for ent in rd.flatten() {
                if let Some((name, seq)) = ent.file_name().to_str().and_then(parse_rotated) {
                    rotated
                        .entry(name.to_owned())
                        .or_default()
                        .push(rotated_segment(ent.path(), seq));
                }
            }
        }
        for segs in rotated.values_mut() {
            segs.sort_by_key(|s| s.first_seq);
        }
        Listing {
            rotated,
            taken: HashSet::new(),
        }
    }

    /// `name`'s rotated segments, oldest first, as [`rotated_segments`] would list them;
    /// `None` when `name` was taken before.
    pub fn take(&mut self, name: &str) -> Option<Vec<Segment>> {
        if !self.taken.insert(name.to_owned()) {
            return None;
        }
        Some(self.rotated.remove(name).unwrap_or_default())
    }
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

pub(super) fn read_header(idx: &Path) -> Option<Header> {
    let f = File::open(idx).ok()?;
    let mut b = [0u8; REC];
    f.read_exact_at(&mut b, 0).ok()?;
    Header::decode(&b)
}

pub(super) fn wall_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
