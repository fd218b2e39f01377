//! Stopping a program so that nothing of it remains: `stop_signal` to its process group,
//! to the main process (by pidfd) and to every descendant found in /proc (also those that
//! left the group with setsid); new descendants found while waiting get the same signal;
//! after `stop_timeout` everything left gets SIGKILL. Returns only when no member is alive,
//! or reports the survivors. The /proc tables come from the shared `ProcScanner`, so many
//! stops at once share each scan; every table used after a signal was read after it.
//! The same walk stops what a previous brummerd left behind (`leftover`), whose main
//! process is not our child: its end is seen on its pidfd, not reaped.

use super::procfs::{self, Ident, Proc};
use super::procscan::ProcScanner;
use super::{Child, ExitKind};
use crate::cgroup::Leaf;
use rustix::process::{Pid, Signal};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// How long SIGKILLed processes get to disappear before the stop is reported as failed
/// (a process in uninterruptible sleep can outlive SIGKILL for a while).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Longest pause between two scans of /proc while waiting.
const MAX_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum StopError {
    #[error("processes still alive after SIGKILL: {0:?}")]
    Survivors(Vec<i32>),
}

/// The main process of a tree being stopped.
pub trait Main {
    /// Its pidfd, when there is one to signal.
    fn pidfd(&self) -> Option<BorrowedFd<'_>>;
    /// Resolves when it has ended (cancel-safe).
    fn wait_exit(&self) -> impl Future<Output = ExitKind> + Send;
}

impl Main for Child {
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.pidfd.get_ref().as_fd())
    }

    fn wait_exit(&self) -> impl Future<Output = ExitKind> + Send {
        Child::wait_exit(self)
    }
}

/// Stops the child and all its descendants; returns how the main process ended.
pub async fn stop_tree(
    child: &Child,
    procs: &ProcScanner,
    stop_signal: i32,
    timeout: Duration,
) -> Result<ExitKind, StopError> {
    let members = match &child.leaf {
        Some(l) => Members::Cgroup(&l.leaf),
        None => Members::Tree(procs),
    };
    stop_group(child, child.pid, &[], members, stop_signal, timeout).await
}

/// Where a stop finds what belongs to the program.
#[derive(Clone, Copy)]
pub enum Members<'a> {
    /// Its process group and session and their descendants, in the shared /proc scan.
    Tree(&'a ProcScanner),
    /// Its cgroup: every process in it, whatever session it made or parent it got.
    Cgroup(&'a Leaf),
}

impl Members<'_> {
    /// The live members now, read after every signal sent so far.
    async fn live(&self, known: &HashSet<Ident>, group: i32) -> Vec<Proc> {
        match self {
            Members::Tree(procs) => procs.fresh().await.members(known, group),
            Members::Cgroup(leaf) => leaf
                .pids()
                .into_iter()
                .filter_map(procfs::read_stat)
                .filter(|p| !p.zombie)
                .collect(),
        }
    }

    /// Nothing of the program is left.
    fn gone(&self, live: &[Proc]) -> bool {
        match self {
            Members::Tree(_) => live.is_empty(),
            // `populated 0` in cgroup.events: the kernel's word, zombies not counted.
            Members::Cgroup(leaf) => leaf.populated() != Some(true),
        }
    }

    /// The kernel's SIGKILL to the whole cgroup at once, where there is one.
    fn kill_all(&self) {
        if let Members::Cgroup(leaf) = self
            && let Err(e) = leaf.kill()
        {
            tracing::warn!(cgroup = %leaf.path().display(), cause = %e, "cgroup.kill failed; killing its processes one by one");
        }
    }
}

/// Stops `main`, the members of process group (or session) `group`, the processes `roots`
/// names that are still alive, and all their descendants.
pub async fn stop_group(
    main: &impl Main,
    group: i32,
    roots: &[Ident],
    members: Members<'_>,
    stop_signal: i32,
    timeout: Duration,
) -> Result<ExitKind, StopError> {
    let child = main;
    let mut known: HashSet<Ident> = roots.iter().copied().collect();
    // The main process itself may be a zombie already; its ident still roots the walk.
    if let Some(p) = procfs::read_stat(group) {
        known.insert(p.ident());
    }
    let first = members.live(&known, group).await;
    known.extend(first.iter().map(Proc::ident));
    // The program (comm) each member ran when it was signalled.
    let mut signalled: HashMap<Ident, u64> = first.iter().map(|p| (p.ident(), p.image)).collect();
    let sig = Signal::from_named_raw(stop_signal).unwrap_or(Signal::TERM);
    send(child, group, &first, sig);

    let mut deadline = Instant::now() + timeout;
    let mut killed = false;
    let mut exit: Option<ExitKind> = None;
    let mut pause = Duration::from_millis(1);
    loop {
        if exit.is_none() {
            let until = (Instant::now() + pause).min(deadline);
            if let Ok(k) = tokio::time::timeout_at(until, child.wait_exit()).await {
                exit = Some(k);
                pause = Duration::from_millis(1);
                // Check at once: usually the rest of the tree went with the main process.
            } else {
                pause = (pause * 2).min(MAX_POLL);
            }
        } else {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(MAX_POLL);
        }
        // Requested after every signal sent so far: whatever forked before them is in it.
        let live = members.live(&known, group).await;
        // New members, and members that executed another program since they were
        // signalled (a forked shell whose trap handler took the signal just before its
        // exec: the program it became never saw it).
        let fresh: Vec<Proc> = live
            .iter()
            .filter(|p| {
                let new = known.insert(p.ident());
                let changed = signalled.insert(p.ident(), p.image) != Some(p.image);
                new || changed
            })
            .copied()
            .collect();
        if !fresh.is_empty() {
            send_each(&fresh, if killed { Signal::KILL } else { sig });
        }
        if let Some(k) = exit
            && live.is_empty()
            && members.gone(&live)
        {
            return Ok(k);
        }
        if Instant::now() >= deadline {
            if killed {
                return Err(StopError::Survivors(live.iter().map(|p| p.pid).collect()));
            }
            killed = true;
            tracing::warn!(
                pid = group,
                remaining = live.len(),
                "stop timeout reached; sending SIGKILL"
            );
            members.kill_all();
            send(child, group, &live, Signal::KILL);
            deadline = Instant::now() + KILL_GRACE;
        }
    }
}

/// Signals the group, the main process and each member.
fn send(main: &impl Main, group: i32, members: &[Proc], sig: Signal) {
    if let Some(pg) = Pid::from_raw(group).filter(|_| group > 1) {
        let _ = rustix::process::kill_process_group(pg, sig);
    }
    if let Some(fd) = main.pidfd() {
        let _ = rustix::process::pidfd_send_signal(fd, sig);
    }
    send_each(members, sig);
}

/// Signals processes found in /proc through a pidfd after checking that the pid still
/// names the process we saw (same start time), so a recycled pid is never hit.
fn send_each(members: &[Proc], sig: Signal) {
    for p in members {
        let Some(pid) = Pid::from_raw(p.pid) else {
            continue;
        };
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            continue;
        };
        let same = procfs::read_stat(p.pid).is_some_and(|now| now.start == p.start);
        if same {
            let _ = rustix::process::pidfd_send_signal(&fd, sig);
        }
    }
}
