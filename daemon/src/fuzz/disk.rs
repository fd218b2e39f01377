//! Fuzz target `disk`: the disk log's index and segment reader, on files the writer made
//! and then damage tore or corrupted.
//!
//! A case writes chunks with `DiskLog` (rotating now and then, old segments deleted by
//! `max_files`), then applies damage to the files in the directory (cut a file short,
//! overwrite bytes, append bytes, replace a file's contents), then reads: `read_range`
//! with a chosen range, `max` and filter, `seq_at_time`, `bounds`; then `DiskLog::open`
//! (which repairs a torn tail) and one more chunk.
//!
//! Checks, whatever the files hold: no panic, no allocation beyond the files' size; lines
//! come out in rising seq order inside the range, at most `max`, and every seq from `from`
//! to `next_seq` is accounted for once (a line the filter saw, or missed). Without damage:
//! exactly the lines written, missed only for deleted segments, `bounds` and `seq_at_time`
//! as written, and a reopen continues the numbering. After damage that only cut the active
//! segment's files short (what a crash or a full disk does), the reopened log takes one more
//! chunk and reads it back whole.

use super::input::Input;
use crate::logs::disk::{self, ChunkMeta, DiskLog, DiskRead, Rec, Verdict};
use brummer_core::Line;
use brummer_proto::Stream;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

const NAME: &str = "p";

/// A line as written: (seq, partial, bytes, wall_us, stream).
type Want = (u64, bool, Vec<u8>, u64, Stream);

/// Runs one case in `dir` (emptied first).
pub fn disk(dir: &Path, data: &[u8]) {
    clear(dir);
    let mut input = Input::new(data);
    let max_payload = input.upto(15) as usize + 1;
    let first_seq = if input.bool() { input.u64() >> 1 } else { 0 };
    let max_files = input.upto(4) as u32 + 1;

    // Writing. The first segment of a fresh directory starts at seq 0; a chosen start
    // is where the capture task would continue after an earlier run.
    let (mut log, next) = DiskLog::open(dir, NAME, max_payload).expect("open a fresh log");
    assert_eq!(next, 0);
    let mut next = first_seq;
    if first_seq > 0 {
        log.rotate(first_seq, max_files, &disk::Epoch::default())
            .expect("rotate");
    }
    let mut written: Vec<Want> = Vec::new();
    let chunks = input.upto(12);
    for i in 0..chunks {
        let pieces = input.upto(3) == 0;
        let mut bytes = input.bytes(40).to_vec();
        if pieces {
            bytes.retain(|&b| b != b'\n');
            bytes.truncate(max_payload * 3);
            if bytes.is_empty() {
                continue;
            }
        } else if bytes.last() != Some(&b'\n') {
            bytes.push(b'\n');
        }
        let gap = if input.upto(7) == 0 { input.upto(3) } else { 0 };
        next += gap;
        let lines = disk::count_lines(&bytes, max_payload, pieces);
        let meta = ChunkMeta {
            first_seq: next,
            lines,
            wall_us: 1_000 + 10 * i,
            mono_ns: i,
            pid: 7,
            generation: 1,
            stream: if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            pieces,
        };
        let rec = Rec {
            first_seq: next,
            offset: 0,
            wall_us: meta.wall_us,
            mono_ns: 0,
            len: bytes.len() as u32,
            lines: lines as u32,
            pid: 7,
            generation: 1,
            stream: meta.stream,
            pieces,
        };
        disk::split_chunk(&rec, &bytes, max_payload, |seq, partial, b| {
            written.push((seq, partial, b.to_vec(), meta.wall_us, meta.stream))
        });
        log.append(&[&bytes], &meta).expect("append");
        next += lines;
        if input.upto(3) == 0 {
            log.rotate(next, max_files, &disk::Epoch::default())
                .expect("rotate");
            let kept = oldest_kept(dir);
            written.retain(|w| kept.is_some_and(|k| k <= w.0));
        }
    }
    drop(log);

    // Damage.
    let damage = input.upto(3);
    // Only the active segment's files cut short (a crash mid-write, a full disk: rotated
    // segments were complete before their rename): the reopened log must work on.
    let mut torn_only = true;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("case directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for _ in 0..damage {
        if files.is_empty() {
            break;
        }
        let path = &files[input.upto(files.len() as u64 - 1) as usize];
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        let at = input.upto(len);
        match input.upto(3) {
            0 => {
                torn_only &= path.ends_with("p.log") || path.ends_with("p.log.idx");
                let f = std::fs::OpenOptions::new().write(true).open(path);
                f.and_then(|f| f.set_len(at)).expect("truncate");
            }
            1 => {
                torn_only = false;
                let f = std::fs::OpenOptions::new().write(true).open(path);
                let junk = input.bytes(16);
                f.and_then(|f| f.write_all_at(junk, at)).expect("overwrite");
            }
            2 => {
                torn_only = false;
                let f = std::fs::OpenOptions::new().append(true).open(path);
                let junk = input.bytes(64);
                f.and_then(|mut f| f.write_all(junk)).expect("append");
            }
            _ => {
                torn_only = false;
                std::fs::write(path, input.bytes(200)).expect("replace");
            }
        }
    }
    let intact = damage == 0 || files.is_empty();

    // Reading.
    let hi = next + 3;
    let from = input.upto(hi);
    let to = if input.bool() {
        u64::MAX
    } else {
        from + input.upto(hi - from.min(hi) + 3)
    };
    let max = if input.bool() {
        usize::MAX
    } else {
        input.upto(20) as usize
    };
    let pattern = input.u32();
    let (out, res, seen) = read(dir, from, to, max, pattern);
    check_read(from, to, max, &out, &res, seen);
    if intact {
        let (all, r, _) = read(dir, 0, u64::MAX, usize::MAX, 0);
        let got: Vec<Want> = all
            .iter()
            .map(|l| {
                (
                    l.meta.seq,
                    l.meta.partial,
                    l.bytes.clone(),
                    l.meta.wall_us,
                    l.meta.stream,
                )
            })
            .collect();
        assert_eq!(got, written, "the lines written");
        let first_kept = disk::segments(dir, NAME)
            .first()
            .map_or(next, |s| s.first_seq);
        assert_eq!(r.missed, next - written.len() as u64, "missed");
        assert_eq!(r.next_seq, next);
        assert_eq!(disk::bounds(dir, NAME), Some((first_kept, next)));
        if let Some(w) = written.last() {
            // The last chunk's time finds its first line or an earlier one.
            let at = disk::seq_at_time(dir, NAME, w.3).expect("lines on disk");
            assert!(at <= w.0, "seq_at_time {at} after {}", w.0);
        }
    } else {
        let _ = disk::bounds(dir, NAME);
        let _ = disk::seq_at_time(dir, NAME, input.u64());
    }

    // Reopening repairs what it can and goes on.
    let Ok((mut log, reopened)) = DiskLog::open(dir, NAME, max_payload) else {
        return;
    };
    if intact {
        assert_eq!(reopened, next, "a reopen continues the numbering");
    }
    let Some(end) = reopened.checked_add(2) else {
        return;
    };
    if !torn_only {
        return;
    }
    let meta = ChunkMeta {
        first_seq: reopened,
        lines: 2,
        wall_us: u64::MAX / 2,
        mono_ns: 0,
        pid: 9,
        generation: 2,
        stream: Stream::Stdout,
        pieces: false,
    };
    log.append(&[b"a\nb\n"], &meta)
        .expect("append after a reopen");
    let (out, res, _) = read(dir, reopened, end, usize::MAX, 0);
    let texts: Vec<&[u8]> = out.iter().map(|l| &l.bytes[..]).collect();
    assert_eq!(texts, [&b"a"[..], b"b"], "{res:?}");
}

/// The first seq of the oldest segment still on disk (a line before it was deleted by
/// `max_files`). Read once per rotation, not once per line: each read scans the directory.
fn oldest_kept(dir: &Path) -> Option<u64> {
    disk::segments(dir, NAME).first().map(|s| s.first_seq)
}

/// A range read whose filter keeps, skips or stops by `pattern` (two bits per line, all
/// kept when 0). Returns the lines, the result, and the lines the filter kept or skipped.
fn read(dir: &Path, from: u64, to: u64, max: usize, pattern: u32) -> (Vec<Line>, DiskRead, u64) {
    let mut out = Vec::new();
    let mut seen = 0u64;
    let mut calls = 0u32;
    let mut last: Option<u64> = None;
    let res = disk::read_range(
        dir,
        NAME,
        from,
        to,
        max,
        &mut |l: &Line| {
            let seq = l.meta.seq;
            assert!(from <= seq && seq < to, "line {seq} outside {from}..{to}");
            assert!(last.is_none_or(|p| p < seq), "line {seq} after {last:?}");
            last = Some(seq);
            let v = match (pattern >> (2 * (calls % 16))) & 3 {
                3 if pattern != 0 => Verdict::Stop,
                2 if pattern != 0 => Verdict::Skip,
                _ => Verdict::Keep,
            };
            calls += 1;
            if v != Verdict::Stop {
                seen += 1;
            }
            v
        },
        &mut out,
    );
    (out, res, seen)
}

fn check_read(from: u64, to: u64, max: usize, out: &[Line], res: &DiskRead, seen: u64) {
    assert!(out.len() <= max, "{} lines, max {max}", out.len());
    if from >= to || max == 0 {
        assert!(out.is_empty());
        assert_eq!(res.next_seq, from);
        return;
    }
    assert!(
        res.next_seq >= from && res.next_seq <= to,
        "{res:?} for {from}..{to}"
    );
    assert_eq!(
        res.next_seq - from,
        seen + res.missed,
        "every seq in {from}..{} is a line or missed: {res:?}, {seen} seen",
        res.next_seq
    );
}

fn clear(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
