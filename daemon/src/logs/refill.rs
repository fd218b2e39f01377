//! Disk chunks made again from ring lines: when the disk log takes writes again after a
//! failure, the lines the ring still holds are written from there (`persist`), so the disk
//! has no hole that memory could fill. Pure: lines in, chunks (bytes and index data) out.
//!
//! A chunk read back from disk must give the same lines, sequence numbers and `partial`
//! marks as the ring: a line's pieces (all but the last `partial`, each exactly the ring's
//! line limit) are joined and end with one newline, which the disk cuts into the same
//! pieces again (docs/logs.md, "Index format"); pieces whose line does not end within the
//! lines given (its last piece is not captured yet, or a stamp changes inside the line)
//! become a `pieces` chunk of their own, as the capture writes them.

use super::disk::ChunkMeta;
use brummer_core::Line;

/// Bytes of one chunk made from ring lines (a capture read is at most 256 KiB too).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// One chunk: its bytes and its index data.
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub meta: ChunkMeta,
}

/// Builds chunks from consecutive ring lines, each chunk of lines with one stamp.
#[derive(Default)]
pub struct Chunker {
    cur: Option<Open>,
    done: Vec<Chunk>,
}

/// The chunk being built.
struct Open {
    bytes: Vec<u8>,
    meta: ChunkMeta,
    /// Where the pieces of an unfinished line begin, and how many there are.
    tail_at: usize,
    tail_pieces: u64,
}

impl Chunker {
    /// Adds the next line (its seq one past the previous one's).
    pub fn push(&mut self, l: &Line) {
        let m = &l.meta;
        let same = self.cur.as_ref().is_some_and(|c| {
            c.meta.wall_us == m.wall_us
                && c.meta.mono_ns == m.mono_ns
                && c.meta.stream == m.stream
                && c.meta.pid == m.pid
                && c.meta.generation == m.generation
                && c.meta.first_seq + c.meta.lines == m.seq
                && (c.tail_pieces > 0 || c.bytes.len() < CHUNK_BYTES)
        });
        if !same {
            self.flush();
            self.cur = Some(Open {
                bytes: Vec::new(),
                meta: ChunkMeta {
                    first_seq: m.seq,
                    lines: 0,
                    wall_us: m.wall_us,
                    mono_ns: m.mono_ns,
                    pid: m.pid,
                    generation: m.generation,
                    stream: m.stream,
                    pieces: false,
                },
                tail_at: 0,
                tail_pieces: 0,
            });
        }
        let Some(c) = self.cur.as_mut() else {
            return;
        };
        c.bytes.extend_from_slice(&l.bytes);
        c.meta.lines += 1;
        if m.partial {
            c.tail_pieces += 1;
        } else {
            c.bytes.push(b'\n');
            c.tail_at = c.bytes.len();
            c.tail_pieces = 0;
        }
    }

    /// The chunks finished so far, in order; the one being built stays.
    pub fn take(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.done)
    }

    /// Every chunk, the one being built included.
    pub fn finish(mut self) -> Vec<Chunk> {
        self.flush();
        self.done
    }

    fn flush(&mut self) {
        let Some(mut c) = self.cur.take() else {
            return;
        };
        if c.tail_pieces == 0 {
            self.done.push(Chunk {
                bytes: c.bytes,
                meta: c.meta,
            });
            return;
        }
        // Pieces of a line whose end is not here: a chunk of pieces of their own.
        let pieces = c.bytes.split_off(c.tail_at);
        let whole = c.meta.lines - c.tail_pieces;
        if whole > 0 {
            self.done.push(Chunk {
                bytes: c.bytes,
                meta: ChunkMeta {
                    lines: whole,
                    ..c.meta
                },
            });
        }
        self.done.push(Chunk {
            bytes: pieces,
            meta: ChunkMeta {
                first_seq: c.meta.first_seq + whole,
                lines: c.tail_pieces,
                pieces: true,
                ..c.meta
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::disk::{Rec, split_chunk};
    use brummer_core::LineMeta;
    use brummer_proto::Stream;

    fn line(seq: u64, wall_us: u64, partial: bool, bytes: &[u8]) -> Line {
        Line {
            meta: LineMeta {
                seq,
                wall_us,
                mono_ns: wall_us * 1000,
                stream: Stream::Stdout,
                pid: 9,
                generation: 1,
                partial,
            },
            bytes: bytes.to_vec(),
        }
    }

    /// What the disk reader makes of the chunks: (seq, partial, bytes) per line.
    fn read_back(chunks: &[Chunk], max: usize) -> Vec<(u64, bool, Vec<u8>)> {
        let mut out = Vec::new();
        for c in chunks {
            let rec = Rec {
                first_seq: c.meta.first_seq,
                offset: 0,
                wall_us: c.meta.wall_us,
                mono_ns: c.meta.mono_ns,
                len: c.bytes.len() as u32,
                lines: c.meta.lines as u32,
                pid: c.meta.pid,
                generation: c.meta.generation,
                stream: c.meta.stream,
                pieces: c.meta.pieces,
            };
            let mut n = 0;
            split_chunk(&rec, &c.bytes, max, |s, p, b| {
                out.push((s, p, b.to_vec()));
                n += 1;
            });
            assert_eq!(
                n, c.meta.lines,
                "chunk at {} counts its lines",
                c.meta.first_seq
            );
        }
        out
    }

    #[test]
    fn chunks_read_back_as_the_ring_lines_they_came_from() {
        const MAX: usize = 4;
        // From the middle of a pieced line on (its first pieces already gone), a stamp
        // change inside a line, a line of exactly two pieces, and an unfinished line last.
        let lines = vec![
            line(10, 1, true, b"efgh"),
            line(11, 1, false, b"ij"),
            line(12, 1, false, b""),
            line(13, 1, true, b"abcd"),
            line(14, 2, true, b"efgh"),
            line(15, 2, false, b"ij"),
            line(16, 2, true, b"abcd"),
            line(17, 2, false, b"efgh"),
            line(18, 3, false, b"x"),
            line(19, 3, true, b"abcd"),
            line(20, 3, true, b"efgh"),
        ];
        let mut c = Chunker::default();
        for l in &lines {
            c.push(l);
        }
        let chunks = c.finish();
        let want: Vec<(u64, bool, Vec<u8>)> = lines
            .iter()
            .map(|l| (l.meta.seq, l.meta.partial, l.bytes.clone()))
            .collect();
        assert_eq!(read_back(&chunks, MAX), want);
        // One chunk per stamp, plus the pieces cut off where a stamp changed mid-line or
        // the lines ended mid-line.
        let shape: Vec<(u64, u64, bool)> = chunks
            .iter()
            .map(|c| (c.meta.first_seq, c.meta.lines, c.meta.pieces))
            .collect();
        assert_eq!(
            shape,
            [
                (10, 3, false),
                (13, 1, true),
                (14, 4, false),
                (18, 1, false),
                (19, 2, true)
            ]
        );
        assert_eq!(chunks[2].meta.wall_us, 2);
    }

    #[test]
    fn chunks_stay_near_the_size_of_a_read() {
        let text = vec![b'a'; 1000];
        let mut c = Chunker::default();
        for seq in 0..1000 {
            c.push(&line(seq, 1, false, &text));
        }
        let mut chunks = c.take();
        chunks.extend(c.finish());
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.bytes.len() <= CHUNK_BYTES + 1001));
        assert_eq!(chunks.iter().map(|c| c.meta.lines).sum::<u64>(), 1000);
    }
}
