//! Starting a program: a new session (so the whole tree can be signalled as a group),
//! stdin from /dev/null, stdout and stderr to pipes, systemd's per-service variables
//! removed, credentials dropped when configured, and a pidfd opened before anyone could
//! reap the child (see `children`).

use super::children::Children;
use crate::config::ProcessDef;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use thiserror::Error;

/// Variables that describe brummerd's own relation to systemd; a child that saw them would
/// try to notify or take over sockets meant for us.
const SCRUBBED_ENV: [&str; 7] = [
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "JOURNAL_STREAM",
];

/// Pipe buffer asked for each output pipe: fewer wake-ups per megabyte for chatty programs.
/// The kernel may refuse (pipe-max-size, per-user limits); the default 64 KiB then stays.
const PIPE_SIZE: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("command {program:?} not found (check the path or PATH)")]
    NotFound { program: String },
    #[error("permission denied running {program:?} (is it executable? is cwd accessible?)")]
    PermissionDenied { program: String },
    #[error("cannot start {program:?}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open a pidfd for pid {pid}: {source}")]
    Pidfd {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve supplementary groups of user {user:?}: {source}")]
    Groups { user: String, source: nix::Error },
}

/// A freshly started child.
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The environment every child starts from: brummerd's own, less systemd's per-service
/// variables.
pub fn base_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| !SCRUBBED_ENV.iter().any(|s| k == s))
        .collect()
}

pub fn spawn(
    def: &ProcessDef,
    base_env: &[(OsString, OsString)],
    children: &Children,
) -> Result<Spawned, SpawnError> {
    let argv = def.command.argv();
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(base_env.iter().map(|(k, v)| (k, v)))
        .envs(&def.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &def.cwd {
        cmd.current_dir(cwd);
    }

    let creds = credentials(def)?;
    if let Some(c) = &creds {
        if let Some(name) = &c.name {
            cmd.env("USER", name).env("LOGNAME", name);
        }
        if let Some(home) = &c.home {
            cmd.env("HOME", home);
        }
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, setrlimit, setgroups, setgid, setuid) on data
    // prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            crate::nofile::restore_in_child()?;
            if let Some(c) = &creds {
                // Order matters: groups and gid while still privileged, uid last.
                nix::unistd::setgroups(&c.groups)?;
                nix::unistd::setgid(c.gid)?;
                nix::unistd::setuid(c.uid)?;
            }
            Ok(())
        });
    }

    let map_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound {
            program: program.clone(),
        },
        std::io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
            program: program.clone(),
        },
        _ => SpawnError::Io {
            program: program.clone(),
            source: e,
        },
    };

    let (pid, (pidfd, stdout, stderr)) = children
        .spawn_tracked(|| {
            let mut child = cmd.spawn()?;
            let pid = child.id() as i32;
            // Opened while the spawn lock is held: the child cannot be reaped (so its pid
            // cannot be reused) before the pidfd pins it.
            let pidfd = rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidData)?,
                rustix::process::PidfdFlags::empty(),
            )
            .map_err(std::io::Error::from);
            let out: Option<OwnedFd> = child.stdout.take().map(Into::into);
            let err: Option<OwnedFd> = child.stderr.take().map(Into::into);
            Ok((pid, (pidfd, out, err)))
        })
        .map_err(map_err)?;
    let pidfd = pidfd.map_err(|source| SpawnError::Pidfd { pid, source })?;
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(SpawnError::Io {
            program,
            source: std::io::Error::other("child pipes missing"),
        });
    };
    for fd in [&stdout, &stderr] {
        let _ = rustix::pipe::fcntl_setpipe_size(fd.as_fd(), PIPE_SIZE);
        set_nonblocking(fd);
    }
    Ok(Spawned {
        pid,
        pidfd,
        stdout,
        stderr,
    })
}

/// uid, gid, user name and home directory to run as, resolved in the parent (name lookups
/// are not async-signal-safe).
fn credentials(def: &ProcessDef) -> Result<Option<ChildCreds>, SpawnError> {
    let Some(user) = &def.user else {
        // group only: keep our uid, switch gid, no supplementary groups.
        return Ok(def.group.as_ref().map(|g| ChildCreds {
            uid: nix::unistd::getuid(),
            gid: nix::unistd::Gid::from_raw(g.gid),
            groups: vec![nix::unistd::Gid::from_raw(g.gid)],
            name: None,
            home: None,
        }));
    };
    let gid = def.group.as_ref().map_or(user.gid, |g| g.gid);
    let cname = std::ffi::CString::new(user.name.clone()).map_err(|_| SpawnError::Groups {
        user: user.name.clone(),
        source: nix::Error::EINVAL,
    })?;
    let groups =
        nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid)).map_err(|source| {
            SpawnError::Groups {
                user: user.name.clone(),
                source,
            }
        })?;
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(user.uid))
        .ok()
        .flatten()
        .map(|u| u.dir);
    Ok(Some(ChildCreds {
        uid: nix::unistd::Uid::from_raw(user.uid),
        gid: nix::unistd::Gid::from_raw(gid),
        groups,
        name: Some(user.name.clone()),
        home,
    }))
}

#[derive(Debug, Clone)]
struct ChildCreds {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
    name: Option<String>,
    home: Option<std::path::PathBuf>,
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}
