//! `logs`: lines from the rings and, below them, the disk logs: the last N (of a time
//! window, when one is given), or the first N from a sequence number. Disk reads block, so it runs on a blocking thread.

use super::{Reply, to_raw, wire_line};
use crate::logs::merge;
use crate::logs::read::{self, Filter};
use crate::ops::resolve;
use crate::state::State;
use brummer_core::Line;
use brummer_proto::methods::{LogsParams, LogsResult, Missed};
use brummer_proto::{ErrorCode, RpcError};
use std::sync::Arc;

/// Lines returned when the request names no count.
const DEFAULT_LINES: usize = 100;
/// A larger tail is refused rather than silently cut: it would be one reply of hundreds of
/// megabytes. Callers page with `from_seq` instead.
const MAX_LINES: usize = 1_000_000;

pub async fn run(state: Arc<State>, p: LogsParams) -> Reply {
    tokio::task::spawn_blocking(move || read(&state, p))
        .await
        .unwrap_or_else(|e| Err(RpcError::new(ErrorCode::Internal, e.to_string())))
}

fn read(state: &State, p: LogsParams) -> Reply {
    let entries = resolve::names_or_all(state, &p.names)?;
    let n = p.lines.unwrap_or(DEFAULT_LINES);
    if n > MAX_LINES {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("at most {MAX_LINES} lines per call (asked for {n}); page with from_seq"),
        ));
    }
    let filter = Filter::new(p.stream, p.grep.as_deref(), p.since_us, p.until_us)?;
    let dir = state.logs().dir();
    // From a sequence number (paging) the first N lines from there; else the last N of
    // what the filter keeps, `since_us`/`until_us` included (as journalctl's `-n`).
    let forward = p.from_seq.is_some();
    let mut runs: Vec<Vec<(usize, Line)>> = Vec::with_capacity(entries.len());
    let mut missed = Vec::new();
    let mut buf = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        buf.clear();
        let log = &e.log;
        let lost = if let Some(from) = p.from_seq {
            let to = log.ring.next_seq();
            read::read_forward(dir, log, from, to, n, &filter, &mut buf).missed
        } else {
            read::tail(dir, log, n, &filter, &mut buf)
        };
        if lost > 0 {
            missed.push(Missed {
                process: e.name.to_string(),
                count: lost,
            });
        }
        runs.push(buf.drain(..).map(|l| (idx, l)).collect());
    }
    // Capture order across processes, each process's own lines in seq order even when the
    // wall clock went back meanwhile.
    let merged = merge::by_time(runs, |(_, l)| l.meta.wall_us);
    let range = if forward {
        0..merged.len().min(n)
    } else {
        merged.len().saturating_sub(n)..merged.len()
    };
    let lines = merged[range]
        .iter()
        .map(|(i, l)| wire_line(&entries[*i].name, l))
        .collect();
    to_raw(&LogsResult { lines, missed })
}
