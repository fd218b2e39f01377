//! Shuttle models: bigger schedules than loom can exhaust (dozens of pushes, several
//! readers), explored by random and PCT schedulers. Shuttle treats every atomic as SeqCst,
//! so memory-ordering bugs are loom's job (tests/loom.rs); these catch logic bugs in the
//! wrap-around, overtake and accounting paths. Run with
//! `RUSTFLAGS="--cfg brummer_shuttle" cargo test -p brummer-core --test shuttle --release`.
#![cfg(brummer_shuttle)]

use brummer_core::{EventBus, Line, LogRing, Recv, Stamp};
use brummer_proto::Stream;
use shuttle::thread;
use std::sync::Arc;

const PUSHES: u64 = 40;

/// Lengths vary (0..=23 bytes) and lines are pushed in runs of one to three (one record
/// each, 6 to 15 words), so records straddle the wrap point at different offsets and
/// readers stop inside them; the 256-byte model ring holds 2 to 5 records.
fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 5 % 24) as usize;
    (0..len)
        .map(|i| match (seq as u8).wrapping_mul(31) ^ i as u8 {
            b'\n' => b'.',
            b => b,
        })
        .collect()
}

/// The first seq of the run that `seq` was pushed in.
fn run_start(seq: u64) -> u64 {
    let mut start = 1;
    loop {
        let next = start + 1 + start % 3;
        if seq < next {
            return start;
        }
        start = next;
    }
}

fn check(l: &Line, seq: u64) {
    assert_eq!(l.meta.seq, seq, "out of order");
    assert_eq!(l.bytes, payload(seq), "torn payload at seq {seq}");
    let run = run_start(seq);
    assert_eq!((l.meta.wall_us, l.meta.mono_ns), (run, !run), "torn header");
}

fn ring_model(readers: usize) {
    let (ring, mut w) = LogRing::new(0, 1);
    assert_eq!(ring.capacity_bytes(), 256);
    let end = 1 + PUSHES;
    let handles: Vec<_> = (0..readers)
        .map(|k| {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let (mut cursor, mut received, mut missed) = (0u64, 0u64, 0u64);
                let mut buf = Vec::new();
                while cursor < end {
                    let o = ring.read_from(cursor, k + 1, None, &mut buf);
                    let mut expect = cursor.max(1) + o.missed;
                    missed += o.missed;
                    for l in &buf {
                        check(l, expect);
                        expect += 1;
                        received += 1;
                    }
                    assert_eq!(o.next_seq, expect);
                    cursor = o.next_seq;
                    if buf.is_empty() {
                        thread::yield_now();
                    }
                    buf.clear();
                    if k == 0 {
                        let mut t = Vec::new();
                        ring.tail(3, None, &mut t);
                        for pair in t.windows(2) {
                            assert_eq!(pair[0].meta.seq + 1, pair[1].meta.seq);
                        }
                        for l in &t {
                            check(l, l.meta.seq);
                        }
                    }
                }
                assert_eq!(received + missed, PUSHES, "lines neither read nor missed");
            })
        })
        .collect();
    let mut seq = 1;
    while seq < end {
        let last = (seq + seq % 3).min(end - 1);
        let mut run = Vec::new();
        for s in seq..=last {
            run.extend_from_slice(&payload(s));
            run.push(b'\n');
        }
        let stamp = Stamp {
            stream: Stream::Stdout,
            pid: 1,
            generation: 1,
            wall_us: seq,
            mono_ns: !seq,
        };
        assert_eq!(w.push_lines(&stamp, &run), last);
        seq = last + 1;
    }
    for h in handles {
        h.join().unwrap();
    }
    let st = ring.stats();
    assert_eq!(st.lines, PUSHES);
    assert_eq!(ring.oldest_seq(), 1 + st.evicted);
}

#[test]
fn ring_two_readers_random() {
    shuttle::check_random(|| ring_model(2), 3_000);
}

#[test]
fn ring_three_readers_pct() {
    shuttle::check_pct(|| ring_model(3), 3_000, 3);
}

/// Two publishers, two small subscriber queues read concurrently: each subscriber sees
/// strictly consecutive seqs once `Missed` gaps are added, and accounts for every event.
fn bus_model() {
    const PER_PUB: u64 = 6;
    let bus = Arc::new(EventBus::new());
    let subs: Vec<_> = (0..2).map(|i| bus.subscribe(1 + i)).collect();
    let pubs: Vec<_> = (0..2)
        .map(|p| {
            let bus = Arc::clone(&bus);
            thread::spawn(move || {
                for i in 0..PER_PUB {
                    bus.publish((p, i));
                }
            })
        })
        .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|s| {
            thread::spawn(move || {
                let (mut next, mut events) = (1u64, 0u64);
                let mut per_pub = [None::<u64>; 2];
                loop {
                    match s.try_recv() {
                        Recv::Event(e) => {
                            assert_eq!(e.seq, next, "gap without Missed");
                            next += 1;
                            events += 1;
                            let (p, i) = e.event;
                            assert!(per_pub[p as usize].is_none_or(|x| x < i));
                            per_pub[p as usize] = Some(i);
                        }
                        Recv::Missed(n) => {
                            assert!(n > 0);
                            next += n;
                        }
                        Recv::Empty => thread::yield_now(),
                        Recv::Closed => break,
                    }
                }
                assert_eq!(next, 2 * PER_PUB + 1, "events unaccounted for");
                assert_eq!(events + s.missed_total(), 2 * PER_PUB);
            })
        })
        .collect();
    for h in pubs {
        h.join().unwrap();
    }
    bus.close();
    for h in readers {
        h.join().unwrap();
    }
}

#[test]
fn bus_two_publishers_two_lossy_subscribers() {
    shuttle::check_random(bus_model, 3_000);
}
