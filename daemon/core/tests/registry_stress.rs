//! Real-thread stress for the registry and the status cell: one writer, several readers,
//! invariants that only hold for whole snapshots / whole status words.

#![cfg(not(any(brummer_loom, brummer_shuttle)))]

use brummer_core::status::{GENERATION_MASK, PID_MAX};
use brummer_core::{Hot, Registry, Snapshot, StatusCell};
use brummer_proto::ProcessState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const META: &str = "__meta";

/// `version` of the update that wrote the entry; `check` ties it to the name.
#[derive(Debug)]
struct Entry {
    version: u64,
    check: u64,
}

fn check(name: &str, version: u64) -> u64 {
    name.bytes()
        .fold(version.wrapping_mul(0x9e37_79b9_7f4a_7c15), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

fn entry(name: &str, version: u64) -> Arc<Entry> {
    Arc::new(Entry {
        version,
        check: check(name, version),
    })
}

/// The writer keeps, in `__meta`, the update's version (`version`) and the sum of all other
/// entries' versions (`check`). A reader that sees a snapshot mixing two updates finds a sum
/// that does not match, an entry newer than the meta, or a len that disagrees.
fn verify(s: &Snapshot<Entry>, last_version: &mut u64) -> usize {
    let Some(meta) = s.get(META) else {
        assert!(s.is_empty(), "entries without meta");
        return 0;
    };
    assert!(meta.version >= *last_version, "snapshots went backwards");
    *last_version = meta.version;
    let mut sum = 0u64;
    let mut count = 0;
    let mut prev: Option<&str> = None;
    for (name, e) in s.iter() {
        assert!(prev < Some(name), "iteration not sorted");
        prev = Some(name);
        if name == META {
            continue;
        }
        assert_eq!(e.check, check(name, e.version), "entry {name} torn");
        assert!(e.version <= meta.version, "entry newer than its snapshot");
        assert!(
            Arc::ptr_eq(s.get(name).unwrap(), e),
            "map and list disagree"
        );
        sum += e.version;
        count += 1;
    }
    assert_eq!(
        sum, meta.check,
        "entries from different updates in one snapshot"
    );
    count
}

#[test]
fn registry_readers_only_ever_see_whole_snapshots() {
    const UPDATES: u64 = 20_000;
    let reg: Arc<Registry<Entry>> = Arc::new(Registry::new());
    let done = Arc::new(AtomicBool::new(false));
    // Readers run before the first update: on a loaded 2-core machine a reader thread may
    // otherwise first run after the last one.
    let start = Arc::new(std::sync::Barrier::new(4));
    let readers: Vec<_> = (0..3)
        .map(|k| {
            let reg = Arc::clone(&reg);
            let done = Arc::clone(&done);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                let mut biggest = 0;
                start.wait();
                while !done.load(Ordering::Acquire) {
                    // Alternate the two ways of reading a snapshot.
                    let n = if (reads + k).is_multiple_of(2) {
                        verify(&reg.load(), &mut last)
                    } else {
                        verify(&reg.load_full(), &mut last)
                    };
                    biggest = biggest.max(n);
                    // Point lookups agree with their own tie as well.
                    if let Some(e) = reg.get("p007") {
                        assert_eq!(e.check, check("p007", e.version));
                    }
                    reads += 1;
                }
                (reads, biggest)
            })
        })
        .collect();
    start.wait();

    // Each update inserts, replaces or removes entries among 64 names, stamping what it
    // writes with its version and recomputing the meta.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for v in 1..=UPDATES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        reg.update(|cur| {
            let mut next = cur.clone();
            for j in 0..(rng % 4 + 1) {
                let name = format!("p{:03}", (rng >> (8 * j)) % 64);
                next = if (rng >> (40 + j)).is_multiple_of(5) {
                    next.without(&name).0
                } else {
                    next.with(&name, entry(&name, v)).0
                };
            }
            let sum = next
                .iter()
                .filter(|(n, _)| *n != META)
                .map(|(_, e)| e.version)
                .sum();
            let meta = Arc::new(Entry {
                version: v,
                check: sum,
            });
            (next.with(META, meta).0, ())
        });
    }
    done.store(true, Ordering::Release);
    for h in readers {
        let (reads, biggest) = h.join().unwrap();
        eprintln!("reader: {reads} snapshots verified, up to {biggest} entries");
    }
    let mut last = 0;
    verify(&reg.load(), &mut last);
    assert_eq!(last, UPDATES);
}

/// Every field of the status word is a function of the generation the writer stored, so a
/// reader that ever decodes fields from two different stores finds them unrelated.
fn status_for(g: u32) -> Hot {
    let states = ProcessState::ALL;
    Hot {
        state: states[g as usize % states.len()],
        pid: Some(1 + (g.wrapping_mul(2_654_435_761) % PID_MAX)),
        restarts: (g * 7) % 100_003,
        generation: g,
    }
}

#[test]
fn status_readers_never_see_a_torn_word() {
    // Below the generation field's wrap, so readers can also check monotonicity.
    const STORES: u32 = GENERATION_MASK;
    let cell = Arc::new(StatusCell::new(status_for(0)));
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let cell = Arc::clone(&cell);
            let done = Arc::clone(&done);
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                let mut changes = 0u64;
                while !done.load(Ordering::Acquire) {
                    let h = cell.load().hot();
                    assert_eq!(h, status_for(h.generation), "torn status word");
                    assert!(h.generation >= last, "status went backwards");
                    changes += u64::from(h.generation != last);
                    last = h.generation;
                    reads += 1;
                    if reads == 1 {
                        started.fetch_add(1, Ordering::Release);
                    }
                }
                (reads, changes)
            })
        })
        .collect();
    // In release builds the stores finish in well under a millisecond: without this a reader
    // scheduled late on a busy machine never overlaps them (and the test tested nothing).
    while started.load(Ordering::Acquire) < 3 {
        std::thread::yield_now();
    }
    for g in 1..=STORES {
        cell.store(status_for(g));
    }
    done.store(true, Ordering::Release);
    for h in readers {
        let (reads, changes) = h.join().unwrap();
        eprintln!("status reader: {reads} loads, {changes} distinct values seen");
        assert!(reads > 0);
    }
    assert_eq!(cell.load().hot(), status_for(STORES));
}
