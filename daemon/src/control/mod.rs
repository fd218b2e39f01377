//! The Unix-socket control plane: JSON-RPC 2.0, one object per line.
//!
//! `listener` accepts connections; each gets a `connection::Connection` task that reads
//! requests and dispatches them through the method table (`methods`): reads are answered
//! inline from cells, registry and rings; mutations, disk reads and streams run as tasks of
//! their own (so replies may come out of order). Everything goes out through one bounded
//! outbox per connection (`outbox`, straight to the socket when nothing waits). Nothing a
//! client sends or fails to read can reach the listener or another connection.

pub(crate) mod connection;
pub(crate) mod framing;
pub mod listener;
mod methods;
mod outbox;
mod sock;

use crate::state::State;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use tokio::net::UnixListener;

/// A method's answer, serialised once, straight from its typed result.
pub type Reply = Result<Box<serde_json::value::RawValue>, brummer_proto::RpcError>;

/// Who is on the other end of a connection (SO_PEERCRED), judged once at accept.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub can_write: bool,
}

/// Starts accepting on `listener`; the loop ends with the state's shutdown token.
pub fn serve(state: Arc<State>, listener: StdUnixListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let tasks = state.shutdown().clone();
    tasks.spawn(listener::accept(state, listener));
    Ok(())
}
