//! Re-adoption after a crash of brummerd under systemd: the programs' descriptors that
//! systemd kept in its store (`fdstore`) and gave back, matched with the runtime state the
//! dead brummerd left, become a handover as a re-exec would have written it, so the same
//! adoption path takes the programs back ([`from_store`]).
//!
//! A run is taken back only when everything agrees: the runtime record names its
//! descriptors, its three came back (stdout, stderr, pidfd; a notify socket too when it had
//! one, so that its watchdog is watched again), the recorded pid still runs with the recorded start
//! time (no recycled pid), the pidfd refers to that pid, and, with cgroup containment, the
//! pid is in the program's cgroup (`cgroup.procs`). Anything else is left to the
//! leftover path, which stops it; descriptors nobody takes leave the store.

use super::procfs;
use super::watch::notify::NotifySocket;
use crate::desired::{Previous, Run};
use crate::fdstore::{self, NOTIFY, PIDFD, STDERR, STDOUT};
use crate::handover::{self, ChildFd, Handover, NotifyFd, Pipe, Program};
use brummer_proto::{ProcessState, Stream};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One program's descriptors as they came back.
#[derive(Default)]
struct Three {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    pid: Option<OwnedFd>,
    /// Its notify socket, when the run had one.
    notify: Option<OwnedFd>,
}

/// The handover for the runs that can be taken back (`None` when none can), and the names
/// of the programs taken: the leftover path must leave their trees alone.
pub fn from_store(
    previous: &Previous,
    stored: Vec<(String, OwnedFd)>,
) -> (Option<Handover>, Vec<String>) {
    let mut by_program: BTreeMap<String, Three> = BTreeMap::new();
    for (name, fd) in stored {
        let Some((program, kind)) = fdstore::parse(&name) else {
            continue;
        };
        let three = by_program.entry(program.to_owned()).or_default();
        let slot = match kind {
            STDOUT => &mut three.out,
            STDERR => &mut three.err,
            PIDFD => &mut three.pid,
            NOTIFY => &mut three.notify,
            _ => continue,
        };
        // A name stored twice (it cannot be, each run replaces the last): the first wins.
        if slot.is_none() {
            *slot = Some(fd);
        }
    }
    let mut programs = Vec::new();
    let mut taken = Vec::new();
    for (name, three) in by_program {
        let run = previous.programs.get(&name).and_then(|r| r.run.as_ref());
        match (run, three) {
            (
                Some(run),
                Three {
                    out: Some(out),
                    err: Some(err),
                    pid: Some(pidfd),
                    notify,
                },
            ) if !run.fds.is_empty() && still_runs(run, &pidfd) && in_its_cgroup(&name, run) => {
                tracing::info!(process = %name, pid = run.pid, "re-adopting a program the previous brummerd left running");
                taken.push(name.clone());
                let mut p = program(&name, run, out, err, pidfd);
                p.notify = notify.and_then(notify_fd);
                programs.push(p);
            }
            _ => {
                tracing::info!(process = %name, "the stored descriptors of a run that cannot be re-adopted are dropped");
                fdstore::remove(&name);
            }
        }
    }
    if programs.is_empty() {
        return (None, taken);
    }
    let h = Handover {
        format: handover::FORMAT,
        from_version: "a brummerd that crashed".into(),
        written_mono_ns: handover::mono_ns(),
        listener: None,
        unlink_socket: false,
        event_seq: 0,
        programs,
    };
    (Some(h), taken)
}

/// The recorded process still runs (same pid, same start time) and the pidfd is its.
fn still_runs(run: &Run, pidfd: &OwnedFd) -> bool {
    let alive = procfs::read_stat(run.pid).is_some_and(|p| p.start == run.start && !p.zombie);
    alive && pidfd_pid(pidfd) == Some(run.pid)
}

/// With cgroup containment, the recorded process is found in the program's cgroup
/// (`cgroup.procs`): the cgroup says what belongs to the program. Without, nothing to
/// check.
fn in_its_cgroup(name: &str, run: &Run) -> bool {
    let Some(tree) = crate::cgroup::tree() else {
        return true;
    };
    let found = tree.leaf(name).pids().contains(&run.pid);
    if !found {
        tracing::warn!(process = %name, pid = run.pid, "the recorded process is not in the program's cgroup; not re-adopted");
    }
    found
}

/// A stored notify socket with the path it is bound to (the path the program sends to,
/// still there: a brummerd that is killed removes nothing).
fn notify_fd(fd: OwnedFd) -> Option<NotifyFd> {
    let path = NotifySocket::bound_path(&fd)?;
    Some(NotifyFd {
        fd: fd.into_raw_fd(),
        path,
    })
}

/// The pid a pidfd refers to, from its fdinfo.
fn pidfd_pid(fd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// How long ago a process started, from its start time in clock ticks since boot.
fn age(start_ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    let up = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let started = start_ticks as f64 / ticks as f64;
    Duration::from_secs_f64((up - started).max(0.0))
}

fn program(name: &str, run: &Run, out: OwnedFd, err: OwnedFd, pidfd: OwnedFd) -> Program {
    let age = age(run.start);
    let started_at_us = SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
    let pipe = |fd: OwnedFd, stream| Pipe {
        fd: fd.into_raw_fd(),
        stream,
        pid: u32::try_from(run.pid).unwrap_or(0),
        generation: u32::try_from(run.generation).unwrap_or(u32::MAX),
        carry: Vec::new(),
    };
    Program {
        name: name.to_owned(),
        state: ProcessState::Running,
        restarts: 0,
        generation: run.generation,
        child: Some(ChildFd {
            pid: run.pid,
            pidfd: pidfd.into_raw_fd(),
            started_at_us,
            age_ns: u64::try_from(age.as_nanos()).unwrap_or(u64::MAX),
            // Checked against /proc by `from_store` before this.
            start_ticks: Some(run.start),
        }),
        retry_in_ns: None,
        restart_attempts: 0,
        restart_ages_ns: Vec::new(),
        exit_code: None,
        exit_signal: None,
        last_error: None,
        next_attempt_us: None,
        stop_signal: run.stop_signal,
        stop_timeout_ms: run.stop_timeout_ms,
        pipes: vec![pipe(out, Stream::Stdout), pipe(err, Stream::Stderr)],
        next_seq: 0,
        urls: Vec::new(),
        notify: None,
        status_text: None,
    }
}
