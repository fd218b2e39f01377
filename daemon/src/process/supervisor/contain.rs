//! A run's cgroup, where brummerd has cgroup containment (`crate::cgroup`): made ready
//! before the spawn (what a previous run left in it killed, the program's limits written),
//! its OOM kills counted from the run's start, and emptied and removed when the run ends,
//! so that nothing of a run outlives it and the next run starts with fresh counters.

use crate::cgroup::{self, Leaf};
use crate::config::{CgroupLimits, ProcessDef, human_bytes};
use std::time::Duration;
use tokio::time::Instant;

/// How long emptying a leaf waits for its killed processes to be gone (a process in
/// uninterruptible sleep outlives SIGKILL for a while).
const EMPTY_WITHIN: Duration = Duration::from_secs(5);

/// The cgroup of one run.
#[derive(Debug, Clone)]
pub struct RunLeaf {
    pub leaf: Leaf,
    /// `memory.events` `oom_kill` when the run began.
    oom_base: u64,
    /// The `memory_max` the run got, for the OOM report.
    memory_max: Option<u64>,
}

impl RunLeaf {
    /// Makes `def`'s leaf ready for a new run: `None` without cgroup containment.
    pub async fn prepare(def: &ProcessDef) -> Result<Option<RunLeaf>, String> {
        let Some(tree) = cgroup::tree() else {
            return Ok(None);
        };
        let leaf = tree.leaf(&def.name);
        if leaf.populated() == Some(true) {
            tracing::warn!(process = %def.name, cgroup = %leaf.path().display(), "killing what is left in the program's cgroup before it starts again");
            empty(&leaf).await;
        }
        leaf.create()
            .map_err(|e| format!("cannot create its cgroup {}: {e}", leaf.path().display()))?;
        apply(&leaf, &def.cgroup_limits, tree)?;
        Ok(Some(RunLeaf {
            oom_base: leaf.oom_kills().unwrap_or(0),
            memory_max: def.cgroup_limits.memory_max,
            leaf,
        }))
    }

    /// The leaf of a run that is already running (handed over, re-adopted): counted from
    /// now, its limits written again (controllers enabled again after a crash start with
    /// the kernel's defaults).
    pub fn adopt(def: &ProcessDef) -> Option<RunLeaf> {
        let tree = cgroup::tree()?;
        let leaf = tree.leaf(&def.name);
        if !leaf.exists() {
            return None;
        }
        if let Err(e) = apply(&leaf, &def.cgroup_limits, tree) {
            tracing::warn!(process = %def.name, cause = %e, "cannot apply the limits of an adopted run");
        }
        Some(RunLeaf {
            oom_base: leaf.oom_kills().unwrap_or(0),
            memory_max: def.cgroup_limits.memory_max,
            leaf,
        })
    }

    /// "killed by the OOM killer (memory_max 20M)" when the kernel's OOM killer killed a
    /// process of this run.
    pub fn oom_report(&self) -> Option<String> {
        let now = self.leaf.oom_kills()?;
        (now > self.oom_base).then(|| match self.memory_max {
            Some(m) => format!("killed by the OOM killer (memory_max {})", human_bytes(m)),
            None => "killed by the OOM killer".to_owned(),
        })
    }

    /// The run is over: whatever is left in its leaf is killed, and the empty leaf removed.
    pub async fn end(&self) {
        if self.leaf.populated() == Some(true) {
            tracing::info!(cgroup = %self.leaf.path().display(), "killing what the run left in its cgroup");
            empty(&self.leaf).await;
        }
        if let Err(e) = self.leaf.remove() {
            tracing::warn!(cgroup = %self.leaf.path().display(), cause = %e, "cannot remove the cgroup of a run that ended");
        }
    }
}

/// Writes `limits` into `leaf`; every controller it has and the config leaves unset gets
/// the kernel's default back (a leaf that could not be removed keeps its old values).
fn apply(leaf: &Leaf, limits: &CgroupLimits, tree: &cgroup::Tree) -> Result<(), String> {
    let set = limits.files();
    for (file, value) in &set {
        leaf.set(file, value).map_err(|e| {
            format!(
                "cannot write {value:?} to {}: {e}",
                leaf.path().join(file).display()
            )
        })?;
    }
    let defaults = [
        ("memory", "memory.high", "max"),
        ("memory", "memory.max", "max"),
        ("cpu", "cpu.weight", "100"),
        ("cpu", "cpu.max", "max"),
        ("pids", "pids.max", "max"),
    ];
    for (controller, file, value) in defaults {
        if tree.has(controller) && !set.iter().any(|(f, _)| *f == file) {
            let _ = leaf.set(file, value);
        }
    }
    Ok(())
}

/// Kills everything in `leaf` (`cgroup.kill`) and waits, bounded, until it is empty.
pub async fn empty(leaf: &Leaf) -> bool {
    if let Err(e) = leaf.kill() {
        tracing::warn!(cgroup = %leaf.path().display(), cause = %e, "cannot kill the processes of a cgroup (cgroup.kill needs Linux 5.14)");
    }
    let deadline = Instant::now() + EMPTY_WITHIN;
    let mut pause = Duration::from_millis(1);
    while leaf.populated() == Some(true) {
        if Instant::now() >= deadline {
            tracing::error!(cgroup = %leaf.path().display(), pids = ?leaf.pids(), "processes are still in the cgroup after SIGKILL");
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}
