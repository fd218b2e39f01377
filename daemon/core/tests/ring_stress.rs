//! Concurrency stress for LogRing: one writer, several followers, a small ring so the writer
//! laps the readers constantly. Every seq must be delivered exactly once in order or be
//! accounted for in `missed`, and no delivered payload may be torn. Lines are pushed in
//! runs of up to four (one record each), as the capture pushes one read's lines.

#![cfg(not(any(brummer_loom, brummer_shuttle)))]

use brummer_core::{Line, LogRing, Stamp};
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
    // A newline would end the line early.
    for b in &mut v {
        if *b == b'\n' {
            *b = b'.';
        }
    }
    v
}

/// Lines `4k .. 4k + 3` are pushed together and share this stamp.
fn stamp(seq: u64) -> Stamp {
    let run = seq / 4;
    Stamp {
        stream: if run.is_multiple_of(5) {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        pid: run as u32,
        generation: 0,
        wall_us: run,
        mono_ns: !run,
    }
}

fn check_line(l: &Line, seq: u64) {
    assert_eq!(l.meta.seq, seq);
    assert_eq!(l.bytes, payload(seq), "torn payload at seq {seq}");
    let s = stamp(seq);
    assert_eq!(l.meta.wall_us, s.wall_us);
    assert_eq!(l.meta.mono_ns, s.mono_ns);
    assert_eq!(l.meta.pid, s.pid);
    assert_eq!(l.meta.stream, s.stream);
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

    let mut run = Vec::new();
    let mut seq = FIRST;
    while seq < end {
        let last = (seq | 3).min(end - 1);
        run.clear();
        for s in seq..=last {
            run.extend_from_slice(&payload(s));
            run.push(b'\n');
        }
        assert_eq!(w.push_lines(&stamp(seq), &run), last);
        seq = last + 1;
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

/// Throughput probe for the push hot path (256 KiB runs of 100-byte lines, as the capture
/// reads them); run with
/// `cargo test -p brummer-core --release --test ring_stress -- --ignored --nocapture`.
#[test]
#[ignore = "timing probe, meaningful only in release builds"]
fn push_throughput_100_byte_lines() {
    let (ring, mut w) = LogRing::new(1 << 20, 0);
    let mut line = [b'x'; 100];
    line[99] = b'\n';
    let run: Vec<u8> = line.iter().copied().cycle().take(2621 * 100).collect();
    let n = 20_000_000u64;
    let start = std::time::Instant::now();
    let mut i = 0;
    while i < n {
        let s = Stamp {
            stream: Stream::Stdout,
            pid: 1,
            generation: 1,
            wall_us: i,
            mono_ns: i,
        };
        w.push_lines(&s, std::hint::black_box(&run));
        i += 2621;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{:.1} M lines/s", i as f64 / secs / 1e6);
    assert_eq!(ring.next_seq(), i);
}
