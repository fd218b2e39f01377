//! The re-exec handover: what one brummerd image hands the next one in the same process
//! (`brummerctl daemon-reexec`), in a versioned format on a memfd whose descriptor number
//! is in `BRUMMER_HANDOVER`, and the descriptors it names, which survive the `execve`
//! because their close-on-exec flag was cleared just before it.
//!
//! The rules a reader must keep:
//! - Same pid, so every program stays our child: a program that exits during the re-exec
//!   stays a zombie until the next image waits on its pidfd, which gives its exact status.
//! - Nothing is read from a pipe between the old image's last read and the new image's
//!   first: the pipes stay open and whatever was written meanwhile waits in them. The
//!   unfinished line each pipe had (`carry`) travels here, so no line is cut in two.
//! - Times are ages (how long before the handover was written), and the reader adds the
//!   monotonic time that passed until it read them: `Instant`s are not portable between
//!   images, the monotonic clock is.
//! - Every descriptor named here gets its close-on-exec flag back as soon as it is read
//!   ([`take_from_env`]), before any program is spawned, so no child inherits it.
//! - A format this binary does not know is refused as a whole ([`HandoverError::Format`]):
//!   the caller falls back to a start as after a crash, and says so.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;
use thiserror::Error;

/// The format this binary writes and reads. Raise it on any change a previous reader would
/// misread; a reader refuses formats it does not know.
pub const FORMAT: u32 = 1;

/// The environment variable that carries the memfd's descriptor number across `execve`.
pub const ENV: &str = "BRUMMER_HANDOVER";

/// Everything one image hands the next.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Handover {
    pub format: u32,
    /// The version of the brummerd that wrote it, for the log.
    pub from_version: String,
    /// CLOCK_MONOTONIC when it was written (ns): ages below are relative to it.
    pub written_mono_ns: u64,
    /// The listening control socket.
    pub listener: Option<RawFd>,
    /// Whether the socket file is ours to remove at shutdown (false when systemd passed it).
    pub unlink_socket: bool,
    /// The event bus's last sequence number: the next image's first event follows it.
    pub event_seq: u64,
    pub programs: Vec<Program>,
}

/// One program's supervisor and log state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    /// The state the supervisor was in (`running`, `backoff`, `stopped`, ...).
    pub state: brummer_proto::ProcessState,
    pub restarts: u32,
    pub generation: u64,
    pub child: Option<ChildFd>,
    /// Backoff: time left until the next automatic start.
    pub retry_in_ns: Option<u64>,
    /// The restart policy's memory: consecutive unstable runs, and the ages of the
    /// automatic restarts inside the start-limit window.
    pub restart_attempts: u32,
    pub restart_ages_ns: Vec<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub last_error: Option<String>,
    /// When the next automatic start is due, µs since the epoch (for `status`).
    pub next_attempt_us: Option<u64>,
    /// How to stop it if the next image's configuration no longer has it.
    pub stop_signal: i32,
    pub stop_timeout_ms: u64,
    pub pipes: Vec<Pipe>,
    /// The log ring's next sequence number: the next image's ring starts no lower.
    pub next_seq: u64,
    pub urls: Vec<String>,
    /// The notify socket of the running child (`ready = "notify"`).
    #[serde(default)]
    pub notify: Option<NotifyFd>,
    /// STATUS= of the running child.
    #[serde(default)]
    pub status_text: Option<String>,
}

/// A notify socket: its descriptor and the path the child sends to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotifyFd {
    pub fd: RawFd,
    pub path: std::path::PathBuf,
}

/// A running child.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildFd {
    pub pid: i32,
    pub pidfd: RawFd,
    /// Start time, µs since the epoch.
    pub started_at_us: u64,
    /// How long it had been running when the handover was written.
    pub age_ns: u64,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22), as the runtime
    /// state records it: the next image records the run without reading /proc. Absent
    /// when unknown (then it is read).
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

/// An output pipe's read end and the unfinished line read from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pipe {
    pub fd: RawFd,
    pub stream: brummer_proto::Stream,
    pub pid: u32,
    pub generation: u32,
    pub carry: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum HandoverError {
    #[error("{ENV}={0:?} is not a descriptor number")]
    BadVar(String),
    #[error("cannot read the handover state from descriptor {fd}: {source}")]
    Read { fd: RawFd, source: std::io::Error },
    #[error("the handover state is torn or not ours: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(
        "the handover state has format {found}, this brummerd reads format {FORMAT} only \
         (written by brummerd {from})"
    )]
    Format { found: u32, from: String },
    #[error("cannot write the handover state: {0}")]
    Write(#[source] std::io::Error),
}

/// CLOCK_MONOTONIC in ns: the clock the ages are measured on (the one `Instant` uses).
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}

impl Handover {
    /// How long ago it was written, by the monotonic clock.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(mono_ns().saturating_sub(self.written_mono_ns))
    }

    /// Every descriptor it names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listener.into_iter().collect();
        for p in &self.programs {
            fds.extend(p.child.as_ref().map(|c| c.pidfd));
            fds.extend(p.pipes.iter().map(|p| p.fd));
            fds.extend(p.notify.as_ref().map(|n| n.fd));
        }
        fds
    }

    /// Writes it to a new memfd (inherited across `execve`: no close-on-exec).
    pub fn to_memfd(&self) -> Result<OwnedFd, HandoverError> {
        let fd = rustix::fs::memfd_create("brummerd-handover", rustix::fs::MemfdFlags::empty())
            .map_err(|e| HandoverError::Write(e.into()))?;
        let mut file = std::fs::File::from(fd);
        let bytes = serde_json::to_vec(self)?;
        file.write_all(&bytes).map_err(HandoverError::Write)?;
        file.rewind().map_err(HandoverError::Write)?;
        Ok(file.into())
    }

    /// Parses what [`to_memfd`](Self::to_memfd) wrote, refusing a format it does not know.
    /// Parsed once as a whole; only a handover that does not parse is read again for its
    /// head, to tell a future format from a torn one.
    pub fn parse(bytes: &[u8]) -> Result<Handover, HandoverError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
            #[serde(default)]
            from_version: String,
        }
        let refused = |head: Head| HandoverError::Format {
            found: head.format,
            from: head.from_version,
        };
        match serde_json::from_slice::<Handover>(bytes) {
            Ok(h) if h.format == FORMAT => Ok(h),
            Ok(h) => Err(refused(Head {
                format: h.format,
                from_version: h.from_version,
            })),
            Err(e) => match serde_json::from_slice::<Head>(bytes) {
                Ok(head) if head.format != FORMAT => Err(refused(head)),
                _ => Err(e.into()),
            },
        }
    }
}

/// Reads the handover the previous image left, if it left one, and removes the variable
/// from what children will inherit. Every descriptor the handover names is made
/// close-on-exec again, whatever happens to the rest of it.
///
/// Must run before any thread is started (it changes the environment).
pub fn take_from_env() -> Option<Result<Handover, HandoverError>> {
    let var = std::env::var_os(ENV)?;
    // SAFETY: called by main before the runtime or any other thread exists.
    unsafe { std::env::remove_var(ENV) };
    let text = var.to_string_lossy().into_owned();
    let Ok(fd) = text.parse::<RawFd>() else {
        return Some(Err(HandoverError::BadVar(text)));
    };
    if fd < 3 || rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_err() {
        return Some(Err(HandoverError::BadVar(text)));
    }
    // SAFETY: the previous image created this memfd for us and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    if let Err(source) = file.read_to_end(&mut bytes) {
        return Some(Err(HandoverError::Read { fd, source }));
    }
    drop(file);
    let parsed = Handover::parse(&bytes);
    if let Ok(h) = &parsed
        && !cloexec_all_from(3)
    {
        for fd in h.fds() {
            set_cloexec(fd, true);
        }
    }
    Some(parsed)
}

/// Makes every descriptor from `first` on close-on-exec, in one system call
/// (`close_range` with `CLOSE_RANGE_CLOEXEC`, Linux 5.11); false when the kernel cannot.
/// After a re-exec every descriptor above 2 is one the previous image handed over (the
/// rest were close-on-exec), so this does for all of them what one `fcntl` pair each
/// would.
fn cloexec_all_from(first: u32) -> bool {
    // SAFETY: only descriptor flags change; no descriptor is closed.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
    }
}

/// Sets or clears a descriptor's close-on-exec flag; a descriptor that is not open is left.
pub fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: only the flag is changed; fcntl on a closed number fails harmlessly.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Ok(mut flags) = rustix::io::fcntl_getfd(b) {
        flags.set(rustix::io::FdFlags::CLOEXEC, on);
        let _ = rustix::io::fcntl_setfd(b, flags);
    }
}

/// Takes ownership of a descriptor named by the handover. Each is taken once: the caller
/// consumes the handover as it goes.
///
/// # Safety
/// `fd` must be a descriptor the handover names and that nothing else owns.
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: per the contract above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// What the writing side keeps alive until `execve`: the descriptors the handover names
/// and the memfd. Dropping it (a handover that failed) closes them all.
pub struct Prepared {
    pub memfd: OwnedFd,
    pub keep: Vec<OwnedFd>,
}

impl Prepared {
    /// Clears close-on-exec on every descriptor so they reach the next image: one `fcntl`
    /// each (close-on-exec is the only descriptor flag, so there is nothing to read first).
    pub fn inherit(&self) {
        let clear = |fd: BorrowedFd<'_>| {
            let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
        };
        clear(self.memfd.as_fd());
        for fd in &self.keep {
            clear(fd.as_fd());
        }
    }
}

/// The signals that ask brummerd to stop or reload: none may be lost between the moment
/// the old image stops looking at them and the moment the new one starts to.
const HELD: [nix::sys::signal::Signal; 3] = [
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGHUP,
];

/// The thread that calls `execve`: held signals are made pending on it.
static EXEC_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let tid = EXEC_TID.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: getpid and tgkill are async-signal-safe system calls.
    unsafe {
        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig);
    }
}

/// From here to the next image, a stop or reload request waits instead of being lost: the
/// calling thread (the one that will exec) blocks SIGTERM, SIGINT and SIGHUP, and any other
/// thread that receives one forwards it to this thread, where it stays pending. The
/// signal mask and a thread's pending signals survive `execve`; the next image unblocks
/// them once its handlers are installed ([`release_signals`]), and handles them then.
pub fn hold_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow};
    EXEC_TID.store(
        nix::unistd::gettid().as_raw(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut set = SigSet::empty();
    for s in HELD {
        set.add(s);
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, set);
    for s in HELD {
        // SAFETY: `forward` only makes async-signal-safe system calls.
        let _ = unsafe { nix::sys::signal::sigaction(s, &action) };
    }
}

/// Makes `sig` pending on the exec thread: for a request the old image's own handler took
/// before [`hold_signals`] but did not act on.
pub fn hold_again(sig: nix::sys::signal::Signal) {
    forward(sig as libc::c_int);
}

/// Unblocks the held signals in this thread: a request that came during a re-exec is
/// delivered now, to the handlers this image installed. Harmless when nothing is held.
pub fn release_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for s in HELD {
        set.add(s);
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
}

/// Replaces this image with `binary`, giving it `args` (argv[1..]) and the environment
/// less what described this image's start (socket activation) plus [`ENV`]. Returns only
/// when `execve` failed.
pub fn exec(
    binary: &std::path::Path,
    args: &[std::ffi::OsString],
    prepared: &Prepared,
) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |b: &[u8]| {
        CString::new(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let build = || -> std::io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = c(binary.as_os_str().as_bytes())?;
        let mut argv = vec![path.clone()];
        for a in args {
            argv.push(c(a.as_bytes())?);
        }
        let mut envp = Vec::new();
        for (k, v) in std::env::vars_os() {
            if ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", ENV]
                .iter()
                .any(|x| k == *x)
            {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(c(&kv)?);
        }
        envp.push(c(
            format!("{ENV}={}", prepared.memfd.as_raw_fd()).as_bytes()
        )?);
        Ok((path, argv, envp))
    };
    let (path, argv, envp) = match build() {
        Ok(t) => t,
        Err(e) => return e,
    };
    prepared.inherit();
    match nix::unistd::execve(&path, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => std::io::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_memfd() {
        let h = Handover {
            format: FORMAT,
            from_version: "0.1.0".into(),
            written_mono_ns: mono_ns(),
            listener: Some(7),
            event_seq: 42,
            programs: vec![Program {
                name: "web".into(),
                restarts: 3,
                pipes: vec![Pipe {
                    fd: 9,
                    stream: brummer_proto::Stream::Stderr,
                    pid: 10,
                    generation: 2,
                    carry: b"half a li".to_vec(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let fd = h.to_memfd().expect("memfd");
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .expect("read");
        let back = Handover::parse(&bytes).expect("parse");
        assert_eq!(back.event_seq, 42);
        assert_eq!(back.programs[0].pipes[0].carry, b"half a li");
        assert_eq!(back.fds(), vec![7, 9]);
    }

    #[test]
    fn a_future_format_is_refused_by_name() {
        let e = Handover::parse(br#"{"format": 7, "from_version": "9.0.0", "programs": 3}"#)
            .expect_err("future format");
        assert_eq!(
            e.to_string(),
            "the handover state has format 7, this brummerd reads format 1 only (written by brummerd 9.0.0)"
        );
    }

    #[test]
    fn a_future_format_that_reads_like_ours_is_refused_too() {
        let e = Handover::parse(br#"{"format": 2, "from_version": "9.0.0", "written_mono_ns": 0, "listener": null, "unlink_socket": false, "event_seq": 0, "programs": []}"#)
            .expect_err("future format");
        assert!(matches!(e, HandoverError::Format { found: 2, .. }), "{e}");
    }

    #[test]
    fn a_torn_state_is_refused() {
        let e = Handover::parse(br#"{"format": 1, "programs": [{"na"#).expect_err("torn");
        assert!(
            e.to_string().starts_with("the handover state is torn"),
            "{e}"
        );
    }

    /// After a re-exec, every inherited descriptor (from 3 on) is made close-on-exec in one
    /// call, so that no program inherits one; descriptors below the range are left alone.
    /// Tested high in the descriptor table, where no other test's descriptors live.
    #[test]
    fn every_descriptor_from_the_first_is_made_close_on_exec() {
        let (r, w) = rustix::pipe::pipe().expect("a pipe");
        let inherited = |fd: &OwnedFd, min: RawFd| -> OwnedFd {
            // SAFETY: F_DUPFD only duplicates an open descriptor.
            let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, min) };
            assert!(raw >= min, "dup above {min}");
            // SAFETY: F_DUPFD returned a new descriptor that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(raw) }
        };
        let below = inherited(&r, 900);
        let above = [inherited(&r, 1000), inherited(&w, 1000)];
        let cloexec = |fd: &OwnedFd| {
            rustix::io::fcntl_getfd(fd)
                .expect("open")
                .contains(rustix::io::FdFlags::CLOEXEC)
        };
        assert!(!cloexec(&below) && above.iter().all(|fd| !cloexec(fd)));
        assert!(
            cloexec_all_from(1000),
            "close_range(CLOSE_RANGE_CLOEXEC) needs Linux 5.11"
        );
        assert!(above.iter().all(cloexec), "every descriptor from 1000 on");
        assert!(!cloexec(&below), "below the range: unchanged");
    }
}
