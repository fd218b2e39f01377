//! Fuzz target `ring`: brummer-core's log ring, read while its writer writes.
//!
//! The input picks a ring size (4 to 16 KiB, so it wraps within a case), a first seq, the
//! writer's pushes (`push_lines` of chosen bytes, `push_piece`) repeated a chosen number
//! of times, and the reader's operations (`read_from` with a chosen position, `max` and
//! stream; `tail`; a follower that goes on from each `next_seq`). A writer thread pushes
//! while the calling thread reads; the lines each seq must hold are computed beforehand
//! from the push rules (cut at `\n`, lines over `max_payload` cut into partial pieces).
//! The writer thread is started once per calling thread and takes one case after another
//! (starting a thread per case cost more than the case itself), so each case still has a
//! writer of its own ring running beside its reader.
//!
//! Checks, on every read: each line returned is exactly the line of its seq (bytes,
//! partial flag, stream, stamp: never a torn line); seqs rise; `read_from` starts at
//! `from` plus what it reports missed, and lines it reports missed had really left the
//! ring; `next_seq` never passes what was pushed; the follower sees every seq once, as a
//! line or missed. After the writer ends, one read returns exactly the lines still held.

use super::input::Input;
use brummer_core::{Line, LogRing, RingWriter, Stamp};
use brummer_proto::Stream;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

/// One push of the writer (its bytes owned: the writer thread outlives the input).
enum Push {
    Lines(Stream, Vec<u8>),
    Piece(Stream, Vec<u8>),
}

/// What the writer thread does for one case, and where it says how that went.
struct Job {
    writer: RingWriter,
    pushes: Vec<Push>,
    repeat: u64,
    done: SyncSender<std::thread::Result<()>>,
}

thread_local! {
    /// The writer thread of the calling thread; it ends when the caller does (its queue
    /// closes).
    static WRITER: SyncSender<Job> = {
        let (jobs, queue) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("fuzz-ring-writer".into())
            .spawn(move || writer_thread(queue))
            .expect("start the ring fuzz target's writer thread");
        jobs
    };
}

fn writer_thread(queue: Receiver<Job>) {
    for job in queue {
        let Job {
            mut writer,
            pushes,
            repeat,
            done,
        } = job;
        // A panic is the case's failure: it goes back to the reader, which fails with it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for r in 0..repeat {
                for (i, p) in pushes.iter().enumerate() {
                    push(&mut writer, p, (r as usize * pushes.len() + i) as u32);
                }
            }
        }));
        // Everything of the case is freed before the reader hears it is done, so that no
        // allocation of one case is freed during the next (libFuzzer's leak check counts
        // them per case).
        drop((writer, pushes));
        // The reader is gone if it failed first; its panic is the one reported.
        let _ = done.send(r);
    }
}

/// One read of the reader.
enum Op {
    ReadFrom {
        back: u64,
        max: usize,
        stream: Option<Stream>,
    },
    Tail {
        n: usize,
        stream: Option<Stream>,
    },
    Follow {
        max: usize,
    },
}

/// What a seq holds: bytes, partial, stream, and the push it came from (its stamp).
struct Want {
    bytes: Vec<u8>,
    partial: bool,
    stream: Stream,
    push: u32,
}

pub fn ring(data: &[u8]) {
    let mut input = Input::new(data);
    let capacity = 4096 << input.upto(2);
    let first_seq = if input.bool() {
        u64::from(input.u32())
    } else {
        0
    };
    let stream = |b: bool| if b { Stream::Stderr } else { Stream::Stdout };
    let pushes: Vec<Push> = (0..input.upto(15) + 1)
        .map(|_| {
            let kind = input.u8();
            let s = stream(kind & 2 != 0);
            let big = kind & 4 != 0;
            let bytes = input.bytes(if big { 2500 } else { 100 }).to_vec();
            if kind & 1 == 0 {
                Push::Lines(s, bytes)
            } else {
                Push::Piece(s, bytes)
            }
        })
        .collect();
    let repeat = input.upto(15) + 1;
    let ops: Vec<Op> = (0..input.upto(15) + 1)
        .map(|_| {
            let kind = input.u8();
            let filter = match (kind >> 2) & 3 {
                1 => Some(Stream::Stdout),
                2 => Some(Stream::Stderr),
                _ => None,
            };
            match kind & 3 {
                0 => Op::Tail {
                    n: input.upto(40) as usize,
                    stream: filter,
                },
                1 => Op::Follow {
                    max: input.upto(40) as usize + 1,
                },
                _ => Op::ReadFrom {
                    back: input.upto(200),
                    max: if input.bool() {
                        usize::MAX
                    } else {
                        input.upto(40) as usize
                    },
                    stream: filter,
                },
            }
        })
        .collect();

    let (ring, writer) = LogRing::new(capacity, first_seq);
    let want = expected(&pushes, repeat, ring.max_payload());
    let check = Checker {
        ring: &ring,
        want: &want,
        first_seq,
    };
    let (done, finished) = mpsc::sync_channel(1);
    WRITER.with(|w| {
        w.send(Job {
            writer,
            pushes,
            repeat,
            done,
        })
        .expect("the ring fuzz target's writer thread is gone")
    });
    let mut follow = first_seq;
    // Reads go on until the writer is done, then once more. Between rounds the reader
    // yields, so that a writer waiting for the same core gets it instead of the reader
    // spinning out its time slice.
    let outcome = loop {
        let last = match finished.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => panic!("the ring's writer thread died"),
        };
        for op in &ops {
            check.op(op, &mut follow);
        }
        match last {
            Some(r) => break r,
            None => std::thread::yield_now(),
        }
    };
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    // Quiet: one read from the start returns exactly what is held.
    let end = first_seq + want.len() as u64;
    assert_eq!(ring.next_seq(), end);
    let mut out = Vec::new();
    let o = ring.read_from(first_seq, usize::MAX, None, &mut out);
    let oldest = ring.oldest_seq();
    assert_eq!(o.missed, oldest - first_seq);
    assert_eq!(o.next_seq, end);
    assert_eq!(out.len() as u64, end - oldest);
    for l in &out {
        check.line(l);
    }
}

/// The pushes' lines, in seq order.
fn expected(pushes: &[Push], repeat: u64, max: usize) -> Vec<Want> {
    let mut want = Vec::new();
    for r in 0..repeat {
        for (i, p) in pushes.iter().enumerate() {
            let push = (r as usize * pushes.len() + i) as u32;
            let mut line = |bytes: &[u8], partial, stream| {
                want.push(Want {
                    bytes: bytes.to_vec(),
                    partial,
                    stream,
                    push,
                })
            };
            match *p {
                Push::Piece(s, ref b) => line(&b[..b.len().min(max)], true, s),
                Push::Lines(s, ref b) => {
                    let mut parts: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                    // Bytes after the last newline are a line; none after it are not,
                    // except that empty bytes are one empty line.
                    if parts.len() > 1 && parts.last().is_some_and(|l| l.is_empty()) {
                        parts.pop();
                    }
                    for l in parts {
                        let mut rest = l;
                        while rest.len() > max {
                            line(&rest[..max], true, s);
                            rest = &rest[max..];
                        }
                        line(rest, false, s);
                    }
                }
            }
        }
    }
    want
}

fn stamp(stream: Stream, push: u32) -> Stamp {
    Stamp {
        stream,
        pid: push ^ 0x5a5a,
        generation: push.wrapping_mul(3),
        wall_us: u64::from(push) * 10,
        mono_ns: u64::from(push) * 1000 + 7,
    }
}

fn push(w: &mut RingWriter, p: &Push, n: u32) {
    match *p {
        Push::Lines(s, ref b) => w.push_lines(&stamp(s, n), b),
        Push::Piece(s, ref b) => w.push_piece(&stamp(s, n), b),
    };
}

struct Checker<'a> {
    ring: &'a LogRing,
    want: &'a [Want],
    first_seq: u64,
}

impl Checker<'_> {
    /// The line is exactly what its seq holds.
    fn line(&self, l: &Line) {
        let seq = l.meta.seq;
        let i = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.want.len())
            .unwrap_or_else(|| panic!("line {seq} was never pushed"));
        let w = &self.want[i];
        let s = stamp(w.stream, w.push);
        assert!(
            l.bytes == w.bytes
                && l.meta.partial == w.partial
                && l.meta.stream == w.stream
                && l.meta.pid == s.pid
                && l.meta.generation == s.generation
                && l.meta.wall_us == s.wall_us
                && l.meta.mono_ns == s.mono_ns,
            "line {seq} torn: got {:?} {:?}, pushed {:?} partial {} {:?} push {}",
            l.meta,
            l.bytes,
            w.bytes,
            w.partial,
            w.stream,
            w.push
        );
    }

    fn rising(&self, out: &[Line]) {
        for pair in out.windows(2) {
            assert!(pair[0].meta.seq < pair[1].meta.seq, "seqs out of order");
        }
        for l in out {
            self.line(l);
        }
    }

    fn op(&self, op: &Op, follow: &mut u64) {
        let mut out = Vec::new();
        match *op {
            Op::Tail { n, stream } => {
                self.ring.tail(n, stream, &mut out);
                assert!(out.len() <= n);
                self.rising(&out);
                if stream.is_none() {
                    for pair in out.windows(2) {
                        assert_eq!(pair[0].meta.seq + 1, pair[1].meta.seq, "tail has a hole");
                    }
                }
                for l in &out {
                    assert!(stream.is_none_or(|s| s == l.meta.stream));
                }
            }
            Op::ReadFrom { back, max, stream } => {
                let from = self.ring.next_seq().saturating_sub(back);
                self.read_from(from, max, stream, &mut out);
            }
            Op::Follow { max } => {
                let o = self.read_from(*follow, max, None, &mut out);
                // Every seq from the cursor on is a line or missed, once.
                assert_eq!(o.next_seq, *follow + o.missed + out.len() as u64);
                *follow = o.next_seq;
            }
        }
    }

    fn read_from(
        &self,
        from: u64,
        max: usize,
        stream: Option<Stream>,
        out: &mut Vec<Line>,
    ) -> brummer_core::ReadOutcome {
        let o = self.ring.read_from(from, max, stream, out);
        let pushed = self.ring.next_seq();
        let oldest = self.ring.oldest_seq();
        let start = from.max(self.first_seq);
        self.rising(out);
        assert!(
            o.next_seq >= start && o.next_seq <= pushed,
            "{o:?} from {from}, {pushed} pushed"
        );
        // What was reported missed had left the ring (the oldest seq only grows).
        assert!(
            start + o.missed <= oldest.max(start),
            "{o:?} from {from}, oldest {oldest}"
        );
        let taken = o.next_seq - start - o.missed;
        assert!(taken <= max as u64, "{taken} lines taken, max {max}");
        if let Some(first) = out.first() {
            assert!(first.meta.seq >= start + o.missed);
        }
        if stream.is_none() {
            assert_eq!(out.len() as u64, taken);
            for (k, l) in out.iter().enumerate() {
                assert_eq!(
                    l.meta.seq,
                    start + o.missed + k as u64,
                    "a hole in the lines read"
                );
            }
        } else {
            assert!(out.iter().all(|l| Some(l.meta.stream) == stream));
        }
        o
    }
}
