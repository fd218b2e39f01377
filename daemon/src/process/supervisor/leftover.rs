//! The contract between one brummerd and the next on the same socket: what a child's
//! runtime record says ([`record`]), the two variables every child carries ([`mark`]),
//! and, at start-up, finding and stopping what a previous brummerd left running when it
//! died without stopping its programs ([`find`], [`stop`]).
//!
//! A leftover is found two ways: by its runtime record (pid and start time, so a recycled
//! pid is never taken for it; its process group only while that group's leader is the
//! recorded process), and by its environment (`BRUMMER_DAEMON` = this daemon's socket),
//! which also finds a child spawned in the moment before its record reached the disk.
//! Leftovers are stopped, not adopted: their pipes ended with the brummerd that held them,
//! so their output goes nowhere and they cannot be supervised honestly
//! (docs/architecture.md, 2026-12-02, crash).

use super::procfs::{self, Ident, Proc};
use super::procscan::ProcScanner;
use super::stop::{self, Main};
use super::{ExitKind, procfs::Table};
use crate::config::ProcessDef;
use crate::desired::{DaemonId, Previous, Run};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// The socket of the brummerd that started a process (in every child's environment).
pub const DAEMON_ENV: &str = "BRUMMER_DAEMON";
/// The program a process belongs to (in every child's environment).
pub const PROCESS_ENV: &str = "BRUMMER_PROCESS";

/// Stop settings for a leftover of a program neither recorded nor configured any more.
const DEFAULT_SIGNAL: i32 = libc::SIGTERM;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime record of a child just spawned (`None` if /proc no longer shows it, which
/// cannot happen before it is reaped). The group is the pid: every child is spawned in a
/// session of its own, and /proc may not show that yet when the child has not reached
/// `setsid` (a forked spawn).
pub fn record(pid: u32, generation: u64, def: &ProcessDef) -> Option<Run> {
    let p = procfs::read_stat(i32::try_from(pid).ok()?)?;
    Some(record_known(p.pid, p.start, generation, def))
}

/// The runtime record of a child whose start time is known (handed over by a re-exec).
pub fn record_known(pid: i32, start: u64, generation: u64, def: &ProcessDef) -> Run {
    Run {
        pid,
        start,
        pgid: pid,
        generation,
        stop_signal: def.stop_signal,
        stop_timeout_ms: u64::try_from(def.stop_timeout.as_millis()).unwrap_or(u64::MAX),
        fds: Vec::new(),
    }
}

/// This brummerd, as its runtime state names it.
pub fn me() -> Option<DaemonId> {
    let p = procfs::read_stat(i32::try_from(std::process::id()).ok()?)?;
    Some(DaemonId {
        pid: p.pid,
        start: p.start,
    })
}

/// Puts the marks into a child's environment, after the program's own `env` (which
/// cannot override them): `BRUMMER_PROCESS` and the daemon's `BRUMMER_DAEMON` from `base`.
pub fn mark(env: &mut BTreeMap<OsString, OsString>, base: &[(OsString, OsString)], name: &str) {
    if let Some((k, v)) = base.iter().find(|(k, _)| k == DAEMON_ENV) {
        env.insert(k.clone(), v.clone());
    }
    env.insert(PROCESS_ENV.into(), name.into());
}

/// What a previous brummerd left of one program.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub name: String,
    /// The recorded main process, when it still runs (pid and start time match).
    pub main: Option<Proc>,
    /// Every live process found: the main one and those carrying the marks.
    pub roots: Vec<Proc>,
    /// The recorded group, used only while its leader is the recorded main process.
    pub group: i32,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    /// Found by the runtime record (true) or only by the environment.
    pub recorded: bool,
}

impl Leftover {
    pub fn pids(&self) -> Vec<i32> {
        self.roots.iter().map(|p| p.pid).collect()
    }
}

/// Finds what the previous brummerd on `socket` left running. `defs` gives the stop
/// settings of programs found only by their environment.
pub async fn find(
    previous: &Previous,
    socket: &Path,
    defs: &BTreeMap<String, Arc<ProcessDef>>,
    procs: &ProcScanner,
) -> Vec<Leftover> {
    let table = procs.fresh().await;
    let marker = socket.as_os_str().to_owned();
    let by_env = {
        let table = table.clone();
        tokio::task::spawn_blocking(move || marked(&table, &marker))
            .await
            .unwrap_or_default()
    };
    let mut out: BTreeMap<String, Leftover> = BTreeMap::new();
    for (name, rec) in &previous.programs {
        let Some(run) = rec.run.clone() else { continue };
        let Some(p) = table
            .get(run.pid)
            .filter(|p| p.start == run.start && !p.zombie)
            .copied()
        else {
            continue;
        };
        out.insert(
            name.clone(),
            Leftover {
                name: name.clone(),
                main: Some(p),
                roots: vec![p],
                group: run.pgid,
                stop_signal: run.stop_signal,
                stop_timeout: Duration::from_millis(run.stop_timeout_ms),
                recorded: true,
            },
        );
    }
    for (name, found) in by_env {
        let l = out.entry(name.clone()).or_insert_with(|| {
            let def = defs.get(&name);
            Leftover {
                name: name.clone(),
                main: None,
                roots: vec![],
                group: 0,
                stop_signal: def.map_or(DEFAULT_SIGNAL, |d| d.stop_signal),
                stop_timeout: def.map_or(DEFAULT_TIMEOUT, |d| d.stop_timeout),
                recorded: false,
            }
        });
        for p in found {
            if !l.roots.iter().any(|r| r.ident() == p.ident()) {
                l.roots.push(p);
            }
        }
    }
    out.into_values().collect()
}

/// Live processes whose environment holds `BRUMMER_DAEMON=marker`, by their
/// `BRUMMER_PROCESS` (an empty name when it is missing). Blocking: reads /proc.
fn marked(table: &Table, marker: &OsStr) -> BTreeMap<String, Vec<Proc>> {
    let mut want = Vec::from(DAEMON_ENV.as_bytes());
    want.push(b'=');
    want.extend_from_slice(marker.as_bytes());
    let name_key = format!("{PROCESS_ENV}=");
    let me = std::process::id() as i32;
    let mut out: BTreeMap<String, Vec<Proc>> = BTreeMap::new();
    for p in table.iter() {
        if p.zombie || p.pid == me {
            continue;
        }
        // Another user's process is unreadable, and never ours to stop anyway.
        let Ok(env) = std::fs::read(format!("/proc/{}/environ", p.pid)) else {
            continue;
        };
        let mut ours = false;
        let mut name = String::new();
        for kv in env.split(|b| *b == 0) {
            if kv == want.as_slice() {
                ours = true;
            } else if let Some(n) = kv.strip_prefix(name_key.as_bytes()) {
                name = String::from_utf8_lossy(n).into_owned();
            }
        }
        // Checked again against the table: the pid may have been recycled while we read.
        if ours && procfs::read_stat(p.pid).is_some_and(|now| now.start == p.start) {
            out.entry(name).or_default().push(*p);
        }
    }
    out
}

/// A leftover's main process: not our child, so its end shows on its pidfd and its exit
/// status belongs to whoever it was re-parented to.
struct Orphan(Option<AsyncFd<OwnedFd>>);

impl Main for Orphan {
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.0.as_ref().map(|fd| fd.get_ref().as_fd())
    }

    async fn wait_exit(&self) -> ExitKind {
        if let Some(fd) = &self.0 {
            // Readable once it has exited; an error means it cannot be watched, and the
            // /proc walk decides alone.
            let _ = fd.readable().await;
        }
        // Unknown: only its new parent can reap it.
        ExitKind::Unknown
    }
}

impl Orphan {
    /// A pidfd on `p`, opened only if the pid still names that process.
    fn open(p: Option<Proc>) -> Orphan {
        let fd = p.and_then(|p| {
            let pid = rustix::process::Pid::from_raw(p.pid)?;
            let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
            let same = procfs::read_stat(p.pid).is_some_and(|now| now.start == p.start);
            same.then_some(fd)
        });
        Orphan(fd.and_then(|fd| crate::fd::watch_readable(fd).ok()))
    }
}

/// Stops every leftover in parallel, each with its own stop signal and timeout (then
/// SIGKILL), as `stop` stops a program, and logs what was stopped. Returns once nothing
/// of them is left (or reports the survivors in the log).
pub async fn stop(leftovers: Vec<Leftover>, procs: &ProcScanner) {
    let mut set = tokio::task::JoinSet::new();
    for l in leftovers {
        let procs = procs.clone();
        tracing::warn!(
            process = %l.name,
            pids = ?l.pids(),
            signal = l.stop_signal,
            timeout = ?l.stop_timeout,
            found_by = if l.recorded { "runtime state" } else { "environment" },
            "stopping a leftover of the previous brummerd (it died without stopping its programs)"
        );
        set.spawn(async move {
            let main = Orphan::open(l.main);
            let roots: Vec<Ident> = l.roots.iter().map(Proc::ident).collect();
            // The group only while its leader is the recorded process: a group whose
            // leader is gone may be a recycled number.
            let group = if main.0.is_some() { l.group } else { 0 };
            let r = stop::stop_group(
                &main,
                group,
                &roots,
                stop::Members::Tree(&procs),
                l.stop_signal,
                l.stop_timeout,
            )
            .await;
            (l, r)
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok((l, Ok(_))) => tracing::warn!(
                process = %l.name,
                pids = ?l.pids(),
                "stopped a leftover of the previous brummerd"
            ),
            Ok((l, Err(e))) => tracing::error!(
                process = %l.name,
                pids = ?l.pids(),
                cause = %e,
                "cannot stop a leftover of the previous brummerd; a second copy may clash with it"
            ),
            Err(e) => tracing::error!(cause = %e, "stopping a leftover failed"),
        }
    }
}

/// With cgroup containment, after the leftovers are stopped: the cgroup of every program
/// not in `keep` (the re-adopted ones) is emptied (`cgroup.kill`: whatever is still in it
/// belonged to a run nobody supervises) and removed.
pub async fn sweep_cgroups(keep: &[String]) {
    let Some(tree) = crate::cgroup::tree() else {
        return;
    };
    for (name, leaf) in tree.leaves() {
        if keep.contains(&name) {
            continue;
        }
        if leaf.populated() == Some(true) {
            tracing::warn!(process = %name, pids = ?leaf.pids(), "killing what a previous brummerd left in the program's cgroup");
            super::contain::empty(&leaf).await;
        }
        if let Err(e) = leaf.remove() {
            tracing::warn!(process = %name, cgroup = %leaf.path().display(), cause = %e, "cannot remove a program's cgroup left by a previous brummerd");
        }
    }
}
