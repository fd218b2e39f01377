//! Concurrency stress for LogRing: one writer, several followers, a small ring so the writer
//! laps the readers constantly. Every seq must be delivered exactly once in order or be
//! accounted for in `missed`, and no delivered payload may be torn.

#![cfg(not(any(brummer_loom, brummer_shuttle)))]

use brummer_core::{Line, LogRing};
use brummer_proto::Stream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const LINES: u64 = 1_000_000;
const FIRST: u64 = 1;

fn payload(seq: u64) -> Vec<u8> {
    let reps = (seq % 4 + 1) as usize;
    let mut v = Vec::with_capacity(reps * 8 + 3);
    for _ in 0..reps {
        v.extend_from_slice(&seq.to_le_bytes());
    }
    // An odd tail so the last payload word is partially filled.
    v.extend_from_slice(&seq.to_le_bytes()[..(seq % 8) as usize]);
    v
}

fn check_line(l: &Line, seq: u64) {
    assert_eq!(l.meta.seq, seq);
    assert_eq!(l.bytes, payload(seq), "torn payload at seq {seq}");
    assert_eq!(l.meta.wall_us, seq);
    assert_eq!(l.meta.mono_ns, !seq);
    assert_eq!(l.meta.pid, seq as u32);
    assert_eq!(
        l.meta.stream,
        if seq.is_multiple_of(5) {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    );
}

#[test]
fn one_writer_three_followers_exact_accounting() {
    let (ring, mut w) = LogRing::new(64 << 10, FIRST);
    let done = Arc::new(AtomicBool::new(false));
    let end = FIRST + LINES;

    let readers: Vec<_> = (0..3)
        .map(|k| {
            let ring = Arc::clone(&ring);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut cursor = 0u64; // below first_seq on purpose: must not count as missed
                let mut expected = FIRST;
                let mut received = 0u64;
                let mut missed = 0u64;
                let mut buf = Vec::new();
                let mut tails = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let o = ring.read_from(cursor, 64 << k, None, &mut buf);
                    expected += o.missed;
                    missed += o.missed;
                    for l in &buf {
                        check_line(l, expected);
                        expected += 1;
                        received += 1;
                    }
                    assert_eq!(o.next_seq, expected);
                    cursor = o.next_seq;
                    buf.clear();
                    if k == 0 && received.is_multiple_of(7) {
                        // tail() under fire: consecutive, untorn, newest last.
                        let mut t = Vec::new();
                        ring.tail(20, None, &mut t);
                        for pair in t.windows(2) {
                            assert_eq!(pair[0].meta.seq + 1, pair[1].meta.seq);
                        }
                        for l in &t {
                            check_line(l, l.meta.seq);
                        }
                        tails += 1;
                    }
                    if finished && cursor == end {
                        break;
                    }
                }
                assert_eq!(received + missed, LINES);
                (received, missed, tails)
            })
        })
        .collect();

    for seq in FIRST..end {
        let stream = if seq.is_multiple_of(5) {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let got = w.push(stream, seq as u32, 0, seq, !seq, false, &payload(seq));
        assert_eq!(got, seq);
    }
    done.store(true, Ordering::Release);

    let mut total_received = 0;
    for h in readers {
        let (received, missed, tails) = h.join().unwrap();
        eprintln!("reader: received {received}, missed {missed}, tail calls {tails}");
        total_received += received;
    }
    assert!(total_received > 0, "readers never got anything");
    assert_eq!(ring.next_seq(), end);
    assert_eq!(ring.stats().lines, LINES);
}

/// Throughput probe for the push hot path; run with
/// `cargo test -p brummer-core --release --test ring_stress -- --ignored --nocapture`.
#[test]
#[ignore = "timing probe, meaningful only in release builds"]
fn push_throughput_100_byte_lines() {
    let (ring, mut w) = LogRing::new(1 << 20, 0);
    let line = [b'x'; 100];
    let n = 20_000_000u64;
    let start = std::time::Instant::now();
    for i in 0..n {
        w.push(
            Stream::Stdout,
            1,
            1,
            i,
            i,
            false,
            std::hint::black_box(&line),
        );
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{:.1} M lines/s", n as f64 / secs / 1e6);
    assert_eq!(ring.next_seq(), n);
}
