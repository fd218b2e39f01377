//! The write side of one client connection: every reply and notification goes through an
//! [`Outbox`], in the order the senders hand them over.
//!
//! A message goes straight to the socket (one non-blocking write from the sending task)
//! when nothing is queued and no one else is writing; otherwise, or when the socket would
//! block, it waits in a bounded queue drained by the connection's writer task
//! ([`write_queued`]). The direct path is for latency: a followed line used to cross a
//! channel and wake a second task, often on the other runtime worker, before it reached the
//! socket (W6 in `docs/bench-peers.md`).
//!
//! Who writes: whoever holds the `Owner` token, claimed under the state mutex and held while
//! writing; the mutex itself is never held across a write or an `.await`. A sender that
//! finds the token taken queues instead of waiting for it, so order holds without anyone
//! waiting on a lock. A client that stops reading fills the queue; then only the tasks
//! writing to this connection wait (a stream task stops consuming its ring cursor or bus
//! queue, and the daemon counts what it misses), never the supervisor or capture tasks.

use super::sock::WriteSide;
use brummer_proto::rpc::Response;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Messages waiting for one client. A sender finding it full waits for room. A direct write
/// cut short puts its rest in front, so the queue may briefly hold one more.
const OUTBOX: usize = 256;

/// The sending side of a connection's outbox; cloned into every task that answers on it.
#[derive(Clone)]
pub struct Outbox(Arc<Senders>);

/// Shared by all clones of one `Outbox`: dropping the last tells the writer task that
/// nothing more will come, so it ends once the queue is written.
struct Senders(Arc<Shared>);

impl Drop for Senders {
    fn drop(&mut self) {
        self.0.lock().senders_gone = true;
        self.0.work.notify_one();
    }
}

struct Shared {
    socket: WriteSide,
    state: Mutex<State>,
    /// Wakes the writer task when it is handed the token or the last sender is gone
    /// (`notify_one` keeps a permit, so a hand-over before it waits is not lost).
    work: Notify,
    /// Wakes senders waiting for room in a full queue, and all of them when the socket fails.
    room: Notify,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    /// Nobody writes, and the queue is empty.
    Idle,
    /// A sender is writing its message straight to the socket; others queue behind it.
    Sender,
    /// The writer task drains the queue.
    Writer,
}

struct State {
    queue: VecDeque<Vec<u8>>,
    owner: Owner,
    /// The socket failed (client gone): senders get `false`, the queue is dropped.
    failed: bool,
    senders_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it (queue pushes and flag updates only); if a
        // panic ever did, the state is still consistent enough to wind the connection down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn push(&self, mut line: Vec<u8>) -> bool {
        loop {
            match self.try_push(line) {
                Ok(sent) => return sent,
                Err(back) => line = back,
            }
            // Full. Registered, then checked again: room made in between still wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(line) {
                Ok(sent) => return sent,
                Err(back) => line = back,
            }
            room.await;
        }
    }

    /// Writes or queues `line`; gives it back when the queue is full.
    fn try_push(&self, line: Vec<u8>) -> Result<bool, Vec<u8>> {
        let mut st = self.lock();
        if st.failed {
            return Ok(false);
        }
        if st.owner == Owner::Idle {
            st.owner = Owner::Sender;
            drop(st);
            return Ok(self.write_now(line));
        }
        if st.queue.len() < OUTBOX {
            st.queue.push_back(line);
            return Ok(true);
        }
        Err(line)
    }

    /// Writes `line` without waiting, holding the token; whatever the socket does not take
    /// now, and everything queued meanwhile, goes to the writer task.
    fn write_now(&self, mut line: Vec<u8>) -> bool {
        let mut done = 0;
        while done < line.len() {
            match self.socket.try_write(&line[done..]) {
                Ok(0) => return self.fail(),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(),
            }
        }
        let mut st = self.lock();
        if st.failed {
            return false;
        }
        if done < line.len() {
            // The rest of this message comes before anything queued while we wrote.
            line.drain(..done);
            st.queue.push_front(line);
        }
        if st.queue.is_empty() {
            st.owner = Owner::Idle;
        } else {
            st.owner = Owner::Writer;
            drop(st);
            self.work.notify_one();
        }
        true
    }

    fn fail(&self) -> bool {
        {
            let mut st = self.lock();
            st.failed = true;
            st.queue.clear();
        }
        self.room.notify_waiters();
        self.work.notify_one();
        false
    }

    /// Like `AsyncWriteExt::write_all`, through `&self`, so that senders can `try_write`
    /// on the same half while the writer task waits for the socket.
    async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.socket.writable().await?;
            match self.socket.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Outbox {
    /// An outbox writing to `socket`, and the writer task's future (spawn it; it ends when
    /// every clone of the outbox is dropped and the queue is written, or the socket fails;
    /// the socket's write side is shut down when both are gone).
    pub fn new(socket: WriteSide) -> (Outbox, impl Future<Output = ()> + Send + 'static) {
        let shared = Arc::new(Shared {
            socket,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                owner: Owner::Idle,
                failed: false,
                senders_gone: false,
            }),
            work: Notify::new(),
            room: Notify::new(),
        });
        (
            Outbox(Arc::new(Senders(shared.clone()))),
            write_queued(shared),
        )
    }

    /// Serialises and sends (or queues) one message. False when the client is gone.
    pub async fn send<T: Serialize>(&self, msg: &T) -> bool {
        let mut line = match serde_json::to_vec(msg) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(cause = %e, "cannot serialise a reply");
                return true;
            }
        };
        line.push(b'\n');
        self.0.0.push(line).await
    }

    pub async fn reply(&self, id: Option<Value>, result: super::Reply) -> bool {
        let Some(id) = id else {
            // A JSON-RPC notification from the client: no reply (spec 4.1).
            return true;
        };
        match result {
            Ok(v) => self.send(&Response::ok(id, v)).await,
            Err(e) => self.send(&Response::err(Some(id), e)).await,
        }
    }
}

/// The writer task: writes what the queue holds whenever it is handed the token.
async fn write_queued(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut st = shared.lock();
            if st.failed {
                return;
            }
            if st.owner == Owner::Writer {
                let was_full = st.queue.len() >= OUTBOX;
                let line = st.queue.pop_front();
                if line.is_none() {
                    st.owner = Owner::Idle;
                }
                line.map(|l| (l, was_full))
            } else {
                None
            }
        };
        match next {
            Some((line, was_full)) => {
                if was_full {
                    // Senders wait only on a full queue, so only this pop can free them.
                    shared.room.notify_waiters();
                }
                if shared.write_all(&line).await.is_err() {
                    shared.fail();
                    return;
                }
            }
            None => {
                if shared.lock().senders_gone {
                    // No sender left can hold the token, and the queue is written.
                    return;
                }
                shared.work.notified().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixStream;

    /// Senders racing for one socket whose reader is slower than them: every message comes
    /// out whole, once, in each sender's order, and the stream ends (EOF) only after the last
    /// queued message, once every outbox clone is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_senders_keep_order_and_lose_nothing() {
        const SENDERS: u64 = 4;
        const EACH: u64 = 3000;
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let (_read, write) = super::super::sock::split(ours).expect("split");
        let (out, writer) = Outbox::new(write);
        let writer = tokio::spawn(writer);
        let mut tasks = Vec::new();
        for s in 0..SENDERS {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                // Big enough that the socket buffer fills and writes get cut short.
                let pad = "x".repeat(700 + 300 * s as usize);
                for i in 0..EACH {
                    assert!(out.send(&(s, i, &pad)).await, "client still reading");
                }
            }));
        }
        drop(out);
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(theirs).lines();
            let mut next = vec![0u64; SENDERS as usize];
            while let Some(l) = lines.next_line().await.expect("read") {
                let (s, i, _): (u64, u64, String) = serde_json::from_str(&l).expect("whole line");
                assert_eq!(i, next[s as usize], "sender {s} out of order");
                next[s as usize] += 1;
            }
            next
        });
        for t in tasks {
            t.await.expect("sender");
        }
        writer.await.expect("writer");
        let got = reader.await.expect("reader");
        assert_eq!(got, vec![EACH; SENDERS as usize]);
    }

    /// A client that is gone: sends fail instead of waiting forever, and the writer ends.
    #[tokio::test]
    async fn a_vanished_client_fails_senders_and_ends_the_writer() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let (_read, write) = super::super::sock::split(ours).expect("split");
        let (out, writer) = Outbox::new(write);
        let writer = tokio::spawn(writer);
        drop(theirs);
        let pad = "y".repeat(4096);
        let mut sent = 0;
        while out.send(&pad).await {
            sent += 1;
            assert!(sent < 100_000, "sends never failed");
        }
        assert!(!out.send(&"after").await);
        drop(out);
        writer.await.expect("writer ends");
    }
}
