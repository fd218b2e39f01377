//! Log ring: lock-free `LogRing` against the `Mutex<VecDeque<Line>>` it replaces.
//! Run: `cargo bench -p brummer-core --bench ring`.
//!
//! - `append`: the writer pushes 100-byte lines into a 1 MiB ring (the daemon's default)
//!   while 0, 1 or 4 background readers follow it with `read_from` (64 lines a call) and
//!   call `tail(100)` every 16th round. Throughput is in lines/s.
//! - `tail_100`: one `tail(100)` call, with and without a writer pushing concurrently.
//!
//! Background readers spin, which on this 2-core machine means the writer shares its core
//! with them once there are more than one: the 4-reader rows measure oversubscription too,
//! for both implementations alike.

use brummer_core::{Line, LineMeta, LogRing, RingWriter, Stamp};
use brummer_proto::Stream;
use divan::Bencher;
use divan::counter::ItemsCount;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn main() {
    divan::main();
}

const RING_BYTES: usize = 1 << 20;
const LINE: [u8; 100] = [b'x'; 100];

trait Ring: Send + Sync + 'static {
    type Writer: Send;
    fn create() -> (Arc<Self>, Self::Writer);
    fn push(w: &mut Self::Writer, i: u64, bytes: &[u8]);
    /// Appends lines with seq >= `from` (at most `max`) to `out`; returns the next cursor.
    fn read_from(&self, from: u64, max: usize, out: &mut Vec<Line>) -> u64;
    fn tail(&self, n: usize, out: &mut Vec<Line>);
}

impl Ring for LogRing {
    type Writer = RingWriter;
    fn create() -> (Arc<Self>, RingWriter) {
        LogRing::new(RING_BYTES, 0)
    }
    #[inline]
    fn push(w: &mut RingWriter, i: u64, bytes: &[u8]) {
        let stamp = Stamp {
            stream: Stream::Stdout,
            pid: 4242,
            generation: 1,
            wall_us: i,
            mono_ns: i,
        };
        w.push_lines(&stamp, bytes);
    }
    fn read_from(&self, from: u64, max: usize, out: &mut Vec<Line>) -> u64 {
        LogRing::read_from(self, from, max, None, out).next_seq
    }
    fn tail(&self, n: usize, out: &mut Vec<Line>) {
        LogRing::tail(self, n, None, out)
    }
}

/// Baseline: a byte-bounded `VecDeque<Line>` behind one Mutex, same retention rule
/// (evict oldest until the new line fits), same `Line` handed to readers.
struct MutexRing {
    inner: Mutex<Deque>,
}

struct Deque {
    lines: VecDeque<Line>,
    bytes: usize,
    first_seq: u64,
    next_seq: u64,
}

struct MutexWriter(Arc<MutexRing>);

impl Ring for MutexRing {
    type Writer = MutexWriter;
    fn create() -> (Arc<Self>, MutexWriter) {
        let r = Arc::new(MutexRing {
            inner: Mutex::new(Deque {
                lines: VecDeque::new(),
                bytes: 0,
                first_seq: 0,
                next_seq: 0,
            }),
        });
        (Arc::clone(&r), MutexWriter(r))
    }
    #[inline]
    fn push(w: &mut MutexWriter, i: u64, bytes: &[u8]) {
        // Accounted like the lock-free ring: payload plus 48 bytes of header/trailer.
        let cost = bytes.len() + 48;
        let mut d = w.0.inner.lock().unwrap();
        while d.bytes + cost > RING_BYTES {
            let old = d.lines.pop_front().unwrap();
            d.bytes -= old.bytes.len() + 48;
            d.first_seq += 1;
        }
        let seq = d.next_seq;
        d.next_seq += 1;
        d.bytes += cost;
        d.lines.push_back(Line {
            meta: LineMeta {
                seq,
                wall_us: i,
                mono_ns: i,
                stream: Stream::Stdout,
                pid: 4242,
                generation: 1,
                partial: false,
            },
            bytes: bytes.to_vec(),
        });
    }
    fn read_from(&self, from: u64, max: usize, out: &mut Vec<Line>) -> u64 {
        let d = self.inner.lock().unwrap();
        let start = from.max(d.first_seq);
        let skip = (start - d.first_seq) as usize;
        let mut next = start;
        for l in d.lines.iter().skip(skip).take(max) {
            out.push(l.clone());
            next = l.meta.seq + 1;
        }
        next
    }
    fn tail(&self, n: usize, out: &mut Vec<Line>) {
        let d = self.inner.lock().unwrap();
        let skip = d.lines.len().saturating_sub(n);
        out.extend(d.lines.iter().skip(skip).cloned());
    }
}

fn follower<R: Ring>(ring: &R, stop: &AtomicBool) {
    let mut cursor = 0;
    let mut buf = Vec::with_capacity(128);
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        buf.clear();
        cursor = ring.read_from(cursor, 64, &mut buf);
        round += 1;
        if round.is_multiple_of(16) {
            buf.clear();
            ring.tail(100, &mut buf);
        }
        if buf.is_empty() {
            std::thread::yield_now();
        }
    }
}

#[divan::bench(types = [LogRing, MutexRing], args = [0, 1, 4])]
fn append<R: Ring>(b: Bencher, readers: usize) {
    let (ring, mut w) = R::create();
    // Fill once so every measured push also evicts, as in steady state.
    for i in 0..(RING_BYTES / 100) as u64 {
        R::push(&mut w, i, &LINE);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..readers {
            scope.spawn(|| follower(&*ring, &stop));
        }
        let mut i = 0u64;
        b.counter(ItemsCount::new(1usize)).bench_local(|| {
            i += 1;
            R::push(&mut w, i, divan::black_box(&LINE));
        });
        stop.store(true, Ordering::Relaxed);
    });
}

#[divan::bench(types = [LogRing, MutexRing], args = [false, true])]
fn tail_100<R: Ring>(b: Bencher, writer: bool) {
    let (ring, mut w) = R::create();
    for i in 0..(RING_BYTES / 100) as u64 {
        R::push(&mut w, i, &LINE);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if writer {
            let stop = &stop;
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    R::push(&mut w, i, &LINE);
                    i += 1;
                }
            });
        }
        b.counter(ItemsCount::new(100usize))
            .with_inputs(|| Vec::with_capacity(100))
            .bench_local_refs(|out: &mut Vec<Line>| ring.tail(100, out));
        stop.store(true, Ordering::Relaxed);
    });
}
