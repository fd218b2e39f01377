//! Registry lookup and full-snapshot iteration: copy-on-write `Registry` (one ArcSwap load)
//! against the `RwLock<HashMap>` / `Mutex<HashMap>` it replaces, at 10, 100 and 1,000
//! processes, alone and while a background writer keeps swapping in changed maps.
//! Run: `cargo bench -p brummer-core --bench registry`.
//!
//! The baselines use the same FxHashMap and the same `Arc<Entry>` values, so the ratio is
//! the cost of the synchronisation, not of the hash function.

use brummer_core::{Registry, StatusCell};
use divan::Bencher;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [10, 100, 1000];

/// What the daemon keeps per program: an id and the hot status word.
struct Entry {
    id: u64,
    status: StatusCell,
}

fn entry(id: u64) -> Arc<Entry> {
    Arc::new(Entry {
        id,
        status: StatusCell::default(),
    })
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("worker-{i:04}")).collect()
}

trait Reg: Sync + Send {
    fn build(n: usize) -> Self;
    /// Lookup by name, reading one field of the entry (no Arc clone).
    fn lookup(&self, name: &str) -> u64;
    /// Visit every entry (what `list` / status-all does).
    fn sum(&self) -> u64;
    /// The writer's operation: replace one entry.
    fn replace(&self, name: &str, id: u64);
}

/// Ours: `Registry::load()` then `Snapshot::get`.
struct Cow(Registry<Entry>);

impl Reg for Cow {
    fn build(n: usize) -> Self {
        let r = Registry::new();
        r.update(|_| {
            let s = brummer_core::Snapshot::from_entries(
                names(n)
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| (n, entry(i as u64))),
            );
            (s, ())
        });
        Cow(r)
    }
    #[inline]
    fn lookup(&self, name: &str) -> u64 {
        self.0.load().get(name).map_or(0, |e| e.id)
    }
    fn sum(&self) -> u64 {
        self.0
            .load()
            .iter()
            .map(|(_, e)| e.id + u64::from(e.status.load().restarts()))
            .sum()
    }
    fn replace(&self, name: &str, id: u64) {
        self.0.insert(name, entry(id));
    }
}

/// Baseline: `RwLock<HashMap>`.
struct RwMap(RwLock<FxHashMap<Box<str>, Arc<Entry>>>);

impl Reg for RwMap {
    fn build(n: usize) -> Self {
        RwMap(RwLock::new(
            names(n)
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n.into_boxed_str(), entry(i as u64)))
                .collect(),
        ))
    }
    #[inline]
    fn lookup(&self, name: &str) -> u64 {
        self.0.read().unwrap().get(name).map_or(0, |e| e.id)
    }
    fn sum(&self) -> u64 {
        self.0
            .read()
            .unwrap()
            .values()
            .map(|e| e.id + u64::from(e.status.load().restarts()))
            .sum()
    }
    fn replace(&self, name: &str, id: u64) {
        self.0.write().unwrap().insert(name.into(), entry(id));
    }
}

/// Baseline: `Mutex<HashMap>` (seed 003's "map+mutex").
struct MutexMap(Mutex<FxHashMap<Box<str>, Arc<Entry>>>);

impl Reg for MutexMap {
    fn build(n: usize) -> Self {
        MutexMap(Mutex::new(
            names(n)
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n.into_boxed_str(), entry(i as u64)))
                .collect(),
        ))
    }
    #[inline]
    fn lookup(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).map_or(0, |e| e.id)
    }
    fn sum(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .values()
            .map(|e| e.id + u64::from(e.status.load().restarts()))
            .sum()
    }
    fn replace(&self, name: &str, id: u64) {
        self.0.lock().unwrap().insert(name.into(), entry(id));
    }
}

/// Runs `bench` with a background writer replacing entries round-robin until it returns.
fn with_writer<R: Reg>(r: &R, names: &[String], writer: bool, bench: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if writer {
            scope.spawn(|| {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    r.replace(&names[i % names.len()], i as u64);
                    i += 1;
                }
            });
        }
        bench();
        stop.store(true, Ordering::Relaxed);
    });
}

fn lookup_bench<R: Reg>(b: Bencher, n: usize, writer: bool) {
    let r = R::build(n);
    let names = names(n);
    // Every lookup hits a different name (the picking is not timed).
    let next = AtomicUsize::new(0);
    with_writer(&r, &names, writer, || {
        b.with_inputs(|| &names[next.fetch_add(7, Ordering::Relaxed) % n])
            .bench_values(|name| r.lookup(name));
    });
}

fn snapshot_bench<R: Reg>(b: Bencher, n: usize, writer: bool) {
    let r = R::build(n);
    let names = names(n);
    with_writer(&r, &names, writer, || {
        b.bench(|| r.sum());
    });
}

#[divan::bench(types = [Cow, RwMap, MutexMap], args = SIZES)]
fn lookup<R: Reg>(b: Bencher, n: usize) {
    lookup_bench::<R>(b, n, false);
}

/// N reader threads, no writer: reader-reader contention only.
#[divan::bench(types = [Cow, RwMap, MutexMap], args = SIZES, threads = [2, 4])]
fn lookup_concurrent<R: Reg>(b: Bencher, n: usize) {
    lookup_bench::<R>(b, n, false);
}

#[divan::bench(types = [Cow, RwMap, MutexMap], args = SIZES, threads = [1, 2, 4])]
fn lookup_with_writer<R: Reg>(b: Bencher, n: usize) {
    lookup_bench::<R>(b, n, true);
}

#[divan::bench(types = [Cow, RwMap, MutexMap], args = SIZES)]
fn snapshot<R: Reg>(b: Bencher, n: usize) {
    snapshot_bench::<R>(b, n, false);
}

#[divan::bench(types = [Cow, RwMap, MutexMap], args = SIZES, threads = [1, 2])]
fn snapshot_with_writer<R: Reg>(b: Bencher, n: usize) {
    snapshot_bench::<R>(b, n, true);
}

/// Ours through a per-reader `Reader` (cached snapshot: one pointer compare instead of the
/// debt-slot protocol). Each input carries its own reader, made untimed when the input is
/// generated, so a timed lookup on an unchanged registry is the cached path, and with the
/// writer running it is mostly the refresh path (the writer has swapped since the input was
/// made): both what a long-lived reader (a connection) would see.
fn reader_bench(b: Bencher, n: usize, writer: bool) {
    let r = Cow::build(n);
    let names = names(n);
    let next = AtomicUsize::new(0);
    with_writer(&r, &names, writer, || {
        b.with_inputs(|| {
            (
                r.0.reader(),
                &names[next.fetch_add(7, Ordering::Relaxed) % n],
            )
        })
        .bench_refs(|(rd, name)| rd.get(name).map_or(0, |e| e.id));
    });
}

#[divan::bench(args = SIZES)]
fn lookup_reader(b: Bencher, n: usize) {
    reader_bench(b, n, false);
}

#[divan::bench(args = SIZES, threads = [2, 4])]
fn lookup_reader_concurrent(b: Bencher, n: usize) {
    reader_bench(b, n, false);
}

#[divan::bench(args = SIZES, threads = [1, 2, 4])]
fn lookup_reader_with_writer(b: Bencher, n: usize) {
    reader_bench(b, n, true);
}

/// `Registry::get`, which hands out an owned `Arc<E>` (one refcount increment, shared
/// between readers of the same entry).
#[divan::bench(args = SIZES, threads = [1, 2])]
fn get_arc(b: Bencher, n: usize) {
    let r = Cow::build(n);
    let names = names(n);
    let next = AtomicUsize::new(0);
    b.with_inputs(|| &names[next.fetch_add(7, Ordering::Relaxed) % n])
        .bench_values(|name| r.0.get(name));
}
