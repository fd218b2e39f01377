//! Method implementations. Reads (`hello`, `version`, `list`, `status`, `logs`) are plain
//! functions over the registry, cells and rings. Mutations (`start`, `stop`, `restart`,
//! `reload`) send commands to supervisor tasks or the top-level loop and wait for replies.

use super::auth::Peer;
use crate::daemon::Daemon;
use crate::entry::{ProcessEntry, rfc3339_us};
use crate::logread::{self, Filter};
use crate::ops;
use crate::supervisor::Command;
use brummer_core::Line;
use brummer_proto::methods::{
    HelloResult, ListEntry, ListResult, LogLine, LogsParams, LogsResult, Missed, OpResult, Request,
    Selector, StatusResult, VersionResult,
};
use brummer_proto::{ErrorCode, PROTOCOL_VERSION, RpcError};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Default and maximum number of lines `logs` returns.
const DEFAULT_LINES: usize = 100;
/// A larger tail is refused rather than silently cut: it would be one reply of hundreds of
/// megabytes. Callers page with `from_seq` instead.
const MAX_LINES: usize = 1_000_000;

/// A method's answer, serialised once, straight from its typed result.
pub type Reply = Result<Box<RawValue>, RpcError>;

pub fn to_raw<T: Serialize>(t: &T) -> Reply {
    serde_json::value::to_raw_value(t)
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
}

pub fn version() -> String {
    format!("brummerd {}", env!("CARGO_PKG_VERSION"))
}

/// Handles a read-only request.
pub fn read(d: &Daemon, peer: &Peer, req: Request) -> Reply {
    match req {
        Request::Hello(p) => {
            if let Some(v) = p.protocol
                && v != PROTOCOL_VERSION
            {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "protocol {v} is not supported: brummerd speaks protocol {PROTOCOL_VERSION} (upgrade the client or the daemon)"
                    ),
                ));
            }
            to_raw(&HelloResult {
                protocol: PROTOCOL_VERSION,
                daemon: version(),
                mode: d.mode.as_str().into(),
                pid: std::process::id(),
                can_write: peer.can_write,
            })
        }
        Request::Version => to_raw(&VersionResult {
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
        }),
        Request::List => {
            let snap = d.registry.load();
            to_raw(&ListResult {
                processes: snap
                    .iter()
                    .map(|(n, e)| ListEntry {
                        name: n.to_string(),
                        state: e.cell.load().state(),
                    })
                    .collect(),
            })
        }
        Request::Status(sel) => {
            let entries = if sel.names.is_empty() {
                all(d)
            } else {
                resolve(d, &sel)?
            };
            to_raw(&StatusResult {
                processes: entries.iter().map(|e| e.status()).collect(),
            })
        }
        Request::Logs(p) => logs(d, p),
        _ => Err(RpcError::new(ErrorCode::Internal, "not a read request")),
    }
}

/// Handles a request that changes something.
pub async fn mutate(d: &Arc<Daemon>, req: Request) -> Reply {
    match req {
        Request::Start(sel) => op(d, &sel, Command::Start).await,
        Request::Stop(sel) => op(d, &sel, Command::Stop).await,
        Request::Restart(sel) => op(d, &sel, Command::Restart).await,
        Request::Reload => to_raw(&ops::reload(d).await?),
        _ => Err(RpcError::new(ErrorCode::Internal, "not a mutating request")),
    }
}

/// Runs one command on every selected process in parallel; answers when all replied.
async fn op(d: &Arc<Daemon>, sel: &Selector, make: ops::MakeCommand) -> Reply {
    if !sel.all && sel.names.is_empty() {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "name at least one process, or set \"all\": true",
        ));
    }
    let entries = if sel.all { all(d) } else { resolve(d, sel)? };
    to_raw(&OpResult {
        results: ops::run(&entries, make).await,
    })
}

fn all(d: &Daemon) -> Vec<Arc<ProcessEntry>> {
    ops::all(d)
}

/// The entries for the names asked for (duplicates once), or a did-you-mean error.
pub fn resolve(d: &Daemon, sel: &Selector) -> Result<Vec<Arc<ProcessEntry>>, RpcError> {
    ops::resolve_names(d, &sel.names)
}

pub fn resolve_names(d: &Daemon, names: &[String]) -> Result<Vec<Arc<ProcessEntry>>, RpcError> {
    ops::resolve_names(d, names)
}

/// Converts a ring line into its wire form.
pub fn wire_line(process: &str, l: &Line) -> LogLine {
    let (text, lossy) = match String::from_utf8_lossy(&l.bytes) {
        std::borrow::Cow::Borrowed(s) => (s.to_owned(), false),
        std::borrow::Cow::Owned(s) => (s, true),
    };
    LogLine {
        process: process.to_owned(),
        seq: l.meta.seq,
        time: rfc3339_us(l.meta.wall_us),
        time_us: l.meta.wall_us,
        stream: l.meta.stream,
        pid: l.meta.pid,
        text,
        lossy,
        partial: l.meta.partial,
    }
}

/// `logs`: reads the rings and, below them, the disk logs. Blocks on disk reads: the
/// connection runs it on a blocking thread.
pub fn logs(d: &Daemon, p: LogsParams) -> Reply {
    let entries = if p.names.is_empty() {
        all(d)
    } else {
        resolve_names(d, &p.names)?
    };
    let n = p.lines.unwrap_or(DEFAULT_LINES);
    if n > MAX_LINES {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("at most {MAX_LINES} lines per call (asked for {n}); page with from_seq"),
        ));
    }
    let filter = Filter::new(p.stream, p.grep.as_deref(), p.since_us, p.until_us)?;
    // With a starting point the first N lines from there, else the last N.
    let forward = p.from_seq.is_some() || p.since_us.is_some();
    let mut merged: Vec<(u64, usize, Line)> = Vec::new();
    let mut missed = Vec::new();
    let mut buf = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        buf.clear();
        let lost = if forward {
            let from = match (p.from_seq, p.since_us) {
                (Some(seq), _) => seq,
                (None, Some(us)) => logread::seq_at_time(&d.log_dir, e, us),
                (None, None) => 0,
            };
            let to = e.ring.next_seq();
            logread::read_forward(&d.log_dir, e, from, to, n, &filter, &mut buf).missed
        } else {
            logread::tail(&d.log_dir, e, n, &filter, &mut buf)
        };
        if lost > 0 {
            missed.push(Missed {
                process: e.name.to_string(),
                count: lost,
            });
        }
        merged.extend(buf.drain(..).map(|l| (l.meta.wall_us, idx, l)));
    }
    // Capture order across processes; within one process the sort keeps seq order.
    merged.sort_by_key(|(t, i, l)| (*t, *i, l.meta.seq));
    let range = if forward {
        0..merged.len().min(n)
    } else {
        merged.len().saturating_sub(n)..merged.len()
    };
    let lines = merged[range]
        .iter()
        .map(|(_, i, l)| wire_line(&entries[*i].name, l))
        .collect();
    to_raw(&LogsResult { lines, missed })
}
