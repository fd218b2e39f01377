//! Loom models, one per structure. Run with
//! `RUSTFLAGS="--cfg brummer_loom" cargo test -p brummer-core --test loom --release`.
//! Only the crate's own atomics and mutexes are modelled; arc-swap, crossbeam's ArrayQueue
//! and AtomicWaker use std primitives internally and are trusted as black boxes.
#![cfg(brummer_loom)]

use brummer_core::{EventBus, Hot, LogRing, Recv, Registry, Stamp, StatusCell};
use brummer_proto::{ProcessState, Stream};
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use loom::thread;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

/// The cell's contract: a reader that sees a status also sees everything the supervisor
/// wrote before storing it (here `info`, standing in for the ArcSwap'd `ProcessInfo`).
/// Fails if `store` is weakened to Relaxed or `load` to Relaxed.
#[test]
fn status_cell_reader_sees_whole_words_and_what_came_before() {
    builder().check(|| {
        let a = Hot {
            state: ProcessState::Starting,
            pid: None,
            restarts: 1,
            generation: 1,
        };
        let b = Hot {
            state: ProcessState::Running,
            pid: Some(1234),
            restarts: 1,
            generation: 2,
        };
        let cell = Arc::new(StatusCell::new(a));
        let info = Arc::new(AtomicU64::new(1));
        let (c2, i2) = (Arc::clone(&cell), Arc::clone(&info));
        let w = thread::spawn(move || {
            i2.store(2, Ordering::Relaxed);
            c2.store(b);
        });
        let seen = cell.load().hot();
        assert!(seen == a || seen == b, "torn status {seen:?}");
        if seen == b {
            assert_eq!(
                info.load(Ordering::Relaxed),
                2,
                "saw generation 2's status but generation 1's info"
            );
        }
        w.join().unwrap();
        assert_eq!(cell.load().hot(), b);
    });
}

#[test]
fn registry_concurrent_writers_lose_nothing() {
    builder().check(|| {
        let reg: Arc<Registry<u32>> = Arc::new(Registry::new());
        let r2 = Arc::clone(&reg);
        let w = thread::spawn(move || {
            r2.insert("a", Arc::new(1));
        });
        reg.insert("b", Arc::new(2));
        let snap = reg.load_full();
        assert!(snap.len() >= 1 && snap.get("b").is_some());
        w.join().unwrap();
        assert_eq!(reg.load().names().collect::<Vec<_>>(), ["a", "b"]);
    });
}

#[test]
fn bus_delivers_in_order_then_closed() {
    builder().check(|| {
        let bus = Arc::new(EventBus::new());
        let sub = bus.subscribe(4);
        let b2 = Arc::clone(&bus);
        let p = thread::spawn(move || {
            b2.publish(10u32);
            b2.publish(11u32);
            b2.close();
        });
        let mut got = Vec::new();
        loop {
            match sub.try_recv() {
                Recv::Event(e) => got.push((e.seq, e.event)),
                Recv::Missed(n) => panic!("nothing can be missed with capacity 4, got {n}"),
                Recv::Empty => thread::yield_now(),
                Recv::Closed => break,
            }
        }
        p.join().unwrap();
        assert_eq!(got, [(1, 10), (2, 11)]);
    });
}

/// A subscriber with room for one event while the publisher sends three: whatever the
/// interleaving, every seq is either delivered (in order) or reported by a `Missed` that
/// comes right before the event after the gap, and the counts add up.
#[test]
fn bus_lossy_queue_accounts_for_every_event() {
    builder().check(|| {
        let bus = Arc::new(EventBus::new());
        let sub = bus.subscribe(1);
        let b2 = Arc::clone(&bus);
        let p = thread::spawn(move || {
            for i in 1..=3u32 {
                assert_eq!(b2.publish(i), u64::from(i));
            }
        });
        let mut next = 1u64;
        let mut delivered = 0u64;
        let mut take = |r: Recv<u32>| match r {
            Recv::Event(e) => {
                assert_eq!(e.seq, next, "gap without a Missed report");
                assert_eq!(u64::from(e.event), e.seq);
                next += 1;
                delivered += 1;
                true
            }
            Recv::Missed(n) => {
                assert!(n > 0);
                next += n;
                true
            }
            Recv::Empty => false,
            Recv::Closed => panic!("not closed"),
        };
        take(sub.try_recv());
        p.join().unwrap();
        while take(sub.try_recv()) {}
        assert_eq!(next, 4, "events lost without being counted");
        assert_eq!(delivered + sub.missed_total(), 3);
    });
}

/// Subscribing while events are published: the new subscriber starts exactly after the
/// last event published before it registered, so it never reports a phantom `Missed`.
#[test]
fn bus_subscribe_during_publish_sees_a_clean_suffix() {
    builder().check(|| {
        let bus = Arc::new(EventBus::new());
        let b2 = Arc::clone(&bus);
        let p = thread::spawn(move || {
            b2.publish(1u32);
            b2.publish(2u32);
        });
        let sub = bus.subscribe(4);
        p.join().unwrap();
        let mut seqs = Vec::new();
        loop {
            match sub.try_recv() {
                Recv::Event(e) => seqs.push(e.seq),
                Recv::Missed(n) => panic!("phantom Missed({n}) for a fresh subscriber"),
                Recv::Empty => break,
                Recv::Closed => panic!("not closed"),
            }
        }
        // A suffix of [1, 2]: nothing, [2] or [1, 2].
        assert!(
            seqs.is_empty() || seqs == [2] || seqs == [1, 2],
            "got {seqs:?}"
        );
    });
}

/// Counts wakes; a loom atomic, so the model sees who woke and when. A count the subscriber
/// only reads rather than a flag it resets: loom orders the stores of two threads to one
/// atomic only partially, and a read-modify-write from each side let it return a reset
/// older than a wake that provably came before (a false alarm, not a bus bug).
struct Woken(AtomicUsize);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Publishers wake only subscribers that flagged themselves `parked` (Dekker: push, fence,
/// load the flag against store the flag, fence, pop). A subscriber that returned `Pending`
/// while events were still to come must be woken; otherwise it would sleep on a queued
/// event. Fails if either SeqCst fence (in `publish` or `poll_recv`) is weakened.
#[test]
fn bus_parked_subscriber_is_always_woken() {
    builder().check(|| {
        let bus = Arc::new(EventBus::new());
        let sub = bus.subscribe(4);
        let woken = Arc::new(Woken(AtomicUsize::new(0)));
        let done = Arc::new(AtomicBool::new(false));
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let (b2, d2) = (Arc::clone(&bus), Arc::clone(&done));
        let p = thread::spawn(move || {
            b2.publish(1u32);
            b2.publish(2u32);
            d2.store(true, Ordering::Release);
        });
        let mut got = Vec::new();
        let mut wakes_seen = 0;
        while got.len() < 2 {
            match sub.poll_recv(&mut cx) {
                Poll::Ready(Recv::Event(e)) => got.push(e.seq),
                Poll::Ready(other) => panic!("unexpected {other:?}"),
                // Parked: only a wake may bring us back. A publisher that finished without
                // waking us left an event we would never have been told about.
                Poll::Pending => loop {
                    let finished = done.load(Ordering::Acquire);
                    let wakes = woken.0.load(Ordering::Acquire);
                    if wakes > wakes_seen {
                        wakes_seen = wakes;
                        break;
                    }
                    assert!(
                        !finished,
                        "lost wakeup: parked with {got:?} received, publisher done"
                    );
                    thread::yield_now();
                },
            }
        }
        p.join().unwrap();
        assert_eq!(got, [1, 2]);
    });
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        stream: Stream::Stdout,
        pid: 1,
        generation: 1,
        wall_us: seq,
        mono_ns: seq,
    }
}

/// Never a newline for the seqs used here.
fn payload(seq: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p[8..].copy_from_slice(&(!seq).to_le_bytes());
    p
}

#[test]
fn ring_reader_never_sees_torn_lines_and_accounts_for_all() {
    builder().check(|| {
        // 32 words; each 16-byte line takes 8 words, so the fifth push evicts.
        let (ring, mut w) = LogRing::new(0, 1);
        assert_eq!(ring.capacity_bytes(), 256);
        for seq in 1..=3 {
            w.push_lines(&stamp(seq), &payload(seq));
        }
        let writer = thread::spawn(move || {
            for seq in 4..=6 {
                w.push_lines(&stamp(seq), &payload(seq));
            }
        });
        let mut out = Vec::new();
        let o = ring.read_from(0, 10, None, &mut out);
        let mut expect = 1 + o.missed;
        for l in &out {
            assert_eq!(l.meta.seq, expect);
            assert_eq!(l.bytes, payload(expect));
            expect += 1;
        }
        assert_eq!(o.next_seq, expect);
        // The ring holds four lines and the writer adds only three, so at least one line
        // present when the read started survives it: a reader that got nothing lost data.
        assert!(
            !out.is_empty(),
            "read_from returned nothing (outcome {o:?})"
        );
        for l in &out {
            assert_eq!((l.meta.wall_us, l.meta.mono_ns), (l.meta.seq, l.meta.seq));
        }
        let mut t = Vec::new();
        ring.tail(2, None, &mut t);
        // The newest line at the start of tail() outlives three more pushes.
        assert!(!t.is_empty(), "tail lost the newest line");
        for pair in t.windows(2) {
            assert_eq!(pair[0].meta.seq + 1, pair[1].meta.seq);
        }
        for l in &t {
            assert_eq!(l.bytes, payload(l.meta.seq), "torn line in tail");
        }
        writer.join().unwrap();
        assert_eq!(ring.next_seq(), 7);
    });
}
