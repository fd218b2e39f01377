//! One client connection: framing, the hello/permission rules and dispatch. Every reply
//! and notification goes out through the connection's `Outbox` (see `outbox`).

use super::auth::Peer;
use super::framing::{Frame, LineReader};
use super::outbox::Outbox;
use super::{methods, streams};
use crate::daemon::Daemon;
use brummer_proto::methods::{Request, UnsubscribeResult};
use brummer_proto::rpc::{RawRequest, Response};
use brummer_proto::{ErrorCode, MAX_LINE, RpcError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Requests of one connection running at once; more wait for a slot (the client is not
/// read meanwhile, which is its backpressure).
const IN_FLIGHT: usize = 64;

pub struct Connection {
    daemon: Arc<Daemon>,
    stream: UnixStream,
    peer: Peer,
}

impl Connection {
    pub fn new(daemon: Arc<Daemon>, stream: UnixStream, peer: Peer) -> Connection {
        Connection {
            daemon,
            stream,
            peer,
        }
    }

    pub async fn run(self) {
        let (read, write) = match super::sock::split(self.stream) {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!(cause = %e, "cannot set up a client connection; closing it");
                return;
            }
        };
        let (out, writer) = Outbox::new(write);
        let writer = tokio::spawn(writer);
        let mut reader = LineReader::new(read, MAX_LINE);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut subs: HashMap<u64, AbortHandle> = HashMap::new();
        let mut next_sub = 1u64;
        // A failed hello (protocol mismatch) refuses everything after it on this
        // connection until a hello succeeds: a pipelining client must not have its request
        // run by a daemon that speaks another protocol.
        let mut hello_failed = false;
        loop {
            let frame = match reader.next().await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
            };
            let line = match frame {
                Frame::Line(l) => l,
                Frame::TooLong(n) => {
                    let e = RpcError::new(
                        ErrorCode::RequestTooLarge,
                        format!(
                            "request line of {n} bytes is over the {MAX_LINE}-byte limit; skipped to the next newline"
                        ),
                    );
                    if !out.send(&Response::err(None, e)).await {
                        break;
                    }
                    continue;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let raw = match RawRequest::parse(&line) {
                Ok(r) => r,
                Err((id, e)) => {
                    if !out.send(&Response::err(id, e)).await {
                        break;
                    }
                    continue;
                }
            };
            let id = raw.id.clone();
            let req = match raw.decode() {
                Ok(r) => r,
                Err(e) => {
                    if !out.reply(id, Err(e)).await {
                        break;
                    }
                    continue;
                }
            };
            if hello_failed && !matches!(req, Request::Hello(_)) {
                let e = RpcError::new(
                    ErrorCode::InvalidRequest,
                    "refused: this connection's hello named an unsupported protocol",
                );
                if !out.reply(id, Err(e)).await {
                    break;
                }
                continue;
            }
            if req.is_mutating() && !self.peer.can_write {
                let e = crate::ops::permission_denied(self.peer.uid, self.daemon.uid);
                if !out.reply(id, Err(e)).await {
                    break;
                }
                continue;
            }
            match req {
                Request::Start(_) | Request::Stop(_) | Request::Restart(_) | Request::Reload => {
                    if let Err(e) = crate::ops::accepting(&self.daemon) {
                        if !out.reply(id, Err(e)).await {
                            break;
                        }
                        continue;
                    }
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let (d, o) = (self.daemon.clone(), out.clone());
                    tokio::spawn(async move {
                        let r = methods::mutate(&d, req).await;
                        o.reply(id, r).await;
                        drop(permit);
                    });
                }
                Request::Logs(p) => {
                    // Disk reads: on a blocking thread, answered when done.
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let (d, o) = (self.daemon.clone(), out.clone());
                    tokio::spawn(async move {
                        let r = tokio::task::spawn_blocking(move || methods::logs(&d, p))
                            .await
                            .unwrap_or_else(|e| {
                                Err(RpcError::new(ErrorCode::Internal, e.to_string()))
                            });
                        o.reply(id, r).await;
                        drop(permit);
                    });
                }
                Request::Follow(p) => {
                    let sub = next_sub;
                    next_sub += 1;
                    let local = streams::placement(&self.daemon, &p.names);
                    let handle = local.as_ref().map(|w| w.handle.clone());
                    let f = streams::follow(self.daemon.clone(), out.clone(), id, sub, p, local);
                    let h = match handle {
                        Some(h) => h.spawn(f),
                        None => tokio::spawn(f),
                    };
                    subs.insert(sub, h.abort_handle());
                }
                Request::Subscribe(_) => {
                    let sub = next_sub;
                    next_sub += 1;
                    let h = tokio::spawn(streams::subscribe(
                        self.daemon.clone(),
                        out.clone(),
                        id,
                        sub,
                    ));
                    subs.insert(sub, h.abort_handle());
                }
                Request::Unsubscribe(p) => {
                    let r = match subs.remove(&p.subscription) {
                        Some(h) => {
                            h.abort();
                            methods::to_raw(&UnsubscribeResult { ok: true })
                        }
                        None => Err(RpcError::new(
                            ErrorCode::NoSuchSubscription,
                            format!("no subscription {} on this connection", p.subscription),
                        )),
                    };
                    if !out.reply(id, r).await {
                        break;
                    }
                }
                read => {
                    let is_hello = matches!(read, Request::Hello(_));
                    let r = methods::read(&self.daemon, &self.peer, read);
                    if is_hello {
                        hello_failed = r.is_err();
                    }
                    if !out.reply(id, r).await {
                        break;
                    }
                }
            }
            subs.retain(|_, h| !h.is_finished());
        }
        for (_, h) in subs {
            h.abort();
        }
        drop(out);
        // In-flight mutations hold outbox clones; the writer ends once they have answered.
        let _ = writer.await;
    }
}
