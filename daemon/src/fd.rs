//! Registering owned file descriptors (pipes, pidfds) with tokio's reactor.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Watches `fd` for readability. Consumes it: the `AsyncFd` owns and closes it.
pub fn watch_readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that stays open and keeps its number
    // until the `AsyncFd` owning it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into())
}

/// Takes `fd` back from the reactor for a re-exec, without deregistering it: `execve`
/// closes the reactor's epoll descriptor and every registration with it, so a
/// deregistration (an `epoll_ctl` per pipe and pidfd) would be wasted. The reactor keeps a
/// registration that wakes nobody until then. Only for descriptors handed to the next
/// image, by an image that executes it or exits.
pub fn unwatch_for_exec(fd: AsyncFd<OwnedFd>) -> OwnedFd {
    let raw = fd.as_raw_fd();
    // Forgotten, the `AsyncFd` neither deregisters nor closes `raw`.
    std::mem::forget(fd);
    // SAFETY: `raw` was owned by the forgotten `AsyncFd`, so nothing else owns or closes it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
