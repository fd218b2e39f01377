//! Status read: `StatusCell` (one AtomicU64) against the Mutex/RwLock-guarded struct it
//! replaces. Run: `cargo bench -p brummer-core --bench status`.
//!
//! `read` is one reader alone and times what a read returns: for us the packed `StatusWord`
//! (the load, nothing decoded), for the baselines the decoded struct copied out under the
//! lock. `read_one_field` and `read_decode_all` add decoding one field or all of them, so
//! the cost of decoding is never hidden. `read_with_writer` runs N reader threads (divan `threads`)
//! while one background thread stores new values in a tight loop, the worst case for the
//! cache line (a real supervisor stores a few times per process lifetime).

use brummer_core::{Hot, StatusCell, StatusWord};
use brummer_proto::ProcessState;
use divan::Bencher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

fn main() {
    divan::main();
}

/// What every status implementation offers the benchmark.
trait Status: Sync + Send + Default {
    /// What one read hands the caller: our packed word, the baselines' decoded struct.
    type Snap: Copy;
    fn read(&self) -> Self::Snap;
    /// One field out of a read (what `list` and most D-Bus properties need).
    fn state(s: Self::Snap) -> ProcessState;
    /// Every field out of a read.
    fn decode(s: Self::Snap) -> Hot;
    fn write(&self, h: Hot);
}

/// Ours.
#[derive(Default)]
struct Atomic(StatusCell);

impl Status for Atomic {
    type Snap = StatusWord;
    #[inline]
    fn read(&self) -> StatusWord {
        self.0.load()
    }
    #[inline]
    fn state(s: StatusWord) -> ProcessState {
        s.state()
    }
    #[inline]
    fn decode(s: StatusWord) -> Hot {
        s.hot()
    }
    #[inline]
    fn write(&self, h: Hot) {
        self.0.store(h)
    }
}

/// Baseline: the decoded struct behind a Mutex (what seed 003 measured as "mutex"). Its read
/// copies the whole struct out, so its "decode" is free.
#[derive(Default)]
struct Mutexed(Mutex<Hot>);

impl Status for Mutexed {
    type Snap = Hot;
    #[inline]
    fn read(&self) -> Hot {
        *self.0.lock().unwrap()
    }
    #[inline]
    fn state(s: Hot) -> ProcessState {
        s.state
    }
    #[inline]
    fn decode(s: Hot) -> Hot {
        s
    }
    #[inline]
    fn write(&self, h: Hot) {
        *self.0.lock().unwrap() = h
    }
}

/// Baseline: the same struct behind an RwLock.
#[derive(Default)]
struct RwLocked(RwLock<Hot>);

impl Status for RwLocked {
    type Snap = Hot;
    #[inline]
    fn read(&self) -> Hot {
        *self.0.read().unwrap()
    }
    #[inline]
    fn state(s: Hot) -> ProcessState {
        s.state
    }
    #[inline]
    fn decode(s: Hot) -> Hot {
        s
    }
    #[inline]
    fn write(&self, h: Hot) {
        *self.0.write().unwrap() = h
    }
}

fn hot(i: u32) -> Hot {
    Hot {
        state: if i.is_multiple_of(2) {
            ProcessState::Running
        } else {
            ProcessState::Backoff
        },
        pid: Some(1000 + (i & 0xffff)),
        restarts: i & 0xff,
        generation: i & 0xffff,
    }
}

#[divan::bench(types = [Atomic, Mutexed, RwLocked])]
fn read<S: Status>(b: Bencher) {
    let s = S::default();
    s.write(hot(1));
    b.bench(|| divan::black_box(&s).read());
}

/// A read plus one field decoded, as `list` (state) or D-Bus `Pid` use it.
#[divan::bench(types = [Atomic, Mutexed, RwLocked])]
fn read_one_field<S: Status>(b: Bencher) {
    let s = S::default();
    s.write(hot(1));
    b.bench(|| S::state(divan::black_box(&s).read()));
}

/// A read plus every field decoded into `Hot` (ours: shifts, the state table lookup with its
/// fallback and the `Option` for pid 0; the baselines already hold a decoded struct).
#[divan::bench(types = [Atomic, Mutexed, RwLocked])]
fn read_decode_all<S: Status>(b: Bencher) {
    let s = S::default();
    s.write(hot(1));
    b.bench(|| S::decode(divan::black_box(&s).read()));
}

/// Readers only, no writer: shows whether a read itself contends (the RwLock's reader count
/// and the Mutex both write a shared cache line; the atomic load does not).
#[divan::bench(types = [Atomic, Mutexed, RwLocked], threads = [2, 4])]
fn read_concurrent<S: Status>(b: Bencher) {
    let s = S::default();
    s.write(hot(1));
    b.bench(|| divan::black_box(&s).read());
}

#[divan::bench(types = [Atomic, Mutexed, RwLocked], threads = [1, 2, 4])]
fn read_with_writer<S: Status>(b: Bencher) {
    let s = S::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                s.write(hot(i));
                i = i.wrapping_add(1);
            }
        });
        b.bench(|| divan::black_box(&s).read());
        stop.store(true, Ordering::Relaxed);
    });
}

/// Measurement floor: a bare `AtomicU64` Acquire load in the same divan loop. On this
/// machine the loop itself costs about as much as the load, so sub-ns targets are below
/// what divan can resolve here; compare `read/Atomic` against this row.
#[divan::bench(threads = [1, 2, 4])]
fn floor_bare_atomic_load(b: Bencher) {
    let w = std::sync::atomic::AtomicU64::new(7);
    b.bench(|| divan::black_box(&w).load(Ordering::Acquire));
}
