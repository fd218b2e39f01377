//! Who writes to a client's socket, and in what order: the owner-token protocol of one
//! connection's outbox, free of any runtime so that shuttle can check it
//! (`tests/shuttle.rs`). The daemon's `control/outbox.rs` adds the waiting and waking.
//!
//! Many senders hand over messages; one writer task drains a bounded queue. Whoever holds
//! the token writes: a sender that finds it free (and so the queue empty) takes it and writes
//! straight to the socket, without waiting; a sender that finds it taken queues behind, so
//! order holds without anyone waiting on a lock. A sender that could not write everything
//! (the socket would block), or that finds messages queued behind it when done, hands the
//! token to the writer. The writer gives it back (idle) only with the queue empty. So a
//! queued message always has an owner that will write it, and a failed socket fails
//! everyone. The state lock is never held across a write.

use crate::sync::{Arc, AtomicUsize, Mutex, MutexGuard, Ordering};
use std::collections::VecDeque;
use std::io;
use std::sync::PoisonError;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    /// Nobody writes, and the queue is empty.
    Idle,
    /// A sender is writing its message straight to the socket; others queue behind it.
    Sender,
    /// The writer task drains the queue.
    Writer,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Vec<u8>>,
    owner: Owner,
    /// The socket failed (client gone): senders are refused, the queue is dropped.
    failed: bool,
    senders_gone: bool,
}

/// One connection's outbox state, shared by its senders and its writer.
#[derive(Debug)]
pub struct OutboxState {
    state: Mutex<State>,
    capacity: usize,
    /// Messages queued in this outbox and every other that shares the gauge (the daemon's
    /// queue-depth metric); changed under the state lock with each queue change, so it
    /// never counts a message twice or keeps one that left.
    queued_gauge: Arc<AtomicUsize>,
}

/// What became of a sent message, and whom the caller must wake.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Written whole, or queued behind the current owner: nothing to wake.
    Done,
    /// Written in part (the rest is queued first) or messages queued meanwhile: the writer
    /// now owns the token; wake it.
    WakeWriter,
    /// The queue is full: wait until the writer frees room ([`Next::Write`] says when), then
    /// send it again.
    Full(Vec<u8>),
    /// This write failed the socket: wake the writer and every sender waiting for room.
    Broke,
    /// The socket had failed before: the client is gone.
    Failed,
}

/// The writer's next step.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write `line` whole (waiting for the socket as needed). `freed_room`: the queue was
    /// full, so wake the senders waiting for room.
    Write { line: Vec<u8>, freed_room: bool },
    /// The token is not the writer's: wait to be woken (by [`Sent::WakeWriter`],
    /// [`Sent::Broke`] or [`OutboxState::senders_gone`]), then ask again.
    Wait,
    /// Every sender is gone and the queue is written: the writer ends.
    Done,
    /// The socket failed: the writer ends.
    Failed,
}

impl OutboxState {
    /// An empty outbox whose queue holds `capacity` messages (one more briefly, when a
    /// direct write cut short puts its rest in front).
    pub fn new(capacity: usize) -> OutboxState {
        Self::counted_in(capacity, Arc::new(AtomicUsize::new(0)))
    }

    /// Like [`OutboxState::new`], adding what it queues to `gauge`, which other outboxes
    /// may share.
    pub fn counted_in(capacity: usize, gauge: Arc<AtomicUsize>) -> OutboxState {
        OutboxState {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                owner: Owner::Idle,
                failed: false,
                senders_gone: false,
            }),
            capacity,
            queued_gauge: gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it (queue pushes and flag updates only); if a panic
        // ever did, the state is still consistent enough to wind the connection down.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `line`: writes it now through `try_write` (a non-blocking write that returns
    /// `WouldBlock` when the socket is full) if nobody owns the token, else queues it.
    pub fn send(
        &self,
        mut line: Vec<u8>,
        mut try_write: impl FnMut(&[u8]) -> io::Result<usize>,
    ) -> Sent {
        {
            let mut st = self.lock();
            if st.failed {
                return Sent::Failed;
            }
            if st.owner != Owner::Idle {
                if st.queue.len() >= self.capacity {
                    return Sent::Full(line);
                }
                st.queue.push_back(line);
                self.queued_gauge.fetch_add(1, Ordering::Relaxed);
                return Sent::Done;
            }
            st.owner = Owner::Sender;
        }
        let mut done = 0;
        while done < line.len() {
            match try_write(&line[done..]) {
                Ok(0) => {
                    self.fail();
                    return Sent::Broke;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail();
                    return Sent::Broke;
                }
            }
        }
        let mut st = self.lock();
        if st.failed {
            return Sent::Failed;
        }
        if done < line.len() {
            // The rest of this message comes before anything queued while we wrote.
            line.drain(..done);
            st.queue.push_front(line);
            self.queued_gauge.fetch_add(1, Ordering::Relaxed);
        }
        if st.queue.is_empty() {
            st.owner = Owner::Idle;
            Sent::Done
        } else {
            st.owner = Owner::Writer;
            Sent::WakeWriter
        }
    }

    /// The writer's next step; see [`Next`].
    pub fn next(&self) -> Next {
        let mut st = self.lock();
        if st.failed {
            return Next::Failed;
        }
        if st.owner == Owner::Writer {
            let freed_room = st.queue.len() >= self.capacity;
            if let Some(line) = st.queue.pop_front() {
                self.queued_gauge.fetch_sub(1, Ordering::Relaxed);
                return Next::Write { line, freed_room };
            }
            st.owner = Owner::Idle;
        }
        // A sender holding the token holds a sender handle, so with every sender gone the
        // token is idle and the queue empty.
        if st.senders_gone && st.owner == Owner::Idle {
            return Next::Done;
        }
        Next::Wait
    }

    /// The socket failed (the writer's write did): refuses all senders from now on and
    /// drops the queue. The caller wakes the writer and every sender waiting for room.
    pub fn fail(&self) {
        let mut st = self.lock();
        st.failed = true;
        self.queued_gauge
            .fetch_sub(st.queue.len(), Ordering::Relaxed);
        st.queue.clear();
    }

    /// The last sender handle is gone; the caller wakes the writer, which ends once the
    /// queue is written.
    pub fn senders_gone(&self) {
        self.lock().senders_gone = true;
    }

    /// Messages queued (for tests and models).
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

impl Drop for OutboxState {
    /// An outbox dropped with messages still queued (its connection ended) takes them out
    /// of the shared gauge.
    fn drop(&mut self) {
        let left = self.lock().queue.len();
        self.queued_gauge.fetch_sub(left, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(any(brummer_loom, brummer_shuttle))))]
mod tests {
    use super::*;

    fn would_block(_: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn an_idle_outbox_writes_directly() {
        let o = OutboxState::new(2);
        let mut out = Vec::new();
        let sent = o.send(b"ab\n".to_vec(), |b| {
            out.extend_from_slice(b);
            Ok(b.len())
        });
        assert_eq!(sent, Sent::Done);
        assert_eq!(out, b"ab\n");
        assert_eq!(o.next(), Next::Wait);
    }

    #[test]
    fn a_cut_short_write_hands_its_rest_to_the_writer_first() {
        let o = OutboxState::new(2);
        let mut room = 1;
        // One byte, then the socket is full.
        let sent = o.send(b"abcd".to_vec(), |b| match room {
            0 => would_block(b),
            _ => {
                room = 0;
                Ok(1)
            }
        });
        assert_eq!(sent, Sent::WakeWriter);
        assert_eq!(o.send(b"ef".to_vec(), would_block), Sent::Done);
        assert_eq!(
            o.send(b"gh".to_vec(), would_block),
            Sent::Full(b"gh".to_vec())
        );
        let line = |l: &[u8], freed_room| Next::Write {
            line: l.to_vec(),
            freed_room,
        };
        assert_eq!(o.next(), line(b"bcd", true));
        assert_eq!(o.next(), line(b"ef", false));
        assert_eq!(o.next(), Next::Wait);
        o.senders_gone();
        assert_eq!(o.next(), Next::Done);
    }

    #[test]
    fn a_failed_socket_fails_everyone() {
        let o = OutboxState::new(2);
        let sent = o.send(b"x".to_vec(), |_| Err(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(sent, Sent::Broke);
        assert_eq!(o.send(b"y".to_vec(), would_block), Sent::Failed);
        assert_eq!(o.next(), Next::Failed);
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn a_shared_gauge_counts_what_every_outbox_holds_queued() {
        let gauge = Arc::new(AtomicUsize::new(0));
        let n = || gauge.load(Ordering::Relaxed);
        let a = OutboxState::counted_in(4, gauge.clone());
        let b = OutboxState::counted_in(4, gauge.clone());
        // Cut short: the rest is queued; then one more behind it.
        assert_eq!(a.send(b"abc".to_vec(), would_block), Sent::WakeWriter);
        assert_eq!(a.send(b"d".to_vec(), would_block), Sent::Done);
        assert_eq!(b.send(b"xy".to_vec(), would_block), Sent::WakeWriter);
        assert_eq!(b.send(b"z".to_vec(), would_block), Sent::Done);
        assert_eq!(n(), 4);
        assert!(matches!(a.next(), Next::Write { .. }));
        assert_eq!(n(), 3);
        // A failed socket drops its queue, a dropped outbox what it still held.
        b.fail();
        assert_eq!(n(), 1);
        drop(a);
        assert_eq!(n(), 0);
    }
}
