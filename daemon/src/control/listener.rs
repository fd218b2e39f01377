//! The control socket's listening end: creating it (its directory, a stale file left by a
//! crashed daemon removed versus a live daemon refused, its mode: 0600 in user mode, 0660
//! with group `brummer` when that group exists in system mode), and the accept loop, which
//! reads each peer's credentials and hands the connection to its own task.

use super::connection::Connection;
use crate::mode::Mode;
use crate::state::State;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SocketError {
    #[error("another brummerd is already listening on {0} (stop it first, or pass --socket)")]
    InUse(PathBuf),
    #[error("cannot create socket directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set permissions of {path}: {source}")]
    Perms {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn bind(path: &Path, mode: Mode) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        let dir_mode = match mode {
            Mode::System => 0o755,
            Mode::User => 0o700,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| SocketError::Dir {
                path: dir.into(),
                source,
            })?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.into()));
        }
        // Nobody answers: a leftover of a daemon that did not shut down cleanly.
        let _ = std::fs::remove_file(path);
    }
    // The socket file is created with the process umask; a permissive one would leave it
    // open to everyone until the chmod below. Called at start-up before any task creates
    // files, so changing the process-wide umask for this one call affects nothing else.
    let mask = match mode {
        Mode::User => 0o177,
        Mode::System => 0o117,
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|source| SocketError::Bind {
        path: path.into(),
        source,
    })?;
    let perms = |source| SocketError::Perms {
        path: path.into(),
        source,
    };
    match mode {
        Mode::User => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(perms)?
        }
        Mode::System => {
            if let Ok(Some(g)) = nix::unistd::Group::from_name("brummer") {
                nix::unistd::chown(path, None, Some(g.gid))
                    .map_err(|e| perms(std::io::Error::from(e)))?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(perms)?;
        }
    }
    Ok(listener)
}

/// How long the accept loop pauses after a failed accept before it tries again.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Accepts connections until the shutdown token ends the loop. A connection the daemon
/// cannot serve (no peer credentials) is closed; a failed accept (EMFILE and friends) is
/// retried after a short pause instead of spinning. A run of failures is logged once when
/// it starts and once when it ends, with its count: out of descriptors, a retry every 50 ms
/// would otherwise log 20 lines a second.
pub async fn accept(state: Arc<State>, listener: tokio::net::UnixListener) {
    let mut failing: u64 = 0;
    // One descriptor kept in hand: out of descriptors, it is given up to accept a waiting
    // client just to tell it why (`refuse_one`) instead of leaving it hanging.
    let mut spare = open_spare();
    loop {
        let accepted = listener.accept().await;
        if accepted.is_ok() && failing > 0 {
            tracing::warn!(failed = failing, "accepting connections again");
            failing = 0;
        }
        match accepted {
            Ok((stream, _)) => match stream.peer_cred() {
                Ok(cred) => {
                    let can_write =
                        state
                            .access()
                            .may_write_peer(cred.uid(), cred.gid(), cred.pid());
                    let peer = super::Peer {
                        uid: cred.uid(),
                        can_write,
                    };
                    let conn = Connection::new(state.clone(), stream, peer);
                    let open = state.connection_opened();
                    state.shutdown().spawn(async move {
                        conn.run().await;
                        drop(open);
                    });
                }
                Err(e) => tracing::warn!(cause = %e, "cannot read peer credentials; closing"),
            },
            Err(e) => {
                if failing == 0 {
                    let why = match e.raw_os_error() {
                        Some(libc::EMFILE | libc::ENFILE) => {
                            "brummerd is out of file descriptors: raise LimitNOFILE= (or ulimit -n) or run fewer programs"
                        }
                        _ => "",
                    };
                    tracing::warn!(cause = %e, hint = why, "cannot accept connections; clients wait until it can, retrying every 50 ms");
                }
                failing += 1;
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && spare.is_some()
                {
                    drop(spare.take());
                    refuse_one(&listener, &e).await;
                    spare = open_spare();
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

fn open_spare() -> Option<std::os::fd::OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(Into::into)
}

/// Accepts one waiting client with the descriptor the spare just freed and answers it with
/// the reason it cannot be served. Does nothing when no client is waiting after all.
async fn refuse_one(listener: &tokio::net::UnixListener, cause: &std::io::Error) {
    let ready = std::future::poll_fn(|cx| match listener.poll_accept(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    if let Some(Ok((stream, _))) = ready
        && let Ok(std) = stream.into_std()
    {
        super::connection::refuse(std.into(), cause);
    }
}
