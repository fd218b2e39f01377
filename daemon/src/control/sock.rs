//! A client connection's socket, split so that the reactor watches it for reading only.
//!
//! Why not tokio's `UnixStream`: it registers the socket for writability as well, so every
//! time the client reads (and frees room in the socket buffer) the kernel wakes the runtime
//! worker that waits in `epoll_wait`. For a follower that is one wake-up of a daemon thread
//! per line, in the client's own read, usually on the core the client needs
//! (docs/architecture.md, "W6, follow latency"). Here the read side is registered for
//! readability only, and the write side (a duplicate descriptor) is registered only while
//! a write waits for room, which only a client that reads slowly ever causes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// Splits an accepted connection. On failure (out of descriptors, mostly) the socket comes
/// back with the error when it is still usable, so the caller can tell the client why.
pub fn split(
    stream: tokio::net::UnixStream,
) -> Result<(ReadSide, WriteSide), (io::Error, Option<OwnedFd>)> {
    let fd = OwnedFd::from(stream.into_std().map_err(|e| (e, None))?);
    let dup = match fd.try_clone() {
        Ok(w) => w,
        Err(e) => return Err((e, Some(fd))),
    };
    let read = match crate::fd::watch_readable(fd) {
        Ok(r) => ReadSide(r),
        Err(e) => return Err((e, Some(dup))),
    };
    Ok((read, WriteSide { fd: dup }))
}

/// The reading end, watched for readability.
pub struct ReadSide(AsyncFd<OwnedFd>);

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            // SAFETY: `read` only writes initialised bytes into the slice, and exactly the
            // `n` it reports are then marked initialised and filled.
            let unfilled = unsafe { buf.unfilled_mut() };
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref(), &mut *unfilled)
                    .map(|(init, _)| init.len())
                    .map_err(Into::into)
            }) {
                Ok(Ok(n)) => {
                    // SAFETY: see above.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // WouldBlock: readiness cleared; poll again to register.
                Err(_would_block) => {}
            }
        }
    }
}

/// The writing end: non-blocking sends on a descriptor of its own. Dropping it shuts the
/// connection's write direction down (the client sees end of stream).
pub struct WriteSide {
    fd: OwnedFd,
}

/// A descriptor number borrowed for one registration.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl WriteSide {
    /// One non-blocking send; `WouldBlock` when the socket buffer is full.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        use rustix::net::SendFlags;
        rustix::net::send(&self.fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
            .map_err(Into::into)
    }

    /// Waits until the socket has room (or failed).
    pub async fn writable(&self) -> io::Result<()> {
        // Registered for this wait only. A socket that got room before the registration is
        // reported at once: epoll checks readiness when a descriptor is added.
        // SAFETY: the descriptor is `self.fd`, which stays open (and keeps its number) for
        // longer than the registration, dropped at the end of this function.
        let reg = unsafe {
            AsyncFd::register_with_interest(Borrowed(self.fd.as_raw_fd()), Interest::WRITABLE)
        }
        .map_err(io::Error::from)?;
        let _ready = reg.writable().await?;
        Ok(())
    }
}

impl Drop for WriteSide {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(self.fd.as_fd(), rustix::net::Shutdown::Write);
    }
}
