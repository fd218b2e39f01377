//! Socket activation: taking the control socket from systemd (LISTEN_PID, LISTEN_FDS,
//! LISTEN_FDNAMES, see sd_listen_fds(3)) instead of binding it.
//!
//! Called once by `main.rs` before the runtime starts. The selection logic is a pure
//! function of the three variables and our pid ([`select`]), so it is tested without a
//! service manager; [`take_listener`] then checks that the chosen descriptor really is a
//! listening `AF_UNIX` stream socket before wrapping it. A socket we were handed belongs to
//! the `.socket` unit: the daemon must never unlink it (see `Options::unlink_socket`).

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use thiserror::Error;

/// First passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The `FileDescriptorName=` of the control socket in brummerd.socket.
pub const CONTROL_NAME: &str = "control";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("LISTEN_PID={0:?} is not a process id")]
    BadPid(String),
    #[error("LISTEN_FDS={0:?} is not a descriptor count")]
    BadCount(String),
    #[error("LISTEN_FDNAMES has {names} names for LISTEN_FDS={fds} descriptors")]
    NameCount { names: usize, fds: usize },
    #[error(
        "systemd passed {0} sockets ({1}) and none is named \"control\": set \
         FileDescriptorName=control in the socket unit"
    )]
    NoControl(usize, String),
    #[error(
        "passed descriptor {fd} is not a listening Unix stream socket: {why} (check \
         ListenStream= in the socket unit)"
    )]
    NotUnixListener { fd: RawFd, why: String },
}

/// The passed descriptors as systemd described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// Every passed descriptor with its name, in order, but the stored ones.
    pub fds: Vec<(RawFd, String)>,
    /// The one to use as the control socket, when sockets were passed.
    pub control: Option<RawFd>,
    /// Programs' descriptors from systemd's store (`fdstore` names), given back after a
    /// crash of brummerd.
    pub stored: Vec<(RawFd, String)>,
}

/// Decides from the environment whether we were socket-activated and which descriptor is
/// the control socket. `Ok(None)`: not activated (no variables, or they are meant for
/// another process, e.g. a parent that forgot to unset them). Rules: the descriptor named
/// `control` wins; a single descriptor is taken whatever its name (a socket unit without
/// `FileDescriptorName=` names it after itself); several without `control` is an error.
/// A count whose descriptors could not all be below `fd_limit` (RLIMIT_NOFILE) is an error:
/// the count is otherwise only as large as the unit's store (`FileDescriptorStoreMax=`:
/// three per running program) and sockets make it.
pub fn select(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
    fd_limit: u64,
) -> Result<Option<Passed>, ActivationError> {
    let (Some(pid), Some(count)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadPid(pid.to_owned()))?;
    if pid != our_pid {
        return Ok(None);
    }
    let n: usize = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (LISTEN_FDS_START as u64).saturating_add(*n as u64) <= fd_limit)
        .ok_or_else(|| ActivationError::BadCount(count.to_owned()))?;
    if n == 0 {
        return Ok(None);
    }
    let names: Vec<String> = match listen_fdnames {
        Some(s) => s.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); n],
    };
    if names.len() != n {
        return Err(ActivationError::NameCount {
            names: names.len(),
            fds: n,
        });
    }
    type Named = Vec<(RawFd, String)>;
    let (stored, fds): (Named, Named) = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| (LISTEN_FDS_START + i as RawFd, name))
        .partition(|(_, name)| crate::fdstore::parse(name).is_some());
    let control = match fds.iter().find(|(_, name)| name == CONTROL_NAME) {
        Some((fd, _)) => Some(*fd),
        None if fds.len() <= 1 => fds.first().map(|f| f.0),
        None => {
            let list = fds
                .iter()
                .map(|(_, name)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ActivationError::NoControl(fds.len(), list));
        }
    };
    Ok(Some(Passed {
        fds,
        control,
        stored,
    }))
}

/// What systemd passed: the control listener (with the path it is bound to) and the
/// programs' stored descriptors, each owned from here on.
#[derive(Default)]
pub struct Taken {
    pub listener: Option<(UnixListener, Option<PathBuf>)>,
    pub stored: Vec<(String, std::os::fd::OwnedFd)>,
}

/// The control listener and stored descriptors handed over by systemd, if any. Every passed
/// descriptor is marked close-on-exec so programs never inherit one.
pub fn take() -> Result<Taken, ActivationError> {
    let var = |k: &str| std::env::var(k).ok();
    let Some(passed) = select(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(u64::MAX),
    )?
    else {
        return Ok(Taken::default());
    };
    for (fd, _) in passed.fds.iter().chain(&passed.stored) {
        // SAFETY: systemd passed these descriptors to this process (LISTEN_PID matched);
        // nothing else in the process knows about them yet.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let stored = passed
        .stored
        .into_iter()
        // SAFETY: as above; each is owned once, by its name's entry.
        .map(|(fd, name)| (name, unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
        .collect();
    let Some(fd) = passed.control else {
        return Ok(Taken {
            listener: None,
            stored,
        });
    };
    // SAFETY: as above; the descriptor is owned by the listener from here on.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let listener =
        into_listener(owned).map_err(|why| ActivationError::NotUnixListener { fd, why })?;
    Ok(Taken {
        listener: Some(listener),
        stored,
    })
}

/// Checks that `fd` is a listening `AF_UNIX` stream socket (what `sd_is_socket_unix`
/// checks) and wraps it, with the path it is bound to.
fn into_listener(fd: std::os::fd::OwnedFd) -> Result<(UnixListener, Option<PathBuf>), String> {
    use nix::sys::socket::{SockType, UnixAddr, getsockname, getsockopt, sockopt};
    use std::os::fd::AsRawFd;
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(other) => return Err(format!("socket type {other:?}")),
        Err(e) => return Err(e.desc().to_owned()),
    }
    let addr: UnixAddr = getsockname(fd.as_raw_fd()).map_err(|_| "not an AF_UNIX socket")?;
    if !getsockopt(&fd, sockopt::AcceptConn).map_err(|e| e.desc().to_owned())? {
        return Err("not listening".into());
    }
    let path = addr.path().map(PathBuf::from);
    Ok((UnixListener::from(fd), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 4242;
    const LIMIT: u64 = 8192;

    #[test]
    fn nothing_passed_is_not_activated() {
        assert_eq!(select(None, None, None, ME, LIMIT), Ok(None));
        assert_eq!(select(Some("4242"), None, None, ME, LIMIT), Ok(None));
        assert_eq!(select(None, Some("1"), None, ME, LIMIT), Ok(None));
        assert_eq!(select(Some("4242"), Some("0"), None, ME, LIMIT), Ok(None));
    }

    #[test]
    fn variables_for_another_process_are_ignored() {
        assert_eq!(
            select(Some("1"), Some("1"), Some("control"), ME, LIMIT),
            Ok(None)
        );
    }

    #[test]
    fn named_control_socket_is_chosen() {
        let p = select(
            Some("4242"),
            Some("3"),
            Some("dbus:control:extra"),
            ME,
            LIMIT,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.control, Some(4));
        assert_eq!(
            p.fds,
            vec![
                (3, "dbus".into()),
                (4, "control".into()),
                (5, "extra".into())
            ]
        );
    }

    #[test]
    fn a_single_socket_is_taken_whatever_its_name() {
        let p = select(Some("4242"), Some("1"), Some("brummerd.socket"), ME, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(p.control, Some(3));
        let p = select(Some("4242"), Some("1"), None, ME, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(p.fds, vec![(3, "unknown".into())]);
    }

    #[test]
    fn stored_descriptors_are_set_apart_from_the_sockets() {
        let p = select(
            Some("4242"),
            Some("4"),
            Some("web.out:web.err:control:web.pid"),
            ME,
            LIMIT,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.control, Some(5));
        assert_eq!(p.fds, vec![(5, "control".into())]);
        assert_eq!(
            p.stored,
            vec![
                (3, "web.out".into()),
                (4, "web.err".into()),
                (6, "web.pid".into())
            ]
        );
        // Without brummerd.socket: only stored descriptors, no control socket.
        let p = select(Some("4242"), Some("2"), Some("db.out:db.pid"), ME, LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(p.control, None);
        assert_eq!(p.stored.len(), 2);
    }

    #[test]
    fn a_thousand_programs_descriptors_come_back_beside_the_socket() {
        // What systemd passes after a crash with 1,000 running programs (a count above
        // 1,024 was refused once, and brummerd failed to start in a loop).
        let mut names: Vec<String> = (0..1000)
            .flat_map(|i| ["out", "err", "pid"].map(|k| format!("p{i:04}.{k}")))
            .collect();
        names.push("control".into());
        let p = select(
            Some("4242"),
            Some("3001"),
            Some(&names.join(":")),
            ME,
            524_288,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.control, Some(3 + 3000));
        assert_eq!(p.stored.len(), 3000);
    }

    #[test]
    fn several_without_control_is_an_error() {
        let e = select(Some("4242"), Some("2"), Some("a:b"), ME, LIMIT).unwrap_err();
        assert_eq!(e, ActivationError::NoControl(2, "a, b".into()));
        assert!(e.to_string().contains("FileDescriptorName=control"));
        let e = select(Some("4242"), Some("2"), None, ME, LIMIT).unwrap_err();
        assert!(matches!(e, ActivationError::NoControl(2, _)));
    }

    #[test]
    fn malformed_variables_are_errors() {
        assert_eq!(
            select(Some("x"), Some("1"), None, ME, LIMIT),
            Err(ActivationError::BadPid("x".into()))
        );
        assert_eq!(
            select(Some("4242"), Some("-1"), None, ME, LIMIT),
            Err(ActivationError::BadCount("-1".into()))
        );
        assert_eq!(
            select(Some("4242"), Some("99999"), None, ME, LIMIT),
            Err(ActivationError::BadCount("99999".into()))
        );
        assert_eq!(
            select(Some("4242"), Some("8190"), None, ME, LIMIT),
            Err(ActivationError::BadCount("8190".into())),
            "descriptors 3..=8192 cannot all be below the limit"
        );
        assert_eq!(
            select(Some("4242"), Some("2"), Some("control"), ME, LIMIT),
            Err(ActivationError::NameCount { names: 1, fds: 2 })
        );
    }

    #[test]
    fn a_real_listener_is_accepted_and_other_sockets_refused() {
        use std::os::fd::OwnedFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let (l, got) = into_listener(OwnedFd::from(l)).unwrap();
        assert_eq!(got.as_deref(), Some(path.as_path()));
        drop(l);

        let d = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let e = into_listener(OwnedFd::from(d)).unwrap_err();
        assert!(e.contains("socket type"), "{e}");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = into_listener(OwnedFd::from(tcp)).unwrap_err();
        assert!(e.contains("AF_UNIX"), "{e}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = into_listener(OwnedFd::from(a)).unwrap_err();
        assert_eq!(e, "not listening");
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(into_listener(OwnedFd::from(file)).is_err());
    }
}
