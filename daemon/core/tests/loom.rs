//! Loom models, one per structure. Run with
//! `RUSTFLAGS="--cfg brummer_loom" cargo test -p brummer-core --test loom --release`.
//! Only the crate's own atomics and mutexes are modelled; arc-swap, crossbeam's ArrayQueue
//! and AtomicWaker use std primitives internally and are trusted as black boxes.
#![cfg(brummer_loom)]

use brummer_core::{EventBus, Hot, LogRing, Recv, Registry, StatusCell};
use brummer_proto::{ProcessState, Stream};
use loom::thread;
use std::sync::Arc;

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

#[test]
fn status_cell_reader_sees_whole_words() {
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
            generation: 1,
        };
        let cell = Arc::new(StatusCell::new(a));
        let c2 = Arc::clone(&cell);
        let w = thread::spawn(move || c2.store(b));
        let seen = cell.load();
        assert!(seen == a || seen == b);
        w.join().unwrap();
        assert_eq!(cell.load(), b);
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
            w.push(Stream::Stdout, 1, 1, seq, seq, false, &payload(seq));
        }
        let writer = thread::spawn(move || {
            for seq in 4..=6 {
                w.push(Stream::Stdout, 1, 1, seq, seq, false, &payload(seq));
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
        let mut t = Vec::new();
        ring.tail(2, None, &mut t);
        for l in &t {
            assert_eq!(l.bytes, payload(l.meta.seq));
        }
        writer.join().unwrap();
        assert_eq!(ring.next_seq(), 7);
    });
}
