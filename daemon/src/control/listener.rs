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

/// Accepts connections until the shutdown token ends the loop. A connection the daemon
/// cannot serve (no peer credentials) is closed; a failed accept (EMFILE and friends) is
/// retried after a short pause instead of spinning.
pub async fn accept(state: Arc<State>, listener: tokio::net::UnixListener) {
    loop {
        match listener.accept().await {
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
                    state.shutdown().spawn(conn.run());
                }
                Err(e) => tracing::warn!(cause = %e, "cannot read peer credentials; closing"),
            },
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
