//! The NOTIFY_SOCKET brummerd gives one run of a `ready = "notify"` program, as systemd
//! does for Type=notify: a unix datagram socket with SO_PASSCRED, a message of
//! newline-separated `KEY=VALUE` assignments, accepted only from a process of the
//! program's own tree (NotifyAccess=all). Bind, receive and parse live here; what the
//! messages mean is the watcher's (`watch/mod.rs`).
//!
//! Never trusts a message: one is at most [`MESSAGE_MAX`] bytes, NUL-free, UTF-8; anything
//! else is logged (the first few per run) and dropped. Descriptors that come with a
//! message (sd_notify_barrier's pipe, FDSTORE=1) are closed at once: closing the barrier's
//! pipe is what tells `systemd-notify` its message was processed.

use super::super::procfs;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials,
    bind, recvmsg, setsockopt, socket, sockopt,
};
use std::ffi::OsString;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::unix::AsyncFd;

/// Largest message accepted, systemd's NOTIFY_BUFFER_MAX (PIPE_BUF).
pub const MESSAGE_MAX: usize = 4096;
/// Descriptors one datagram can carry (SCM_MAX_FD): room for all, so the kernel never
/// truncates the control data (it would install some and hide them from us).
const FDS_MAX: usize = 253;
/// How far up the parent chain a sender is looked for.
const ANCESTRY_MAX: usize = 64;
/// `sun_path` holds 108 bytes, the NUL included.
const SUN_PATH_MAX: usize = 107;

/// Names every socket file uniquely: a run's socket is removed when its watcher ends,
/// which may be after the next run bound its own. Counts from the monotonic clock at the
/// first bind, so that after a re-exec (same folder, sockets handed over) the new image
/// never reuses a name of the old one.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_name() -> String {
    if NEXT.load(Ordering::Relaxed) == 0 {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let seed = (now.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(now.tv_nsec as u64)
            .max(1);
        let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot make the notify socket folder {0}: {1}")]
    Dir(PathBuf, io::Error),
    #[error("notify socket path {0} is longer than 107 bytes: use a shorter --socket path")]
    TooLong(PathBuf),
    #[error("cannot make the notify socket {0}: {1}")]
    Socket(PathBuf, nix::Error),
}

/// One run's notify socket. Dropping it removes the file, unless it was handed over.
pub struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    path: PathBuf,
    /// Set when the socket goes to the next brummerd image (re-exec): the file stays.
    handed_over: AtomicBool,
}

/// One datagram as received.
pub struct Datagram {
    /// The sender's pid, from SCM_CREDENTIALS (`None`: the kernel sent none).
    pub pid: Option<i32>,
    pub bytes: Vec<u8>,
    /// Longer than [`MESSAGE_MAX`].
    pub truncated: bool,
}

impl NotifySocket {
    /// Binds a new socket in `dir` (made 0755 if missing), owned by `owner` (uid, gid) when
    /// the program runs as another user, so that it may send to it.
    pub fn bind(dir: &Path, owner: Option<(u32, u32)>) -> Result<NotifySocket, NotifyError> {
        make_dir(dir).map_err(|e| NotifyError::Dir(dir.to_owned(), e))?;
        let path = dir.join(next_name());
        if path.as_os_str().len() > SUN_PATH_MAX {
            return Err(NotifyError::TooLong(path));
        }
        let err = |e| NotifyError::Socket(path.clone(), e);
        let _ = std::fs::remove_file(&path);
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(err)?;
        setsockopt(&fd, sockopt::PassCred, &true).map_err(err)?;
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).map_err(err)?).map_err(err)?;
        // Removed on every error below as on drop.
        let socket_path = path.clone();
        let fd = crate::fd::watch_readable(fd).map_err(|e| {
            let _ = std::fs::remove_file(&socket_path);
            NotifyError::Socket(
                socket_path.clone(),
                nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?;
        let me = NotifySocket {
            fd,
            path,
            handed_over: AtomicBool::new(false),
        };
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&me.path, Some(uid.into()), Some(gid.into()))
                .map_err(|e| NotifyError::Socket(me.path.clone(), e))?;
        }
        Ok(me)
    }

    /// The socket a previous brummerd image bound and handed over (re-exec).
    pub fn adopt(fd: OwnedFd, path: PathBuf) -> io::Result<NotifySocket> {
        Ok(NotifySocket {
            fd: crate::fd::watch_readable(fd)?,
            path,
            handed_over: AtomicBool::new(false),
        })
    }

    /// A copy of the descriptor and the path, for the next image (re-exec); from now on
    /// dropping this one leaves the file in place.
    pub fn hand_over(&self) -> io::Result<(OwnedFd, PathBuf)> {
        let fd = rustix::io::dup(self.fd.get_ref())?;
        self.handed_over.store(true, Ordering::Relaxed);
        Ok((fd, self.path.clone()))
    }

    /// The socket, for systemd's descriptor store.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.get_ref().as_fd()
    }

    /// The path a socket is bound to (one given back by systemd's store after a crash).
    pub fn bound_path(fd: &OwnedFd) -> Option<PathBuf> {
        let addr: UnixAddr = nix::sys::socket::getsockname(fd.as_raw_fd()).ok()?;
        addr.path().map(Path::to_path_buf)
    }

    /// `NOTIFY_SOCKET` for the child.
    pub fn env(&self) -> (OsString, OsString) {
        ("NOTIFY_SOCKET".into(), self.path.as_os_str().to_owned())
    }

    /// Waits for the next datagram. Cancel-safe: a datagram is consumed only by the
    /// `recvmsg` that returns it.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_one(fd.get_ref().as_raw_fd())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if !self.handed_over.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn recv_one(fd: RawFd) -> io::Result<Datagram> {
    let mut buf = vec![0u8; MESSAGE_MAX + 1];
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [RawFd; FDS_MAX]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<UnixAddr>(
        fd,
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC,
    )
    .map_err(io::Error::from)?;
    let len = msg.bytes;
    let mut pid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(cred) => pid = Some(cred.pid()),
                ControlMessageOwned::ScmRights(fds) => {
                    for raw in fds {
                        // SAFETY: SCM_RIGHTS installed each as a new descriptor of ours,
                        // owned by nobody else; this closes it.
                        drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
                _ => {}
            }
        }
    }
    let truncated = len > MESSAGE_MAX;
    buf.truncate(len.min(MESSAGE_MAX));
    Ok(Datagram {
        pid,
        bytes: buf,
        truncated,
    })
}

/// One assignment of a message that the watcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Ready,
    Status(String),
    /// EXTEND_TIMEOUT_USEC: the start may take this much longer from now.
    ExtendTimeout(u64),
    Watchdog,
    /// WATCHDOG=trigger: the program asks to be treated as hung.
    WatchdogTrigger,
    /// WATCHDOG_USEC: a new watchdog interval.
    WatchdogUsec(u64),
    Stopping,
}

/// Parses a message as systemd does: newline-separated `KEY=VALUE`, unknown keys ignored,
/// the whole message rejected when it holds a NUL or is not UTF-8.
pub fn parse(bytes: &[u8]) -> Result<Vec<Assignment>, &'static str> {
    if bytes.contains(&0) {
        return Err("contains a NUL byte");
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8")?;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let a = match key {
            "READY" if value == "1" => Assignment::Ready,
            "STATUS" => Assignment::Status(value.to_owned()),
            "EXTEND_TIMEOUT_USEC" => match value.parse() {
                Ok(n) => Assignment::ExtendTimeout(n),
                Err(_) => continue,
            },
            "WATCHDOG" if value == "1" => Assignment::Watchdog,
            "WATCHDOG" if value == "trigger" => Assignment::WatchdogTrigger,
            "WATCHDOG_USEC" => match value.parse() {
                Ok(n) if n > 0 => Assignment::WatchdogUsec(n),
                _ => continue,
            },
            "STOPPING" if value == "1" => Assignment::Stopping,
            _ => continue,
        };
        out.push(a);
    }
    Ok(out)
}

/// Whether `pid` is `main` or one of its descendants: in its session or process group
/// (every program is spawned in a session of its own), or below it by parent links (a
/// descendant that made a session of its own). A pid that is gone cannot be judged and is
/// refused: `systemd-notify` waits until its message was read (the barrier), so a sender
/// that exits first sent from a shell one-liner without it.
pub fn belongs(pid: i32, main: i32) -> bool {
    if pid == main {
        return true;
    }
    let mut cur = pid;
    for _ in 0..ANCESTRY_MAX {
        let Some(p) = procfs::read_stat(cur) else {
            return false;
        };
        if p.sid == main || p.pgid == main || p.ppid == main {
            return true;
        }
        if p.ppid <= 1 {
            return false;
        }
        cur = p.ppid;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_systemd() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=up: 3 workers\nX=1\nnonsense\nEXTEND_TIMEOUT_USEC=5000000")
                .unwrap(),
            vec![
                Assignment::Ready,
                Assignment::Status("up: 3 workers".into()),
                Assignment::ExtendTimeout(5_000_000)
            ]
        );
        assert_eq!(
            parse(b"WATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=0\nWATCHDOG_USEC=20\nREADY=0")
                .unwrap(),
            vec![
                Assignment::Watchdog,
                Assignment::WatchdogTrigger,
                Assignment::WatchdogUsec(20)
            ]
        );
        assert!(parse(b"READY=1\0").is_err());
        assert!(parse(b"STATUS=\xff").is_err());
        assert_eq!(
            parse(b"STATUS=").unwrap(),
            vec![Assignment::Status(String::new())]
        );
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn ourselves_and_our_ancestry() {
        let me = std::process::id() as i32;
        assert!(belongs(me, me));
        // brummerd's test process is not under its own child.
        let parent = nix::unistd::getppid().as_raw();
        assert!(!belongs(parent, me) || parent == me);
        assert!(!belongs(i32::MAX, me));
    }

    #[tokio::test]
    async fn a_datagram_carries_the_senders_pid_and_its_descriptors_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let s = NotifySocket::bind(dir.path(), None).unwrap();
        let (_, path) = s.env();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1\nSTATUS=hi", &path).unwrap();
        let d = s.recv().await.unwrap();
        assert_eq!(d.pid, Some(std::process::id() as i32));
        assert_eq!(parse(&d.bytes).unwrap()[0], Assignment::Ready);
        assert!(!d.truncated);
        client
            .send_to(&vec![b'x'; MESSAGE_MAX + 10], &path)
            .unwrap();
        assert!(s.recv().await.unwrap().truncated);
        let file = PathBuf::from(&path);
        drop(s);
        assert!(!file.exists());
    }
}
