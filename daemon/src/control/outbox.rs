//! The write side of one client connection: every reply and notification goes through an
//! [`Outbox`], in the order the senders hand them over.
//!
//! A message goes straight to the socket (one non-blocking write from the sending task)
//! when nothing is queued and no one else is writing; otherwise, or when the socket would
//! block, it waits in a bounded queue drained by the connection's writer task
//! ([`write_queued`]). The direct path is for latency: a followed line then reaches the
//! socket without waking a second task, which may run on the other runtime worker
//! (docs/architecture.md, "W6, follow latency").
//!
//! Who writes, and in what order, is brummer-core's [`OutboxState`] (the owner-token
//! protocol, model-checked there); this file adds the socket and the waiting: the writer
//! task waits for work and for the socket, and senders wait for room in a full queue. A
//! client that stops reading fills the queue; then only the tasks writing to this connection
//! wait (a stream task stops consuming its ring cursor or bus queue, and the daemon counts
//! what it misses), never the supervisor or capture tasks.

use super::sock::WriteSide;
use brummer_core::outbox::{Next, OutboxState, Sent};
use brummer_proto::rpc::Response;
use serde::Serialize;
use serde_json::Value;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
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
        self.0.state.senders_gone();
        self.0.work.notify_one();
    }
}

struct Shared {
    socket: WriteSide,
    state: OutboxState,
    /// Wakes the writer task when it is handed the token or the last sender is gone
    /// (`notify_one` keeps a permit, so a hand-over before it waits is not lost).
    work: Notify,
    /// Wakes senders waiting for room in a full queue, and all of them when the socket fails.
    room: Notify,
}

impl Shared {
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

    /// Writes or queues `line` (false: the client is gone); gives it back when the queue
    /// is full.
    fn try_push(&self, line: Vec<u8>) -> Result<bool, Vec<u8>> {
        match self.state.send(line, |b| self.socket.try_write(b)) {
            Sent::Done => Ok(true),
            Sent::WakeWriter => {
                self.work.notify_one();
                Ok(true)
            }
            Sent::Full(line) => Err(line),
            Sent::Broke => {
                self.wake_all();
                Ok(false)
            }
            Sent::Failed => Ok(false),
        }
    }

    /// After the socket failed: the writer and every sender waiting for room learn it.
    fn wake_all(&self) {
        self.room.notify_waiters();
        self.work.notify_one();
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
    /// the socket's write side is shut down when both are gone). What it queues is
    /// counted in `queued`, which every connection's outbox shares.
    pub fn new(
        socket: WriteSide,
        queued: Arc<AtomicUsize>,
    ) -> (Outbox, impl Future<Output = ()> + Send + 'static) {
        let shared = Arc::new(Shared {
            socket,
            state: OutboxState::counted_in(OUTBOX, queued),
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
        match shared.state.next() {
            Next::Write { line, freed_room } => {
                if freed_room {
                    // Senders wait only on a full queue, so only this pop can free them.
                    shared.room.notify_waiters();
                }
                if shared.write_all(&line).await.is_err() {
                    shared.state.fail();
                    shared.wake_all();
                    return;
                }
            }
            Next::Wait => shared.work.notified().await,
            Next::Done | Next::Failed => return,
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
        let (_read, write) = super::super::sock::split(ours)
            .map_err(|(e, _)| e)
            .expect("split");
        let (out, writer) = Outbox::new(write, Arc::default());
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
        let (_read, write) = super::super::sock::split(ours)
            .map_err(|(e, _)| e)
            .expect("split");
        let (out, writer) = Outbox::new(write, Arc::default());
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
