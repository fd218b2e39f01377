//! Registering owned file descriptors (pipes, pidfds) with tokio's reactor.

use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Watches `fd` for readability. Consumes it: the `AsyncFd` owns and closes it.
pub fn watch_readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that stays open and keeps its number
    // until the `AsyncFd` owning it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into())
}
