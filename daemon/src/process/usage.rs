//! What each running program costs (issue 18): one task samples every program on a timer
//! (`run`) and publishes each program's [`Usage`] in its entry, where `status`, D-Bus and
//! the metrics text read it with one `ArcSwap` load. Nothing is measured per request.
//!
//! The figures come from a [`Source`]: the program's cgroup (`cgroupsource`: a few small
//! files per program, no walk) where brummerd has cgroup containment, else the /proc
//! fallback (`procsource`: a walk of the program's tree in the shared /proc scan). What is derived from two samples (CPU percent, the peak, a CPU
//! counter that never goes back within a run) is computed here, the same for every source.

use brummer_proto::methods::ProcessMetrics;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often every program is sampled. CPU percent is the average over this interval.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// When the first sample is taken after a re-exec: not while the adopted programs' tasks
/// start and the first clients are answered (a sample reads every program's cgroup or
/// all of /proc).
pub const FIRST_AFTER_REEXEC: Duration = Duration::from_millis(500);

/// What holds a program's processes together (`status --json` `containment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// A cgroup v2 leaf per program in brummerd's delegated subtree (`crate::cgroup`).
    Cgroup,
    /// Its process group, its session and its descendants found in /proc.
    ProcessGroup,
}

impl Containment {
    pub fn as_str(self) -> &'static str {
        match self {
            Containment::Cgroup => "cgroup",
            Containment::ProcessGroup => "process-group",
        }
    }
}

/// The containment brummerd uses: a cgroup per program where it set up a delegated cgroup
/// v2 subtree at start-up, else the process group and /proc.
pub fn containment() -> Containment {
    if crate::cgroup::tree().is_some() {
        Containment::Cgroup
    } else {
        Containment::ProcessGroup
    }
}

/// What one program's tree uses at one moment, as a source reads it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// CPU time, user and system, the tree's exited children included.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    pub tasks: u32,
    /// (read_bytes, write_bytes); `None` when some member's figures are not readable.
    pub io: Option<(u64, u64)>,
    /// The kernel's peak of this run, where it keeps one (a cgroup's `memory.peak`).
    pub peak_bytes: Option<u64>,
    /// `some avg10` of cpu, memory and io pressure, where known.
    pub pressure: [Option<f64>; 3],
}

/// A running program as a source is asked about it: by name (a cgroup source finds its
/// cgroup by it) and by its main process (the /proc source walks the tree from there).
#[derive(Debug, Clone)]
pub struct Target {
    pub name: Arc<str>,
    pub pid: i32,
}

/// Where readings come from.
pub trait Source: Send + Sync {
    /// The name `status --json` gives it (`metrics.source`).
    fn kind(&self) -> &'static str;

    /// One reading per target (in the same order); `None` for a program whose processes
    /// are gone.
    fn read(&self, targets: Vec<Target>) -> impl Future<Output = Vec<Option<Reading>>> + Send;
}

/// One program's published sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// The main process the sample belongs to: status shows it only while that is the
    /// program's pid, so a sample never outlives its run by a tick.
    pub pid: u32,
    pub source: &'static str,
    pub sampled_at: SystemTime,
    pub cpu_percent: Option<f64>,
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub tasks: u32,
    pub io: Option<(u64, u64)>,
    pub pressure: [Option<f64>; 3],
}

impl Usage {
    pub fn to_wire(&self) -> ProcessMetrics {
        ProcessMetrics {
            source: self.source.to_owned(),
            sampled_at_us: self
                .sampled_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            cpu_percent: self.cpu_percent,
            cpu_usage_ns: self.cpu_ns,
            memory_bytes: self.memory_bytes,
            memory_peak_bytes: self.memory_peak_bytes,
            tasks: self.tasks,
            io_read_bytes: self.io.map(|(r, _)| r),
            io_write_bytes: self.io.map(|(_, w)| w),
            cpu_pressure: self.pressure[0],
            memory_pressure: self.pressure[1],
            io_pressure: self.pressure[2],
        }
    }
}

/// A program as the sampler sees it (`ProcessEntry` is one; the trait keeps this module
/// below the entry, which reads the samples).
pub trait Sampled {
    fn name(&self) -> &Arc<str>;
    /// The main process of the running child, if any.
    fn pid(&self) -> Option<u32>;
    /// Publishes the program's newest sample (`None`: nothing runs).
    fn publish(&self, usage: Option<Arc<Usage>>);
}

/// The sampler's memory of one run: what the next sample is compared with.
#[derive(Debug, Clone, Copy)]
struct Run {
    pid: u32,
    at: Instant,
    cpu_ns: u64,
    peak: u64,
}

/// Derives a run's published sample from its previous one and a new reading.
fn derive(prev: Option<&Run>, pid: u32, r: Reading, at: Instant) -> (Run, Option<f64>) {
    let prev = prev.filter(|p| p.pid == pid);
    // A member that exits unreaped (a zombie) leaves the sum until its parent waits for
    // it; the counter holds its value meanwhile instead of going back.
    let cpu_ns = prev.map_or(r.cpu_ns, |p| p.cpu_ns.max(r.cpu_ns));
    let percent = prev.and_then(|p| {
        let secs = at.checked_duration_since(p.at)?.as_secs_f64();
        (secs > 0.0).then(|| (cpu_ns - p.cpu_ns) as f64 / 1e9 / secs * 100.0)
    });
    let peak = prev
        .map_or(r.memory_bytes, |p| p.peak.max(r.memory_bytes))
        .max(r.peak_bytes.unwrap_or(0));
    (
        Run {
            pid,
            at,
            cpu_ns,
            peak,
        },
        percent,
    )
}

/// Samples every program every [`SAMPLE_EVERY`] until dropped (the server spawns it on
/// the shutdown tracker), the first time `first` from now. `programs` lists the programs of
/// the moment (a reload changes them). The only publisher of every program's usage.
pub async fn run<P: Sampled>(
    source: impl Source,
    programs: impl Fn() -> Vec<Arc<P>> + Send,
    first: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut runs: HashMap<Arc<str>, Run> = HashMap::new();
    loop {
        tick.tick().await;
        let entries = programs();
        // Pids are below 2^22, so every one converts; one that did not would be skipped
        // here and below alike, keeping readings and programs in step.
        let pids: Vec<Option<(u32, i32)>> = entries
            .iter()
            .map(|e| e.pid().and_then(|p| Some((p, i32::try_from(p).ok()?))))
            .collect();
        let wanted: Vec<Target> = entries
            .iter()
            .zip(&pids)
            .filter_map(|(e, p)| {
                Some(Target {
                    name: e.name().clone(),
                    pid: p.as_ref()?.1,
                })
            })
            .collect();
        let sampled_at = SystemTime::now();
        let at = Instant::now();
        let mut readings = source.read(wanted).await.into_iter();
        let mut next = HashMap::with_capacity(runs.len());
        for (e, pid) in entries.iter().zip(pids) {
            let reading = match pid {
                Some(_) => readings.next().flatten(),
                None => None,
            };
            let (Some((pid, _)), Some(r)) = (pid, reading) else {
                e.publish(None);
                continue;
            };
            let (run, cpu_percent) = derive(runs.get(e.name()), pid, r, at);
            e.publish(Some(Arc::new(Usage {
                pid,
                source: source.kind(),
                sampled_at,
                cpu_percent,
                cpu_ns: run.cpu_ns,
                memory_bytes: r.memory_bytes,
                memory_peak_bytes: run.peak,
                tasks: r.tasks,
                io: r.io,
                pressure: r.pressure,
            })));
            next.insert(e.name().clone(), run);
        }
        // Programs that stopped or were removed are forgotten with this.
        runs = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(cpu_ns: u64, memory_bytes: u64) -> Reading {
        Reading {
            cpu_ns,
            memory_bytes,
            tasks: 1,
            io: None,
            peak_bytes: None,
            pressure: [None; 3],
        }
    }

    #[test]
    fn percent_is_cpu_over_the_interval_and_the_first_sample_has_none() {
        let t0 = Instant::now();
        let (r0, p0) = derive(None, 7, reading(1_000_000_000, 10), t0);
        assert_eq!(p0, None);
        let (r1, p1) = derive(Some(&r0), 7, reading(2_000_000_000, 30), t0 + SAMPLE_EVERY);
        assert_eq!(p1, Some(50.0));
        assert_eq!((r1.cpu_ns, r1.peak), (2_000_000_000, 30));
        let (r2, _) = derive(
            Some(&r1),
            7,
            reading(2_500_000_000, 20),
            t0 + 2 * SAMPLE_EVERY,
        );
        assert_eq!(r2.peak, 30, "the peak stays");
    }

    #[test]
    fn a_new_pid_is_a_new_run_and_the_counter_never_goes_back_within_one() {
        let t0 = Instant::now();
        let (r0, _) = derive(None, 7, reading(5_000_000_000, 100), t0);
        let (r1, p1) = derive(Some(&r0), 7, reading(4_000_000_000, 10), t0 + SAMPLE_EVERY);
        assert_eq!((r1.cpu_ns, p1), (5_000_000_000, Some(0.0)));
        let (r2, p2) = derive(Some(&r1), 8, reading(1_000, 10), t0 + 2 * SAMPLE_EVERY);
        assert_eq!((r2.cpu_ns, r2.peak, p2), (1_000, 10, None));
    }
}
