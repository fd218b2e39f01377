//! The cgroup source of usage figures: each program's leaf (`crate::cgroup`), found by its
//! name, read file by file: `cpu.stat` usage_usec, `memory.current`, `memory.peak`,
//! `pids.current`, `io.stat` bytes and the `some avg10` of the pressure files. A handful
//! of small reads per program, no walk of its processes, whatever their number.

use super::usage::{Reading, Source, Target};
use crate::cgroup::Tree;

pub struct CgroupSource {
    tree: &'static Tree,
}

impl CgroupSource {
    pub fn new(tree: &'static Tree) -> CgroupSource {
        CgroupSource { tree }
    }
}

impl Source for CgroupSource {
    fn kind(&self) -> &'static str {
        "cgroup"
    }

    async fn read(&self, targets: Vec<Target>) -> Vec<Option<Reading>> {
        if targets.is_empty() {
            return Vec::new();
        }
        let tree = self.tree;
        let n = targets.len();
        // Each read is a small file of cgroupfs: a blocking thread's work all the same.
        tokio::task::spawn_blocking(move || {
            targets
                .iter()
                .map(|t| {
                    let s = tree.leaf(&t.name).stat();
                    // An empty or removed leaf has no usage to show.
                    let cpu_usec = s.cpu_usec?;
                    Some(Reading {
                        cpu_ns: cpu_usec.saturating_mul(1_000),
                        memory_bytes: s.memory_current.unwrap_or(0),
                        tasks: s
                            .pids_current
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(0),
                        io: s.io,
                        peak_bytes: s.memory_peak,
                        pressure: s.pressure,
                    })
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; n])
    }
}
