//! Shuttle models: bigger schedules than loom can exhaust (dozens of pushes, several
//! readers), explored by random and PCT schedulers. Shuttle treats every atomic as SeqCst,
//! so memory-ordering bugs are loom's job (tests/loom.rs); these catch logic bugs in the
//! wrap-around, overtake and accounting paths, and in the outbox's token hand-overs. Run with
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

/// The outbox's owner-token protocol (`brummer_core::outbox`) as control/outbox.rs drives
/// it, with its waits modelled by condvars: a permit the writer waits on (tokio's
/// `Notify::notify_one`), a generation senders wait on for room (`notify_waiters` after
/// registering), and a socket of a few bytes drained by a slow client, so direct writes
/// are cut short and would block, and queue and socket fill.
mod outbox {
    use brummer_core::outbox::{Next, OutboxState, Sent};
    use shuttle::sync::{Condvar, Mutex};
    use shuttle::thread;
    use std::collections::VecDeque;
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SENDERS: u8 = 3;
    const EACH: u8 = 3;
    const QUEUE: usize = 2;
    const SOCKET: usize = 4;

    /// How often the paths that matter were taken, over all schedules of a test (plain
    /// atomics: counters, not part of the model).
    static FULL: AtomicUsize = AtomicUsize::new(0);
    static HANDED_OVER: AtomicUsize = AtomicUsize::new(0);
    static FREED_ROOM: AtomicUsize = AtomicUsize::new(0);

    #[derive(Default)]
    struct Sock {
        buf: VecDeque<u8>,
        /// The client closed its end: writes fail.
        vanished: bool,
        /// Our write side is shut down: the client reads to the end, then EOF.
        shut: bool,
    }

    #[derive(Default)]
    struct Socket {
        st: Mutex<Sock>,
        changed: Condvar,
    }

    impl Socket {
        fn try_write(&self, b: &[u8]) -> io::Result<usize> {
            let mut s = self.st.lock().unwrap();
            if s.vanished {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = (SOCKET - s.buf.len()).min(b.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            s.buf.extend(&b[..n]);
            self.changed.notify_all();
            Ok(n)
        }

        /// The writer task's `write_all`: waits for room instead of `writable().await`.
        fn write_all(&self, mut b: &[u8]) -> io::Result<()> {
            while !b.is_empty() {
                match self.try_write(b) {
                    Ok(n) => b = &b[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let mut s = self.st.lock().unwrap();
                        while s.buf.len() == SOCKET && !s.vanished {
                            s = self.changed.wait(s).unwrap();
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }

        fn shut_down(&self) {
            self.st.lock().unwrap().shut = true;
            self.changed.notify_all();
        }

        /// The client: reads a few bytes at a time until EOF, or vanishes after `vanish_at`
        /// bytes. Returns what it read.
        fn client(&self, vanish_at: Option<usize>) -> Vec<u8> {
            let mut got = Vec::new();
            loop {
                let mut s = self.st.lock().unwrap();
                while s.buf.is_empty() && !s.shut {
                    s = self.changed.wait(s).unwrap();
                }
                if s.buf.is_empty() {
                    return got;
                }
                let n = s.buf.len().min(1 + got.len() % 3);
                got.extend(s.buf.drain(..n));
                if vanish_at.is_some_and(|v| got.len() >= v) {
                    s.vanished = true;
                    self.changed.notify_all();
                    return got;
                }
                self.changed.notify_all();
            }
        }
    }

    /// tokio's `Notify` used with `notify_one`: a stored permit, so a wake before the wait
    /// is not lost.
    #[derive(Default)]
    struct Permit {
        set: Mutex<bool>,
        cv: Condvar,
    }

    impl Permit {
        fn notify(&self) {
            *self.set.lock().unwrap() = true;
            self.cv.notify_one();
        }
        fn wait(&self) {
            let mut set = self.set.lock().unwrap();
            while !*set {
                set = self.cv.wait(set).unwrap();
            }
            *set = false;
        }
    }

    /// tokio's `Notify` used with `notify_waiters`: wakes those registered before it.
    #[derive(Default)]
    struct Room {
        generation: Mutex<u64>,
        cv: Condvar,
    }

    impl Room {
        fn register(&self) -> u64 {
            *self.generation.lock().unwrap()
        }
        fn notify_waiters(&self) {
            *self.generation.lock().unwrap() += 1;
            self.cv.notify_all();
        }
        fn wait(&self, registered: u64) {
            let mut g = self.generation.lock().unwrap();
            while *g == registered {
                g = self.cv.wait(g).unwrap();
            }
        }
    }

    struct Shared {
        state: OutboxState,
        socket: Socket,
        work: Permit,
        room: Room,
    }

    impl Shared {
        fn wake_all(&self) {
            self.room.notify_waiters();
            self.work.notify();
        }

        fn try_push(&self, line: Vec<u8>) -> Result<bool, Vec<u8>> {
            match self.state.send(line, |b| self.socket.try_write(b)) {
                Sent::Done => Ok(true),
                Sent::WakeWriter => {
                    HANDED_OVER.fetch_add(1, Ordering::Relaxed);
                    self.work.notify();
                    Ok(true)
                }
                Sent::Full(line) => {
                    FULL.fetch_add(1, Ordering::Relaxed);
                    Err(line)
                }
                Sent::Broke => {
                    self.wake_all();
                    Ok(false)
                }
                Sent::Failed => Ok(false),
            }
        }

        fn push(&self, mut line: Vec<u8>) -> bool {
            loop {
                match self.try_push(line) {
                    Ok(sent) => return sent,
                    Err(back) => line = back,
                }
                let registered = self.room.register();
                match self.try_push(line) {
                    Ok(sent) => return sent,
                    Err(back) => line = back,
                }
                self.room.wait(registered);
            }
        }

        fn writer(&self) {
            loop {
                match self.state.next() {
                    Next::Write { line, freed_room } => {
                        if freed_room {
                            FREED_ROOM.fetch_add(1, Ordering::Relaxed);
                            self.room.notify_waiters();
                        }
                        if self.socket.write_all(&line).is_err() {
                            self.state.fail();
                            self.wake_all();
                            break;
                        }
                    }
                    Next::Wait => self.work.wait(),
                    Next::Done | Next::Failed => break,
                }
            }
            self.socket.shut_down();
        }
    }

    /// The last sender handle gone tells the writer (the daemon's `Senders`).
    struct Senders(Arc<Shared>);

    impl Drop for Senders {
        fn drop(&mut self) {
            self.0.state.senders_gone();
            self.0.work.notify();
        }
    }

    /// Sender `s`'s message `i`: `s`, `i`, 0 to 2 bytes of padding, newline.
    fn message(s: u8, i: u8) -> Vec<u8> {
        let mut m = vec![b'a' + s, b'0' + i];
        m.extend(std::iter::repeat_n(b'.', usize::from((s + i) % 3)));
        m.push(b'\n');
        m
    }

    /// Per sender, the messages the client read whole; each sender's must be 0, 1, 2, ...
    /// (in order, none lost before a later one, none twice).
    fn received(bytes: &[u8]) -> Vec<u8> {
        let mut next = vec![0u8; usize::from(SENDERS)];
        // A client that vanished may have read part of a message last.
        let Some(last) = bytes.iter().rposition(|&b| b == b'\n') else {
            return next;
        };
        let whole = &bytes[..last];
        for line in whole.split(|&b| b == b'\n') {
            let (s, i) = (line[0] - b'a', line[1] - b'0');
            let mut expect = message(s, i);
            expect.pop();
            assert_eq!(line, expect, "torn or mixed message");
            assert_eq!(
                i,
                next[usize::from(s)],
                "sender {s}: out of order, lost or twice"
            );
            next[usize::from(s)] += 1;
        }
        next
    }

    fn model(vanish_at: Option<usize>) {
        let shared = Arc::new(Shared {
            state: OutboxState::new(QUEUE),
            socket: Socket::default(),
            work: Permit::default(),
            room: Room::default(),
        });
        let senders = Arc::new(Senders(Arc::clone(&shared)));
        let tasks: Vec<_> = (0..SENDERS)
            .map(|s| {
                let out = Arc::clone(&senders);
                thread::spawn(move || {
                    let mut accepted = 0;
                    for i in 0..EACH {
                        if out.0.push(message(s, i)) {
                            assert_eq!(accepted, i, "sent after a failure");
                            accepted += 1;
                        }
                    }
                    accepted
                })
            })
            .collect();
        drop(senders);
        let writer = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.writer())
        };
        let client = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.socket.client(vanish_at))
        };
        let accepted: Vec<u8> = tasks.into_iter().map(|t| t.join().unwrap()).collect();
        writer.join().unwrap();
        let bytes = client.join().unwrap();
        let got = received(&bytes);
        if vanish_at.is_none() {
            assert_eq!(accepted, vec![EACH; usize::from(SENDERS)], "a send failed");
            assert_eq!(got, accepted, "messages lost");
            assert_eq!(shared.state.queued(), 0);
        } else {
            for (g, a) in got.iter().zip(&accepted) {
                assert!(g <= a, "read a message its sender was refused");
            }
        }
    }

    #[test]
    fn outbox_three_senders_random() {
        shuttle::check_random(|| model(None), 3_000);
        // The schedules reached the hand-over, a full queue and a writer freeing room.
        for (what, n) in [
            ("hand-overs", &HANDED_OVER),
            ("full queues", &FULL),
            ("freed rooms", &FREED_ROOM),
        ] {
            assert!(n.load(Ordering::Relaxed) > 0, "no {what}");
        }
    }

    #[test]
    fn outbox_three_senders_pct() {
        shuttle::check_pct(|| model(None), 3_000, 3);
    }

    #[test]
    fn outbox_client_vanishing_ends_everyone() {
        shuttle::check_random(|| model(Some(7)), 3_000);
    }
}
