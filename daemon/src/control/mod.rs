//! The Unix-socket control plane: JSON-RPC 2.0, one object per line.
//!
//! `serve` accepts connections; each gets a `conn::Connection` task that reads requests,
//! answers reads inline from cells, registry and rings, runs mutations and streams as
//! tasks of their own (so replies may come out of order), and writes everything through one
//! bounded outbox per connection (straight to the socket when nothing waits). Nothing a
//! client sends or fails to read can reach the listener or another connection.

pub mod auth;
mod conn;
mod framing;
mod methods;
mod outbox;
mod sock;
mod streams;

use crate::daemon::Daemon;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use tokio::net::UnixListener;

pub use auth::Peer;

/// Starts accepting on `listener`. The returned task ends when aborted.
pub fn serve(
    daemon: Arc<Daemon>,
    listener: StdUnixListener,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let peer = match auth::Peer::of(&stream, &daemon) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(cause = %e, "cannot read peer credentials; closing");
                            continue;
                        }
                    };
                    tokio::spawn(conn::Connection::new(daemon.clone(), stream, peer).run());
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }))
}
