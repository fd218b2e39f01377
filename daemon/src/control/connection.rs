//! One client connection: framing, the hello rule and dispatch through the method table
//! (`methods::call`). Every reply and notification goes out through the connection's
//! `Outbox`; the connection's tasks (answers computed later, streams) are counted by the
//! shutdown tracker and end with the shutdown token, a stream also with its own child
//! token (`unsubscribe`, or the connection closing).

use super::Peer;
use super::framing::{Frame, LineReader};
use super::methods::{self, Call, Ctx, StreamCtx};
use super::outbox::Outbox;
use crate::shutdown::Shutdown;
use crate::state::State;
use brummer_proto::methods::{Request, UnsubscribeResult};
use brummer_proto::rpc::{RawRequest, Response};
use brummer_proto::{ErrorCode, MAX_LINE, RpcError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Requests of one connection running at once; more wait for a slot (the client is not
/// read meanwhile, which is its backpressure).
const IN_FLIGHT: usize = 64;

pub struct Connection {
    state: Arc<State>,
    stream: UnixStream,
    peer: Peer,
}

/// What the connection reads next: a request to run, or a line it answers itself.
pub(crate) enum Next {
    Request(Option<Value>, Request),
    Answer(Response),
    Skip,
}

impl Connection {
    pub fn new(state: Arc<State>, stream: UnixStream, peer: Peer) -> Connection {
        Connection {
            state,
            stream,
            peer,
        }
    }

    pub async fn run(self) {
        let (read, write) = match super::sock::split(self.stream) {
            Ok(halves) => halves,
            Err((e, fd)) => {
                tracing::warn!(cause = %e, "cannot set up a client connection; closing it");
                if let Some(fd) = fd {
                    refuse(fd, &e);
                }
                return;
            }
        };
        let tasks = self.state.shutdown().clone();
        let (out, writer) = Outbox::new(write, self.state.outbox_queued());
        let writer = tasks.spawn(writer);
        let mut reader = LineReader::new(read, MAX_LINE);
        let mut session = Session {
            out,
            tasks,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            streams: HashMap::new(),
            next_sub: 1,
            hello_failed: false,
        };
        let cx = Ctx {
            state: &self.state,
            peer: self.peer,
        };
        loop {
            let frame = match reader.next().await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
            };
            let open = match parse(frame) {
                Next::Request(id, req) => session.handle(&cx, id, req).await,
                Next::Answer(r) => session.out.send(&r).await,
                Next::Skip => true,
            };
            if !open {
                break;
            }
        }
        for (token, _) in session.streams.into_values() {
            token.trigger();
        }
        drop(session.out);
        // Answers still being computed hold outbox clones; the writer ends once they have
        // answered (or the shutdown token ends them).
        let _ = writer.await;
    }
}

/// What one connection keeps between requests.
struct Session {
    out: Outbox,
    tasks: Shutdown,
    /// Answers being computed (`Call::Later`); at most `IN_FLIGHT`.
    slots: Arc<Semaphore>,
    /// Streams by subscription id, each with its own token.
    streams: HashMap<u64, (Shutdown, JoinHandle<()>)>,
    next_sub: u64,
    /// A failed hello (protocol mismatch) refuses everything after it on this connection
    /// until a hello succeeds: a pipelining client must not have its request run by a
    /// daemon that speaks another protocol.
    hello_failed: bool,
}

impl Session {
    /// Runs one request; false when the client is gone.
    async fn handle(&mut self, cx: &Ctx<'_>, id: Option<Value>, req: Request) -> bool {
        if self.hello_failed && !matches!(req, Request::Hello(_)) {
            let e = RpcError::new(
                ErrorCode::InvalidRequest,
                "refused: this connection's hello named an unsupported protocol",
            );
            return self.out.reply(id, Err(e)).await;
        }
        let is_hello = matches!(req, Request::Hello(_));
        let open = match methods::call(cx, req) {
            Call::Now(r) => {
                if is_hello {
                    self.hello_failed = r.is_err();
                }
                self.out.reply(id, r).await
            }
            Call::LaterThen(task) => {
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    return false;
                };
                let out = self.out.clone();
                self.tasks.spawn(async move {
                    let (r, after) = task.await;
                    out.reply(id, r).await;
                    after();
                    drop(permit);
                });
                true
            }
            Call::Later(task) => {
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    return false;
                };
                let out = self.out.clone();
                self.tasks.spawn(async move {
                    let r = task.await;
                    out.reply(id, r).await;
                    drop(permit);
                });
                true
            }
            Call::Stream(open) => {
                let sub = self.next_sub;
                self.next_sub += 1;
                let stream = open(StreamCtx {
                    sub,
                    out: self.out.clone(),
                    id,
                });
                let token = self.tasks.child();
                let h = match stream.on {
                    Some(handle) => token.spawn_on(stream.task, &handle),
                    None => token.spawn(stream.task),
                };
                self.streams.insert(sub, (token, h));
                true
            }
            Call::Unsubscribe(sub) => {
                let r = match self.streams.remove(&sub) {
                    Some((token, _)) => {
                        token.trigger();
                        methods::to_raw(&UnsubscribeResult { ok: true })
                    }
                    None => Err(RpcError::new(
                        ErrorCode::NoSuchSubscription,
                        format!("no subscription {sub} on this connection"),
                    )),
                };
                self.out.reply(id, r).await
            }
        };
        self.streams.retain(|_, (_, h)| !h.is_finished());
        open
    }
}

/// Frames a line into a request, or the error reply a bad line gets.
pub(crate) fn parse(frame: Frame) -> Next {
    let line = match frame {
        Frame::Line(l) => l,
        Frame::TooLong(n) => {
            let e = RpcError::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "request line of {n} bytes is over the {MAX_LINE}-byte limit; skipped to the next newline"
                ),
            );
            return Next::Answer(Response::err(None, e));
        }
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return Next::Skip;
    }
    let raw = match RawRequest::parse(&line) {
        Ok(r) => r,
        Err((id, e)) => return Next::Answer(Response::err(id, e)),
    };
    let id = raw.id.clone();
    match raw.decode() {
        Ok(r) => Next::Request(id, r),
        // A notification (no id) gets no answer, not even an error (JSON-RPC 2.0, 4.1).
        Err(_) if id.is_none() => Next::Skip,
        Err(e) => Next::Answer(Response::err(id, e)),
    }
}

/// Tells a client that brummerd could not take its connection (an error reply with id
/// null, which brummerctl prints as the answer to its request), instead of a bare close.
/// One small write on the non-blocking socket: it fits the empty send buffer, and if it
/// does not, the client still sees the close.
pub(super) fn refuse(fd: std::os::fd::OwnedFd, cause: &std::io::Error) {
    let why = match cause.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => format!(
            "brummerd cannot take this connection: it is out of file descriptors ({cause}): raise LimitNOFILE= (or ulimit -n), run fewer programs or close idle clients"
        ),
        _ => format!("brummerd cannot take this connection: {cause}"),
    };
    let reply = Response::err(None, RpcError::new(ErrorCode::OperationFailed, why));
    if let Ok(mut line) = serde_json::to_vec(&reply) {
        line.push(b'\n');
        let _ = rustix::io::write(&fd, &line);
    }
    // A close with the client's request still unread would reset the connection, and the
    // client could see the reset instead of the reply: read what already came (the socket
    // is non-blocking) and half-close first.
    let _ = rustix::net::shutdown(&fd, rustix::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(rustix::io::read(&fd, &mut sink), Ok(n) if n > 0) {}
}
