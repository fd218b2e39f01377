//! Owns `EventBus<T>`, the daemon's fan-out of state-change events to subscribers
//! (control-socket `events` streams, the metrics task, the journal forwarder).
//!
//! Publishers are supervisor tasks; each subscriber owns a bounded queue that the publisher
//! fills with `force_push`, so a slow or dead subscriber loses its oldest events (and is told
//! how many) instead of slowing anyone down. It must never block a publisher on a subscriber,
//! spawn a task or thread per event, or call into subscriber code: a panicking subscriber may
//! only take down its own task, whose `Subscription` drop unregisters it.

use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, fence};
use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use std::future::Future;
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// One published event as a subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// Bus-wide sequence number, strictly increasing; the first event is 1.
    pub seq: u64,
    /// Wall clock at publish, µs since the Unix epoch.
    pub time_us: u64,
    pub event: T,
}

/// Outcome of one receive attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Recv<T> {
    Event(Envelope<T>),
    /// This many events were dropped for this subscriber since its last `Missed` report;
    /// always delivered before the first event that follows the gap.
    Missed(u64),
    /// Nothing queued right now.
    Empty,
    /// The bus was closed and everything queued has been delivered.
    Closed,
}

struct Slot<T> {
    id: u64,
    queue: ArrayQueue<Envelope<T>>,
    /// Written only by publishers, under the bus mutex (so a plain load + store suffices);
    /// read by the subscriber.
    missed_total: AtomicU64,
    waker: AtomicWaker,
    /// Set by the subscriber just before it may return `Pending`, cleared once it returns
    /// `Ready`; publishers wake only while it is set, so a subscriber that polls with
    /// `try_recv` or is busy draining costs a publish no `AtomicWaker::wake` (two
    /// read-modify-writes on a line the subscriber also writes). Dekker-style against the
    /// queue push: see `EventBus::publish` and `Subscription::poll_recv`.
    parked: AtomicBool,
    closed: AtomicBool,
}

struct Inner<T> {
    seq: u64,
    next_id: u64,
    closed: bool,
    subs: Vec<Arc<Slot<T>>>,
}

struct Shared<T> {
    // Held only for seq assignment plus the pushes, so each subscriber's queue receives
    // events in seq order; publishers never wait on anything but each other.
    inner: Mutex<Inner<T>>,
    last_seq: AtomicU64,
    /// Events dropped for a subscriber that fell behind, summed over every subscriber
    /// ever (written under `inner`, read by anyone: the metrics' events missed).
    missed_total: AtomicU64,
}

impl<T> Shared<T> {
    // Nothing under this lock calls user code that could panic halfway (clone of T could,
    // but then that publish simply did not finish), so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shut(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for s in inner.subs.drain(..) {
            s.closed.store(true, Ordering::Release);
            s.waker.wake();
        }
    }
}

/// Bounded, lossy-per-subscriber broadcast of `T`.
pub struct EventBus<T> {
    shared: Arc<Shared<T>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl<T: Clone + Send> EventBus<T> {
    pub fn new() -> Self {
        Self::after(0)
    }

    /// A bus whose first event has seq `last + 1`: the sequence goes on from another
    /// bus's (a re-exec of the daemon), so subscribers can tell a gap from a restart.
    pub fn after(last: u64) -> Self {
        EventBus {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    seq: last,
                    next_id: 1,
                    closed: false,
                    subs: Vec::new(),
                }),
                last_seq: AtomicU64::new(last),
                missed_total: AtomicU64::new(0),
            }),
        }
    }

    /// New subscriber that sees every event published after this call, keeping at most
    /// `capacity` (at least 1) unread ones. Subscribing to a closed bus yields `Closed`.
    pub fn subscribe(&self, capacity: usize) -> Subscription<T> {
        let mut inner = self.shared.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            queue: ArrayQueue::new(capacity.max(1)),
            missed_total: AtomicU64::new(0),
            waker: AtomicWaker::new(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(inner.closed),
        });
        if !inner.closed {
            inner.subs.push(Arc::clone(&slot));
        }
        Subscription {
            slot,
            bus: Arc::downgrade(&self.shared),
            start_seq: inner.seq,
            rx: Mutex::new(RxState {
                expected: inner.seq + 1,
                stash: None,
            }),
        }
    }

    /// Publishes to every live subscriber and returns the event's seq, or 0 (no event has
    /// that seq) if the bus is closed and the event was dropped.
    pub fn publish(&self, event: T) -> u64 {
        let mut inner = self.shared.lock();
        if inner.closed {
            return 0;
        }
        inner.seq += 1;
        let env = Envelope {
            seq: inner.seq,
            time_us: now_us(),
            event,
        };
        let seq = env.seq;
        if let Some((last, rest)) = inner.subs.split_last() {
            let mut missed = 0;
            for s in rest {
                missed += u64::from(s.offer(env.clone()));
            }
            missed += u64::from(last.offer(env));
            if missed > 0 {
                let m = self.shared.missed_total.load(Ordering::Relaxed);
                self.shared
                    .missed_total
                    .store(m + missed, Ordering::Relaxed);
            }
            // Dekker with `poll_recv`: the pushes above, this fence, then the `parked` loads;
            // the subscriber stores `parked`, fences, then pops. Of two SeqCst fences one
            // comes first, so either we see `parked` set and wake, or its pop sees our push.
            // Without the fence both could miss and the subscriber would sleep on an event.
            // One fence for all subscribers instead of a wake's two RMWs per subscriber.
            fence(Ordering::SeqCst);
            for s in &inner.subs {
                if s.parked.load(Ordering::Relaxed) {
                    s.waker.wake();
                }
            }
        }
        self.shared.last_seq.store(seq, Ordering::Release);
        seq
    }

    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    /// Events dropped for subscribers that fell behind since the bus began, all
    /// subscribers together.
    pub fn missed_total(&self) -> u64 {
        self.shared.missed_total.load(Ordering::Relaxed)
    }

    pub fn subscriber_count(&self) -> usize {
        self.shared.lock().subs.len()
    }

    /// Events published but not yet taken, all subscribers' queues together (the
    /// daemon's queue-depth gauge).
    pub fn queued_total(&self) -> usize {
        self.shared.lock().subs.iter().map(|s| s.queue.len()).sum()
    }

    /// Stops publishing; subscribers drain what is queued and then get `Closed`.
    pub fn close(&self) {
        self.shared.shut();
    }
}

impl<T> Slot<T> {
    /// Caller holds the bus mutex (the only writer of `missed_total`), and wakes afterwards.
    /// True when the oldest queued event was dropped to make room.
    fn offer(&self, env: Envelope<T>) -> bool {
        let dropped = self.queue.force_push(env).is_some();
        if dropped {
            let m = self.missed_total.load(Ordering::Relaxed);
            self.missed_total.store(m + 1, Ordering::Relaxed);
        }
        dropped
    }
}

impl<T: Clone + Send> Default for EventBus<T> {
    fn default() -> Self {
        EventBus::new()
    }
}

impl<T> Drop for EventBus<T> {
    // Subscribers parked in poll_recv would otherwise wait forever for a bus that is gone.
    fn drop(&mut self) {
        self.shared.shut();
    }
}

struct RxState<T> {
    // Seq the subscriber should see next; a larger one in the queue means evictions.
    expected: u64,
    // Event popped while a gap had to be reported first.
    stash: Option<Envelope<T>>,
}

/// One subscriber's end of the bus. Dropping it unregisters it.
pub struct Subscription<T> {
    slot: Arc<Slot<T>>,
    bus: Weak<Shared<T>>,
    /// Seq of the last event published before this subscription (read under the bus lock
    /// when it was made): the first event it receives is `start_seq + 1`.
    start_seq: u64,
    // Only the owning task touches this, so the lock is never contended; it exists so that
    // `try_recv` can take `&self` and still hold back an event behind its Missed report.
    rx: Mutex<RxState<T>>,
}

impl<T> Subscription<T> {
    /// Seq of the last event published before this subscription. Not `last_seq()` read
    /// after subscribing: an event published in between would be counted as before the
    /// subscription and still be delivered to it (issue 17's soak saw `seq 154713` in a
    /// subscribe reply, then event 154712).
    pub fn start_seq(&self) -> u64 {
        self.start_seq
    }

    /// Next item without waiting. Gaps are computed from seq numbers, so `Missed(n)` always
    /// comes right before the event that follows the gap, however the publisher raced us.
    pub fn try_recv(&self) -> Recv<T> {
        let mut rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(env) = rx.stash.take() {
            rx.expected = env.seq + 1;
            return Recv::Event(env);
        }
        if let Some(env) = self.slot.queue.pop() {
            return Self::deliver(&mut rx, env);
        }
        if self.slot.closed.load(Ordering::Acquire) {
            // close() happens after every publish that reached us, so one more pop after
            // seeing the flag cannot miss a straggler.
            return match self.slot.queue.pop() {
                Some(env) => Self::deliver(&mut rx, env),
                None => Recv::Closed,
            };
        }
        Recv::Empty
    }

    fn deliver(rx: &mut RxState<T>, env: Envelope<T>) -> Recv<T> {
        if env.seq > rx.expected {
            let gap = env.seq - rx.expected;
            rx.expected = env.seq;
            rx.stash = Some(env);
            return Recv::Missed(gap);
        }
        rx.expected = env.seq + 1;
        Recv::Event(env)
    }

    /// Like `try_recv`, but `Pending` (with the waker registered) instead of `Empty`.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Recv<T>> {
        match self.try_recv() {
            Recv::Empty => {}
            r => return Poll::Ready(self.unpark(r)),
        }
        self.slot.waker.register(cx.waker());
        self.slot.parked.store(true, Ordering::Relaxed);
        // Pairs with the fence in `publish` (Dekker): a publish whose `parked` load missed
        // the store above pushed before that fence, so the pop below finds its event.
        fence(Ordering::SeqCst);
        // A publish between the first check and the registration woke nobody; look again.
        match self.try_recv() {
            Recv::Empty => Poll::Pending,
            r => Poll::Ready(self.unpark(r)),
        }
    }

    /// Not pending any more, so publishers may skip the wake. Only this subscriber writes
    /// `parked`, so checking first keeps the common (never parked) path free of stores.
    fn unpark(&self, r: Recv<T>) -> Recv<T> {
        if self.slot.parked.load(Ordering::Relaxed) {
            self.slot.parked.store(false, Ordering::Relaxed);
        }
        r
    }

    /// Runtime-agnostic future for the next non-`Empty` item.
    pub fn recv(&self) -> impl Future<Output = Recv<T>> + '_ {
        std::future::poll_fn(move |cx| self.poll_recv(cx))
    }

    /// All-time count of events dropped for this subscriber (including ones not yet
    /// reported through `Missed`).
    pub fn missed_total(&self) -> u64 {
        self.slot.missed_total.load(Ordering::Relaxed)
    }

    pub fn id(&self) -> u64 {
        self.slot.id
    }
}

impl<T> Drop for Subscription<T> {
    // Runs during unwinding too, so a panicking subscriber task unregisters itself.
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            let mut inner = bus.lock();
            if let Some(i) = inner.subs.iter().position(|s| s.id == self.slot.id) {
                inner.subs.swap_remove(i);
            }
        }
    }
}

#[cfg(all(test, not(any(brummer_loom, brummer_shuttle))))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    fn drain<T>(s: &Subscription<T>) -> Vec<Recv<T>> {
        let mut v = Vec::new();
        loop {
            match s.try_recv() {
                Recv::Empty => return v,
                Recv::Closed => {
                    v.push(Recv::Closed);
                    return v;
                }
                r => v.push(r),
            }
        }
    }

    #[test]
    fn seq_starts_at_one_and_last_seq_tracks() {
        let bus = EventBus::new();
        assert_eq!(bus.last_seq(), 0);
        let s = bus.subscribe(8);
        assert_eq!(bus.publish("a"), 1);
        assert_eq!(bus.publish("b"), 2);
        assert_eq!(bus.last_seq(), 2);
        let got = drain(&s);
        assert!(
            matches!(&got[..], [Recv::Event(a), Recv::Event(b)] if a.seq == 1 && a.event == "a" && b.seq == 2 && a.time_us > 0)
        );
    }

    #[test]
    fn late_subscriber_sees_only_later_events_without_missed() {
        let bus = EventBus::new();
        bus.publish(1);
        bus.publish(2);
        let s = bus.subscribe(4);
        bus.publish(3);
        let got = drain(&s);
        assert!(matches!(&got[..], [Recv::Event(e)] if e.seq == 3));
    }

    /// Issue 17 (soak): the subscribe reply read `last_seq()` after subscribing, so an event
    /// published in between was both "before the subscription" and delivered to it.
    #[test]
    fn start_seq_is_the_last_seq_before_the_subscription_whatever_came_after() {
        let bus = EventBus::new();
        bus.publish(1);
        let s = bus.subscribe(4);
        bus.publish(2);
        assert_eq!(bus.last_seq(), 2);
        assert_eq!(s.start_seq(), 1);
        let got = drain(&s);
        assert!(matches!(&got[..], [Recv::Event(e)] if e.seq == s.start_seq() + 1));
    }

    #[test]
    fn never_reading_subscriber_gets_exact_missed_then_latest() {
        let bus = EventBus::new();
        let s = bus.subscribe(4);
        for i in 0..100u32 {
            bus.publish(i);
        }
        assert_eq!(s.missed_total(), 96);
        assert_eq!(s.try_recv(), Recv::Missed(96));
        for seq in 97..=100u64 {
            match s.try_recv() {
                Recv::Event(e) => {
                    assert_eq!(e.seq, seq);
                    assert_eq!(u64::from(e.event), seq - 1);
                }
                other => panic!("expected event {seq}, got {other:?}"),
            }
        }
        assert_eq!(s.try_recv(), Recv::Empty);
        // The counter resets after a report; the total does not.
        bus.publish(100);
        assert!(matches!(s.try_recv(), Recv::Event(e) if e.seq == 101));
        assert_eq!(s.missed_total(), 96);
    }

    #[test]
    fn publish_completes_with_astuck_subscriber() {
        let bus = EventBus::new();
        let stuck = bus.subscribe(1);
        let live = bus.subscribe(1 << 17);
        for i in 0..100_000u64 {
            bus.publish(i);
        }
        assert_eq!(bus.last_seq(), 100_000);
        assert_eq!(stuck.missed_total(), 99_999);
        assert!(bus.missed_total() >= 99_999);
        assert_eq!(drain(&live).len(), 100_000);
    }

    #[test]
    fn concurrent_publishers_give_each_subscriber_strictly_increasing_seq() {
        let bus = Arc::new(EventBus::new());
        let subs: Vec<_> = (0..3).map(|i| bus.subscribe(16 << i)).collect();
        let pubs: Vec<_> = (0..2)
            .map(|p| {
                let bus = Arc::clone(&bus);
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        bus.publish((p, i));
                    }
                })
            })
            .collect();
        let mut last = [0u64; 3];
        let mut accounted = [0u64; 3];
        let mut per_pub_last = [[None::<u64>; 2]; 3];
        let mut check = |k: usize, r: Recv<(u64, u64)>| match r {
            Recv::Event(e) => {
                assert!(e.seq > last[k], "seq went from {} to {}", last[k], e.seq);
                assert_eq!(e.seq, last[k] + 1, "gap without Missed report");
                last[k] = e.seq;
                accounted[k] += 1;
                let (p, i) = e.event;
                let prev = &mut per_pub_last[k][p as usize];
                assert!(prev.is_none_or(|x| x < i));
                *prev = Some(i);
            }
            Recv::Missed(n) => {
                assert!(n > 0);
                last[k] += n;
                accounted[k] += n;
            }
            Recv::Empty => {}
            Recv::Closed => panic!("not closed"),
        };
        while pubs.iter().any(|h| !h.is_finished()) {
            for (k, s) in subs.iter().enumerate() {
                check(k, s.try_recv());
            }
        }
        for h in pubs {
            h.join().unwrap();
        }
        for (k, s) in subs.iter().enumerate() {
            for r in drain(s) {
                check(k, r);
            }
        }
        assert_eq!(accounted, [40_000; 3]);
        assert_eq!(last, [40_000; 3]);
    }

    #[test]
    fn subscription_dropped_by_panicking_thread_is_pruned() {
        let bus = Arc::new(EventBus::new());
        let keeper = bus.subscribe(64);
        let doomed = bus.subscribe(64);
        assert_eq!(bus.subscriber_count(), 2);
        let b2 = Arc::clone(&bus);
        let res = std::thread::spawn(move || {
            b2.publish(1u32);
            let _held = doomed;
            panic!("subscriber task bug");
        })
        .join();
        assert!(res.is_err());
        assert_eq!(bus.subscriber_count(), 1);
        assert_eq!(bus.publish(2), 2);
        let got = drain(&keeper);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn close_drains_then_reports_closed() {
        let bus = EventBus::new();
        let s = bus.subscribe(4);
        bus.publish('x');
        bus.close();
        assert_eq!(bus.publish('y'), 0);
        assert!(matches!(s.try_recv(), Recv::Event(e) if e.event == 'x'));
        assert_eq!(s.try_recv(), Recv::Closed);
        assert_eq!(s.try_recv(), Recv::Closed);
        assert_eq!(bus.subscriber_count(), 0);
        let late = bus.subscribe(4);
        assert_eq!(late.try_recv(), Recv::Closed);
    }

    #[test]
    fn dropping_the_bus_closes_subscriptions() {
        let bus = EventBus::<u8>::new();
        let s = bus.subscribe(4);
        drop(bus);
        assert_eq!(s.try_recv(), Recv::Closed);
    }

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn poll_recv_registers_and_is_woken() {
        let bus = EventBus::new();
        let s = bus.subscribe(4);
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(s.poll_recv(&mut cx).is_pending());
        bus.publish(5u8);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(matches!(s.poll_recv(&mut cx), Poll::Ready(Recv::Event(e)) if e.event == 5));
        assert!(s.poll_recv(&mut cx).is_pending());
        bus.close();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Recv::Closed));
    }

    #[test]
    fn recv_future_across_threads() {
        let bus = Arc::new(EventBus::new());
        let s = bus.subscribe(4);
        let b2 = Arc::clone(&bus);
        let h = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            b2.publish(9u8);
        });
        // Minimal executor: park the thread until woken.
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(s.recv());
        let got = loop {
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(r) => break r,
                Poll::Pending => std::thread::park(),
            }
        };
        assert!(matches!(got, Recv::Event(e) if e.event == 9));
        h.join().unwrap();
    }
}
