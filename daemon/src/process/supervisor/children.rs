//! The set of children brummerd spawned itself, and the reaper for everything else.
//!
//! brummerd is a child subreaper, so a program's orphaned descendants are re-parented to it
//! and must be reaped here. Tracked children are reaped only by their supervisor task with
//! `waitid(P_PIDFD)`, which keeps their exit status; a blind `waitpid(-1)` would steal it.
//! So the reaper reaps pid by pid, skipping tracked ones, and a spawn (fork/exec + pidfd +
//! register) never overlaps the reaper's scan: spawns hold `gate` shared, the scan holds it
//! exclusively. Spawns do not exclude each other, so two supervisor tasks on two worker
//! threads start their children at the same time (`start --all`). Neither lock is
//! held across `.await`, only across a spawn or a few non-blocking `waitpid`s.

use std::collections::HashSet;
use std::fs;
use std::sync::{Mutex, RwLock};

#[derive(Default)]
pub struct Children {
    /// Shared by spawns in progress, exclusive for the reaper's scan: a child that exits
    /// before it is registered in `tracked` cannot be reaped by the scan.
    gate: RwLock<()>,
    /// Pids spawned by a supervisor task and not yet reaped by it.
    tracked: Mutex<HashSet<i32>>,
}

impl Children {
    /// Runs `spawn` (which forks) and registers the pid it returns before the reaper can
    /// look at it.
    pub fn spawn_tracked<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(i32, T)>,
    ) -> std::io::Result<(i32, T)> {
        let _spawning = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let (pid, t) = spawn()?;
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid);
        Ok((pid, t))
    }

    /// Tracks a child this process already has: one handed over by the previous image of
    /// a re-exec, which its new supervisor task will reap.
    pub fn adopt(&self, pid: i32) {
        let _spawning = self.gate.read().unwrap_or_else(|e| e.into_inner());
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid);
    }

    /// The supervisor task reaped `pid` itself.
    pub fn untrack(&self, pid: i32) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }

    /// Reaps every exited child that is not tracked. Returns how many were reaped.
    pub fn reap_orphans(&self) -> usize {
        let _scan = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        let mut reaped = 0;
        for pid in direct_children() {
            if tracked.contains(&pid) {
                continue;
            }
            // WNOHANG: a living orphan is left alone; only zombies are collected.
            if let Ok(status) = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) && status != nix::sys::wait::WaitStatus::StillAlive
            {
                reaped += 1;
            }
        }
        reaped
    }
}

/// Our direct children, from every thread's /proc children list: a re-parented orphan
/// becomes the child of whichever of our threads the kernel picks.
fn direct_children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
