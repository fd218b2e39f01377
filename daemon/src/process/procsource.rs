//! The /proc fallback source of usage figures: each program's tree (main process, its
//! process group and session, their descendants: the walk `stop` uses) found in the shared
//! /proc scan, and its members' CPU ticks, RSS and threads summed from their `stat` lines
//! (already read by the scan), plus one read of `/proc/PID/io` per member. The cost is a
//! scan of /proc per sample (shared with any stop that wants one) and one small read per
//! member process.

use super::supervisor::ProcScanner;
use super::supervisor::procfs::{self, Table};
use super::usage::{Reading, Source, Target};
use std::collections::HashSet;

pub struct ProcSource {
    scanner: ProcScanner,
    ns_per_tick: u64,
    page_bytes: u64,
}

impl ProcSource {
    pub fn new(scanner: ProcScanner) -> ProcSource {
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        ProcSource {
            scanner,
            ns_per_tick: 1_000_000_000 / ticks,
            page_bytes: rustix::param::page_size() as u64,
        }
    }
}

impl Source for ProcSource {
    fn kind(&self) -> &'static str {
        "proc"
    }

    /// One reading per target, from a /proc scan begun after this call.
    async fn read(&self, targets: Vec<Target>) -> Vec<Option<Reading>> {
        if targets.is_empty() {
            return Vec::new();
        }
        let table = self.scanner.fresh().await;
        let (ns_per_tick, page_bytes) = (self.ns_per_tick, self.page_bytes);
        let n = targets.len();
        // The io reads are one open and read per member: a blocking thread's work.
        tokio::task::spawn_blocking(move || {
            targets
                .iter()
                .map(|t| tree(&table, t.pid, ns_per_tick, page_bytes))
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; n])
    }
}

/// The sums over the tree of main process `pid`; `None` when nothing of it is alive.
fn tree(table: &Table, pid: i32, ns_per_tick: u64, page_bytes: u64) -> Option<Reading> {
    let root = table.get(pid)?;
    let members = table.members(&HashSet::from([root.ident()]), pid);
    if members.is_empty() {
        return None;
    }
    let mut r = Reading {
        io: Some((0, 0)),
        ..Reading::default()
    };
    // No kernel peak and no pressure for a tree of processes.
    for m in &members {
        r.cpu_ns = r
            .cpu_ns
            .saturating_add(m.cpu_ticks.saturating_mul(ns_per_tick));
        r.memory_bytes = r
            .memory_bytes
            .saturating_add(m.rss_pages.saturating_mul(page_bytes));
        r.tasks = r.tasks.saturating_add(m.threads);
        r.io = match (r.io, procfs::read_io(m.pid)) {
            (Some((rd, wr)), Some((a, b))) => Some((rd.saturating_add(a), wr.saturating_add(b))),
            _ => None,
        };
    }
    Some(r)
}

/// brummerd's own resident memory (`/proc/self/statm`), in bytes; 0 when unreadable.
pub fn own_rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split(' ').nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages.saturating_mul(rustix::param::page_size() as u64)
}
