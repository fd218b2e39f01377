//! Event publish: `EventBus` (per-subscriber lock-free ArrayQueue, drop-oldest) against a
//! `Mutex<Vec<VecDeque>>` bus with the same drop-oldest rule, where subscribers pop under
//! the bus lock. Run: `cargo bench -p brummer-core --bench bus`.
//!
//! `publish_stalled`: 0, 1 or 10 subscribers, one of which never reads (its queue is full
//! and every publish evicts from it); the other 9 are drained by one background thread, as
//! a runtime with few workers would. `publish_live`: the same counts with nobody stalled,
//! so the two rows side by side show what a stalled subscriber costs a publisher.

use brummer_core::{EventBus, Recv, Subscription};
use divan::Bencher;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    divan::main();
}

/// Capacity of each subscriber queue, as the daemon's `events` streams use.
const QUEUE: usize = 1024;

#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
struct Ev {
    id: u32,
    state: u8,
    pid: u32,
}

fn ev(i: u32) -> Ev {
    Ev {
        id: i % 100,
        state: (i % 7) as u8,
        pid: i,
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

trait Bus: Sync + Send + Default {
    type Sub: Send + Sync;
    fn subscribe(&self) -> Self::Sub;
    fn publish(&self, e: Ev) -> u64;
    /// Pops everything queued for `sub`; returns how many items it got.
    fn drain(&self, sub: &Self::Sub) -> usize;
}

impl Bus for EventBus<Ev> {
    type Sub = Subscription<Ev>;
    fn subscribe(&self) -> Subscription<Ev> {
        EventBus::subscribe(self, QUEUE)
    }
    #[inline]
    fn publish(&self, e: Ev) -> u64 {
        EventBus::publish(self, e)
    }
    fn drain(&self, sub: &Subscription<Ev>) -> usize {
        let mut n = 0;
        while !matches!(sub.try_recv(), Recv::Empty | Recv::Closed) {
            n += 1;
        }
        n
    }
}

/// Baseline: one mutex over every subscriber queue.
#[derive(Default)]
struct MutexBus(Mutex<MutexBusInner>);

#[derive(Default)]
struct MutexBusInner {
    seq: u64,
    queues: Vec<Queue>,
}

struct Queue {
    items: VecDeque<(u64, u64, Ev)>,
    missed: u64,
}

impl Bus for MutexBus {
    type Sub = usize;
    fn subscribe(&self) -> usize {
        let mut g = self.0.lock().unwrap();
        g.queues.push(Queue {
            items: VecDeque::with_capacity(QUEUE),
            missed: 0,
        });
        g.queues.len() - 1
    }
    #[inline]
    fn publish(&self, e: Ev) -> u64 {
        let mut g = self.0.lock().unwrap();
        g.seq += 1;
        let item = (g.seq, now_us(), e);
        for q in &mut g.queues {
            if q.items.len() == QUEUE {
                q.items.pop_front();
                q.missed += 1;
            }
            q.items.push_back(item);
        }
        g.seq
    }
    fn drain(&self, sub: &usize) -> usize {
        let mut g = self.0.lock().unwrap();
        let q = &mut g.queues[*sub];
        let n = q.items.len();
        q.items.clear();
        n
    }
}

fn publish_bench<B: Bus>(b: Bencher, subs: usize, stalled: bool) {
    let bus = B::default();
    let stalled_sub = (stalled && subs > 0).then(|| bus.subscribe());
    let live: Vec<B::Sub> = (0..subs - usize::from(stalled_sub.is_some()))
        .map(|_| bus.subscribe())
        .collect();
    // Fill the stalled queue so every measured publish evicts from it.
    for i in 0..2 * QUEUE as u32 {
        bus.publish(ev(i));
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if !live.is_empty() {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let got: usize = live.iter().map(|s| bus.drain(s)).sum();
                    if got == 0 {
                        std::thread::yield_now();
                    }
                }
            });
        }
        b.with_inputs(|| ev(7)).bench_values(|e| bus.publish(e));
        stop.store(true, Ordering::Relaxed);
    });
    drop(stalled_sub);
}

#[divan::bench(types = [EventBus<Ev>, MutexBus], args = [0, 1, 10])]
fn publish_stalled<B: Bus>(b: Bencher, subs: usize) {
    publish_bench::<B>(b, subs, true);
}

#[divan::bench(types = [EventBus<Ev>, MutexBus], args = [1, 10])]
fn publish_live<B: Bus>(b: Bencher, subs: usize) {
    publish_bench::<B>(b, subs, false);
}
