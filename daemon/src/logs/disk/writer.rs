//! The writing side of a disk log: the capture task owns the only `DiskLog` of a program,
//! appends each chunk with its index record, and rotates segments by the program's limits.

use super::epoch::Epoch;
use super::format::*;
use brummer_proto::Stream;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub(super) fn open_append(path: &Path) -> io::Result<File> {
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
    /// Bytes in its index.
    idx_size: u64,
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
        Self::open_listed(dir, name, max_payload, None)
    }

    /// [`open`](Self::open) with the rotated segments already listed (from a [`Listing`]);
    /// `None` lists the folder.
    pub fn open_listed(
        dir: &Path,
        name: &str,
        max_payload: usize,
        rotated: Option<Vec<Segment>>,
    ) -> io::Result<(DiskLog, u64)> {
        let data_path = active_path(dir, name);
        let idx_path = idx_of(&data_path);
        let max_payload = max_payload as u32;
        // Where the newest rotated segment left off, for a missing or empty active segment.
        let rotated_next = rotated
            .unwrap_or_else(|| rotated_segments(dir, name))
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
                idx_size: 0,
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
                idx_size: 0,
                seg_first: next,
                rotations: 0,
            }
        };
        log.size = log.data.metadata()?.len();
        log.idx_size = log.idx.metadata()?.len();
        Ok((log, next))
    }

    /// A new, empty active segment whose first line is `first_seq`: for a log whose file
    /// or folder was deleted while brummerd wrote it (the folder must exist). A file found
    /// under the active name was not written by this writer: it is kept aside as
    /// `NAME.log.unindexed`, as `open` keeps a log it cannot read.
    pub fn create(
        dir: &Path,
        name: &str,
        max_payload: usize,
        first_seq: u64,
    ) -> io::Result<DiskLog> {
        let data_path = active_path(dir, name);
        if data_path.exists() {
            std::fs::rename(&data_path, dir.join(format!("{name}.log.unindexed")))?;
        }
        let max_payload = max_payload as u32;
        let (data, idx) = create_segment(dir, name, max_payload, first_seq)?;
        Ok(DiskLog {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            max_payload,
            data,
            idx,
            size: 0,
            idx_size: REC as u64,
            seg_first: first_seq,
            rotations: 0,
        })
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
            r.offset.saturating_add(u64::from(r.len))
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
            // A damaged index may have put `next` near `u64::MAX`.
            next = next.saturating_add(lines);
            tracing::warn!(process = %self.name, bytes = tail.len(), lines, "indexed disk log bytes written before a crash");
        } else if len < indexed_end {
            tracing::warn!(process = %self.name, "disk log shorter than its index; it was truncated by someone");
        }
        Ok(next)
    }

    /// Appends one chunk and its index record. On an error neither stays: what did land
    /// of the chunk and of its record is cut off again (truncating needs no free space), so
    /// the segment holds no bytes without a record and the index no torn record, and the
    /// chunk can be written again later.
    pub fn append(&mut self, parts: &[&[u8]], meta: &ChunkMeta) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let offset = self.size;
        if let Err(e) = write_all_vectored(&mut self.data, parts) {
            self.cut_back(offset);
            return Err(e);
        }
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
        if let Err(e) = self.idx.write_all(&bytes) {
            let _ = self.idx.set_len(self.idx_size);
            self.cut_back(offset);
            return Err(e);
        }
        self.size += total as u64;
        self.idx_size += bytes.len() as u64;
        Ok(())
    }

    /// After a failed append: the segment back to `offset` bytes. Should even that fail,
    /// `size` follows the file, so the next record's offset is still right.
    fn cut_back(&mut self, offset: u64) {
        self.size = match self.data.set_len(offset) {
            Ok(()) => offset,
            Err(_) => self.data.metadata().map_or(offset, |m| m.len()),
        };
    }

    /// Bytes in the active segment.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes the active segment under its rotated name, starts a new one whose first line
    /// is `next_seq`, and deletes the oldest segments beyond `max_files`.
    ///
    /// The new segment is made first, under a name no reader lists, so a full or read-only
    /// disk fails the rotation before anything was renamed: the active segment then stays
    /// as it is (and grows past `max_bytes` until a rotation succeeds). `epoch` is odd
    /// while names change (see `epoch`).
    pub fn rotate(&mut self, next_seq: u64, max_files: u32, epoch: &Epoch) -> io::Result<()> {
        let data_path = active_path(&self.dir, &self.name);
        let idx_path = idx_of(&data_path);
        let keep = rotated_path(&self.dir, &self.name, self.seg_first);
        let next_data = self.dir.join(format!("{}.log.next", self.name));
        let next_idx = idx_of(&next_data);
        let (data, idx) = match create_segment_at(&next_data, &next_idx, self.max_payload, next_seq)
        {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_file(&next_data);
                let _ = std::fs::remove_file(&next_idx);
                return Err(e);
            }
        };
        epoch.begin();
        let moved = swap_segments(&data_path, &idx_path, &keep, &next_data, &next_idx);
        epoch.end();
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&next_data);
            let _ = std::fs::remove_file(&next_idx);
            return Err(e);
        }
        self.data = data;
        self.idx = idx;
        self.size = 0;
        self.idx_size = REC as u64;
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

    /// Whether the active segment was unlinked (its folder or the file deleted) since it
    /// was opened: the writes would then go to a file nobody can open.
    pub fn unlinked(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.data.metadata()?.nlink() == 0)
    }

    /// First seq of the active segment.
    pub fn seg_first(&self) -> u64 {
        self.seg_first
    }
}

/// Renames the active segment to `keep` and the made-ready next one to the active names,
/// index before data each time (a reader that finds data finds its index). On a failure,
/// puts back what was moved, so the active segment is still the one written.
fn swap_segments(
    data_path: &Path,
    idx_path: &Path,
    keep: &Path,
    next_data: &Path,
    next_idx: &Path,
) -> io::Result<()> {
    let keep_idx = idx_of(keep);
    std::fs::rename(idx_path, &keep_idx)?;
    if let Err(e) = std::fs::rename(data_path, keep) {
        let _ = std::fs::rename(&keep_idx, idx_path);
        return Err(e);
    }
    let installed =
        std::fs::rename(next_idx, idx_path).and_then(|()| std::fs::rename(next_data, data_path));
    if let Err(e) = installed {
        let _ = std::fs::rename(keep, data_path);
        let _ = std::fs::rename(&keep_idx, idx_path);
        return Err(e);
    }
    Ok(())
}

pub(super) fn create_segment(
    dir: &Path,
    name: &str,
    max_payload: u32,
    first_seq: u64,
) -> io::Result<(File, File)> {
    let data_path = active_path(dir, name);
    let idx_path = idx_of(&data_path);
    create_segment_at(&data_path, &idx_path, max_payload, first_seq)
}

fn create_segment_at(
    data_path: &Path,
    idx_path: &Path,
    max_payload: u32,
    first_seq: u64,
) -> io::Result<(File, File)> {
    // The index (with its header) first, so a reader that sees the data file finds it.
    let mut idx = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .mode(0o640)
        .open(idx_path)?;
    idx.write_all(
        &Header {
            max_payload,
            first_seq,
            created_us: wall_now_us(),
        }
        .encode(),
    )?;
    drop(idx);
    let idx = open_append(idx_path)?;
    let data = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .mode(0o640)
        .open(data_path)?;
    drop(data);
    let data = open_append(data_path)?;
    Ok((data, idx))
}

/// One past the last line indexed in `idx` (the header's first seq when it has no record).
pub(super) fn last_seq_of(idx: &Path) -> Option<u64> {
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

pub(super) fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
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
