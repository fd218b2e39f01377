//! The socket's methods, one file each, and the table that dispatches a decoded request to
//! its file ([`call`]). Adding a method means a variant in brummer-proto's `Request`, one
//! line in the table and one new file here.
//!
//! A method says how the connection runs it ([`Call`]): answered at once from cells,
//! registry and rings; answered later by a task of its own (mutations, disk reads), so the
//! connection goes on reading; or as a stream with a subscription id, which answers the
//! request itself and then sends notifications until unsubscribed.

mod disable;
mod enable;
mod follow;
mod hello;
mod list;
mod logs;
mod metrics;
mod reexec;
mod reload;
mod restart;
mod start;
mod status;
mod stop;
mod subscribe;
mod version;

use super::Peer;
use super::outbox::Outbox;
use crate::ops::Caller;
use crate::process::entry::rfc3339_us;
use crate::state::State;
use brummer_core::Line;
use brummer_proto::methods::{LogLine, Request};
use brummer_proto::rpc::JSONRPC;
use brummer_proto::{ErrorCode, RpcError};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::runtime::Handle;

pub use super::Reply;

pub type Task<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a method needs of its connection.
pub struct Ctx<'a> {
    pub state: &'a Arc<State>,
    pub peer: Peer,
}

impl Ctx<'_> {
    fn caller(&self) -> Caller {
        Caller {
            uid: self.peer.uid,
            can_write: self.peer.can_write,
        }
    }
}

/// How the connection runs a method.
/// Run once an answer has been handed to the connection's socket.
pub type AfterReply = Box<dyn FnOnce() + Send>;

pub enum Call {
    /// The answer, computed inline.
    Now(Reply),
    /// A task whose result is the answer; the connection reads on meanwhile.
    Later(Task<Reply>),
    /// The same, with what to do once the answer is handed to the socket (a re-exec waits
    /// for its answer to leave before the image goes).
    LaterThen(Task<(Reply, AfterReply)>),
    /// A stream, opened with its subscription id once the connection assigned one.
    Stream(Box<dyn FnOnce(StreamCtx) -> Stream + Send>),
    /// Ends a stream of this connection.
    Unsubscribe(u64),
}

/// What a stream is given: its id, where to write, and the id of the request to answer.
pub struct StreamCtx {
    pub sub: u64,
    pub out: Outbox,
    pub id: Option<Value>,
}

/// A stream's task and the runtime it should run on (a log thread), if not the main one.
pub struct Stream {
    pub task: Task<()>,
    pub on: Option<Handle>,
}

/// The table.
pub fn call(cx: &Ctx<'_>, req: Request) -> Call {
    let state = cx.state;
    match req {
        Request::Hello(p) => Call::Now(hello::run(state, cx.peer, p)),
        Request::Version => Call::Now(version::run()),
        Request::List => Call::Now(list::run(state)),
        Request::Status(sel) => Call::Now(status::run(state, &sel)),
        Request::Logs(p) => Call::Later(Box::pin(logs::run(state.clone(), p))),
        Request::Start(sel) => Call::Later(Box::pin(start::run(state.clone(), cx.caller(), sel))),
        Request::Stop(sel) => Call::Later(Box::pin(stop::run(state.clone(), cx.caller(), sel))),
        Request::Restart(sel) => {
            Call::Later(Box::pin(restart::run(state.clone(), cx.caller(), sel)))
        }
        Request::Enable(p) => Call::Later(Box::pin(enable::run(state.clone(), cx.caller(), p))),
        Request::Disable(p) => Call::Later(Box::pin(disable::run(state.clone(), cx.caller(), p))),
        Request::Reload => Call::Later(Box::pin(reload::run(state.clone(), cx.caller()))),
        Request::DaemonReexec => Call::LaterThen(Box::pin(reexec::run(state.clone(), cx.caller()))),
        Request::Follow(p) => {
            let state = state.clone();
            Call::Stream(Box::new(move |s| follow::open(state, p, s)))
        }
        Request::Subscribe(p) => {
            let state = state.clone();
            Call::Stream(Box::new(move |s| subscribe::open(state, p, s)))
        }
        Request::Unsubscribe(p) => Call::Unsubscribe(p.subscription),
        Request::Metrics => Call::Now(metrics::run(state)),
    }
}

pub fn to_raw<T: Serialize>(t: &T) -> Reply {
    serde_json::value::to_raw_value(t)
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
}

#[derive(Serialize)]
struct Note<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
}

/// Sends a notification; false when the client is gone.
async fn notify<P: Serialize>(out: &Outbox, method: &str, params: P) -> bool {
    out.send(&Note {
        jsonrpc: JSONRPC,
        method,
        params,
    })
    .await
}

/// Converts a ring line into its wire form.
fn wire_line(process: &str, l: &Line) -> LogLine {
    let (text, lossy) = match String::from_utf8_lossy(&l.bytes) {
        std::borrow::Cow::Borrowed(s) => (s.to_owned(), false),
        std::borrow::Cow::Owned(s) => (s, true),
    };
    LogLine {
        process: process.to_owned(),
        seq: l.meta.seq,
        time: rfc3339_us(l.meta.wall_us),
        time_us: l.meta.wall_us,
        stream: l.meta.stream,
        pid: l.meta.pid,
        text,
        lossy,
        partial: l.meta.partial,
    }
}

#[cfg(test)]
mod tests;
