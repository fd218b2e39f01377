//! Every method: its params (what `params` must hold) and its result (what `result` holds).
//!
//! Params objects reject unknown fields, so a typo is an `InvalidParams` error rather than a
//! silently ignored option. Absent or `null` params mean "all defaults".

use crate::error::{ErrorCode, RpcError};
use crate::state::{ProcessState, Stream};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Method names, in the order `docs/protocol.md` documents them.
pub const METHODS: [&str; 16] = [
    "hello",
    "version",
    "list",
    "status",
    "start",
    "stop",
    "restart",
    "enable",
    "disable",
    "logs",
    "follow",
    "subscribe",
    "unsubscribe",
    "reload",
    "daemon-reexec",
    "metrics",
];

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Hello(HelloParams),
    Version,
    List,
    Status(Selector),
    Start(Selector),
    Stop(Selector),
    Restart(Selector),
    Enable(EnableParams),
    Disable(EnableParams),
    Logs(LogsParams),
    Follow(FollowParams),
    Subscribe(SubscribeParams),
    Unsubscribe(UnsubscribeParams),
    Reload,
    /// Replace the daemon's image with its binary on disk, keeping every program.
    DaemonReexec,
    /// Every program's and the daemon's figures in the Prometheus text format.
    Metrics,
}

impl Request {
    pub fn decode(method: &str, params: Option<Value>) -> Result<Request, RpcError> {
        Ok(match method {
            "hello" => Request::Hello(params_of(method, params)?),
            "version" => {
                params_of::<Empty>(method, params)?;
                Request::Version
            }
            "list" => {
                params_of::<Empty>(method, params)?;
                Request::List
            }
            "status" => Request::Status(params_of(method, params)?),
            "start" => Request::Start(params_of(method, params)?),
            "stop" => Request::Stop(params_of(method, params)?),
            "restart" => Request::Restart(params_of(method, params)?),
            "enable" => Request::Enable(params_of(method, params)?),
            "disable" => Request::Disable(params_of(method, params)?),
            "logs" => Request::Logs(params_of(method, params)?),
            "follow" => Request::Follow(params_of(method, params)?),
            "subscribe" => Request::Subscribe(params_of(method, params)?),
            "unsubscribe" => Request::Unsubscribe(params_of(method, params)?),
            "reload" => {
                params_of::<Empty>(method, params)?;
                Request::Reload
            }
            "daemon-reexec" => {
                params_of::<Empty>(method, params)?;
                Request::DaemonReexec
            }
            "metrics" => {
                params_of::<Empty>(method, params)?;
                Request::Metrics
            }
            other => {
                let hint = crate::name::suggest(other, METHODS)
                    .map(|m| format!(" (did you mean {m:?}?)"))
                    .unwrap_or_default();
                return Err(RpcError::new(
                    ErrorCode::MethodNotFound,
                    format!("unknown method {other:?}{hint}"),
                )
                .with_data(serde_json::json!({ "methods": METHODS })));
            }
        })
    }

    /// Method name and params as they go on the wire (used by clients).
    pub fn encode(&self) -> (&'static str, Value) {
        fn v<T: Serialize>(t: &T) -> Value {
            serde_json::to_value(t).unwrap_or(Value::Null)
        }
        match self {
            Request::Hello(p) => ("hello", v(p)),
            Request::Version => ("version", Value::Object(Default::default())),
            Request::List => ("list", Value::Object(Default::default())),
            Request::Status(p) => ("status", v(p)),
            Request::Start(p) => ("start", v(p)),
            Request::Stop(p) => ("stop", v(p)),
            Request::Restart(p) => ("restart", v(p)),
            Request::Enable(p) => ("enable", v(p)),
            Request::Disable(p) => ("disable", v(p)),
            Request::Logs(p) => ("logs", v(p)),
            Request::Follow(p) => ("follow", v(p)),
            Request::Subscribe(p) => ("subscribe", v(p)),
            Request::Unsubscribe(p) => ("unsubscribe", v(p)),
            Request::Reload => ("reload", Value::Object(Default::default())),
            Request::DaemonReexec => ("daemon-reexec", Value::Object(Default::default())),
            Request::Metrics => ("metrics", Value::Object(Default::default())),
        }
    }

    /// Whether the method changes anything (and so needs a privileged caller).
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Request::Start(_)
                | Request::Stop(_)
                | Request::Restart(_)
                | Request::Enable(_)
                | Request::Disable(_)
                | Request::Reload
                | Request::DaemonReexec
        )
    }
}

fn params_of<T: DeserializeOwned + Default>(method: &str, p: Option<Value>) -> Result<T, RpcError> {
    match p {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v @ Value::Object(_)) => serde_json::from_value(v).map_err(|e| {
            RpcError::new(
                ErrorCode::InvalidParams,
                format!("invalid params for {method:?}: {e}"),
            )
        }),
        Some(_) => Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {method:?}: params must be an object"),
        )),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `hello`: `{"protocol": 1, "client": "brummerctl 0.1.0"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    #[serde(default)]
    pub protocol: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Result of `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloResult {
    pub protocol: u32,
    pub daemon: String,
    /// "system" or "user".
    pub mode: String,
    pub pid: u32,
    /// Whether this connection may call mutating methods.
    pub can_write: bool,
}

/// Result of `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionResult {
    pub version: String,
    pub protocol: u32,
}

/// Which processes a call is about: the listed names, or every process when `all` is set.
/// For `status`, no names means all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Selector {
    pub fn names<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Selector {
        Selector {
            names: names.into_iter().map(Into::into).collect(),
            all: false,
        }
    }
    pub fn all() -> Selector {
        Selector {
            names: vec![],
            all: true,
        }
    }
}

/// `enable` / `disable`: the programs (as a [`Selector`]), and whether to start (enable) or
/// stop (disable) them now as well: `{"names": ["web"], "now": true}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableParams {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

impl EnableParams {
    pub fn selector(&self) -> Selector {
        Selector {
            names: self.names.clone(),
            all: self.all,
        }
    }
}

/// One program as `list` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    pub name: String,
    pub state: ProcessState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResult {
    pub processes: Vec<ListEntry>,
}

/// Everything `status` knows about one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub state: ProcessState,
    /// Pid of the running child; null when none.
    pub pid: Option<u32>,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Spawns since the daemon started (every log line carries the one it came from).
    pub generation: u64,
    /// Exit code of the last run, when it exited normally.
    pub exit_code: Option<i32>,
    /// Signal number that ended the last run, when a signal did.
    pub exit_signal: Option<i32>,
    /// When the current (or last) run started, RFC 3339 UTC.
    pub started_at: Option<String>,
    /// The same, in microseconds since the epoch.
    pub started_at_us: Option<u64>,
    /// Seconds the current run has been up, when running.
    pub uptime_secs: Option<f64>,
    /// In backoff: when the next attempt is due, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// The last spawn or stop failure, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Autostart as configured.
    pub autostart: bool,
    /// Whether the program starts with brummerd: the `enable`/`disable` override when
    /// there is one, else `autostart` (systemctl's enabled/disabled).
    #[serde(default)]
    pub enabled: bool,
    /// Restart policy as configured (`never`, `on-failure`, `always`).
    pub restart_policy: String,
    /// Log counters of this program.
    pub logs: LogCounters,
    /// http(s) URLs found in the program's output (each once, oldest first).
    #[serde(default)]
    pub urls: Vec<String>,
    /// What holds the program's processes together, so that a stop reaches them all:
    /// `"process-group"` (its process group, session and descendants found in /proc) or
    /// `"cgroup"`. Absent from daemons older than issue 18.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<String>,
    /// What the running program costs, from the last sample; absent while no child runs
    /// (and until the first sample of a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ProcessMetrics>,
    /// How the program becomes ready: `started`, `notify`, or a probe's kind (`exec`,
    /// `http`, `tcp`, `log`).
    #[serde(default = "ready_started")]
    pub ready: String,
    /// The program's own words about itself (STATUS= of a notify program), or what its
    /// start waits for; `null` when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// The newest readiness or health probe result of the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeResult>,
    /// While `starting` without a pid: the programs its start waits for (to be running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Programs this one requires, as configured: started first, and stopping one of them
    /// stops this one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Programs this one wants: started first; their failure does not stop its start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wants: Vec<String>,
    /// Programs this one starts after when they start too (ordering only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

fn ready_started() -> String {
    "started".to_owned()
}

/// One readiness or health probe result (`status`'s `last_probe`).
///
/// ```json
/// {"phase": "health", "probe": "http", "ok": false,
///  "detail": "HTTP 500 from http://127.0.0.1:8080/health",
///  "time": "2026-12-02T18:00:00.000000Z", "time_us": 1796320800000000}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// `ready` (while `starting`) or `health` (while `running`).
    pub phase: String,
    /// `exec`, `http`, `tcp` or `log`.
    pub probe: String,
    pub ok: bool,
    /// What was seen, in words: "HTTP 200 from ...", "exit code 1", "connection refused".
    pub detail: String,
    /// When the result came, RFC 3339 UTC.
    pub time: String,
    /// The same, in microseconds since the epoch.
    pub time_us: u64,
}

/// A running program's resource use, sampled every 2 s over its whole process tree.
///
/// ```json
/// {"source": "proc", "sampled_at_us": 1795341600000000, "cpu_percent": 99.5,
///  "cpu_usage_ns": 12340000000, "memory_bytes": 54001664, "memory_peak_bytes": 54001664,
///  "tasks": 3, "io_read_bytes": 0, "io_write_bytes": 4096}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMetrics {
    /// Where the figures come from: `"proc"` (a walk of /proc over the program's tree) or
    /// `"cgroup"`.
    pub source: String,
    /// When the sample was taken, µs since the epoch (taken before the tree was read).
    pub sampled_at_us: u64,
    /// CPU used between the previous sample and this one, in percent of one CPU (200 is
    /// two CPUs busy); `null` on a run's first sample.
    pub cpu_percent: Option<f64>,
    /// CPU time the current run has used, user and system, its exited children included
    /// (systemd's CPUUsageNSec). Starts again at each run.
    pub cpu_usage_ns: u64,
    /// Memory of the program now: its cgroup's `memory.current` (source `cgroup`), or the
    /// sum of its processes' RSS (source `proc`).
    pub memory_bytes: u64,
    /// The largest memory use of this run: the cgroup's `memory.peak`, or the largest
    /// `memory_bytes` sampled.
    pub memory_peak_bytes: u64,
    /// Tasks (threads) of the program (systemd's TasksCurrent; `pids.current`).
    pub tasks: u32,
    /// Bytes the tree made the storage layer read (`read_bytes` of /proc/PID/io);
    /// `null` when brummerd may not read it.
    #[serde(default)]
    pub io_read_bytes: Option<u64>,
    /// Bytes the tree made the storage layer write (`write_bytes`).
    #[serde(default)]
    pub io_write_bytes: Option<u64>,
    /// Pressure stall information of the program's cgroup: the share of the last 10 s in
    /// which some of its tasks waited for CPU, memory, IO (`some avg10` of cpu.pressure,
    /// memory.pressure, io.pressure), in percent; absent without a cgroup or PSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure: Option<f64>,
}

/// `metrics`: the Prometheus text exposition format (version 0.0.4), the same text the
/// optional HTTP listener (`[daemon] metrics_listen`) serves at `/metrics`.
///
/// ```json
/// {"text": "# HELP brummer_up ...\n"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResult {
    pub text: String,
}

/// Per-process log counters (`status --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogCounters {
    pub lines: u64,
    /// Bytes captured, newlines included.
    pub bytes: u64,
    /// Lines that left the in-memory ring (still on disk).
    pub ring_evicted: u64,
    /// Failed disk log operations: writes (each try while the disk fails), rotations,
    /// making the log again (until 2026-12-02: bytes that could not be written).
    pub disk_errors: u64,
    /// Lines that never reached the disk log: the ring overwrote them while the disk
    /// failed. Readers are told of them as missed.
    #[serde(default)]
    pub disk_lost_lines: u64,
    /// What fails on the disk log now (full, read-only, deleted, cannot rotate); `null`
    /// while it is healthy.
    #[serde(default)]
    pub disk_failing: Option<String>,
    /// Disk log segments rotated since brummerd started.
    #[serde(default)]
    pub rotations: u64,
    /// Lines the URL/error scanners looked at.
    #[serde(default)]
    pub scanned: u64,
    /// Lines the scanners skipped because they fell behind (the ring overwrote them).
    #[serde(default)]
    pub scanner_skips: u64,
    /// `follow` streams now reading behind the ring (backfilled from disk).
    #[serde(default)]
    pub followers_behind: u64,
    /// Largest lag of a follower seen, in lines behind the newest line.
    #[serde(default)]
    pub follower_lag_max: u64,
    /// Lines followers asked for that were neither in memory nor on disk.
    #[serde(default)]
    pub follower_missed: u64,
    /// Lines captured but not on the disk log yet: the chunk being written, and the lines
    /// the ring keeps while the disk fails.
    #[serde(default)]
    pub disk_pending: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub processes: Vec<ProcessStatus>,
}

/// The outcome for one program of `start`, `stop`, `restart`, `enable` or `disable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpOutcome {
    pub name: String,
    pub ok: bool,
    /// Why it failed, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was already true, e.g. "already running"; for `enable`/`disable` what was done:
    /// "enabled", "already enabled", "enabled, started", "disabled, already stopped", ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub status: ProcessStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpResult {
    pub results: Vec<OpOutcome>,
}

/// `logs`: lines from memory and the disk log, merged in capture order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Processes to read; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Without `from_seq`/`since_us`: the last N lines (of the merge). With them: the first
    /// N from there on. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    /// Only lines with a sequence number >= this (forward from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Only lines captured at or after this time (µs since the epoch), forward from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_us: Option<u64>,
    /// Only lines captured at or before this time (µs since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_us: Option<u64>,
    /// Only lines matching this regular expression (Rust `regex` syntax, on the text with
    /// invalid UTF-8 replaced by U+FFFD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub process: String,
    /// Per-process sequence number, from 0, without gaps.
    pub seq: u64,
    /// Capture time, RFC 3339 UTC with microseconds.
    pub time: String,
    /// Capture time in microseconds since the epoch (for sorting and arithmetic).
    pub time_us: u64,
    pub stream: Stream,
    /// Pid of the child that wrote it.
    pub pid: u32,
    /// The line without its newline; invalid UTF-8 replaced by U+FFFD (see `lossy`).
    pub text: String,
    /// True when `text` had invalid UTF-8 replaced; the disk log keeps the raw bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy: bool,
    /// True when the line was longer than the split limit and continues in the next one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsResult {
    pub lines: Vec<LogLine>,
    /// Per process: lines asked for that are neither in memory nor on disk any more
    /// (rotated away, or lost to a disk error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed: Vec<Missed>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Missed {
    pub process: String,
    pub count: u64,
}

/// `follow`: stream lines as `log` notifications until `unsubscribe` or disconnect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowParams {
    /// Processes to follow; empty means all, including processes added later by a reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Send the last N lines of each process first. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Start with the lines captured at or after this time (µs since the epoch) instead
    /// of the last `lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_us: Option<u64>,
    /// Only lines matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
    /// Resume: start these processes at these sequence numbers (the next line a client
    /// that lost its connection wants), whatever `lines` and `since_us` say. Lines no
    /// longer in memory or on disk are reported as `missed`, with the exact count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resume: BTreeMap<String, u64>,
}

/// `subscribe`: stream events as `event` notifications.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Resume after this event's seq (a client that lost its connection): events since
    /// then that the daemon no longer has are reported as one `missed` notification with
    /// the exact count, right after the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

/// `daemon-reexec`: the answer, sent before the daemon replaces its image; the
/// connection then closes. A client reconnects to talk to the new image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReexecResult {
    /// The daemon's pid, which the new image keeps.
    pub pid: u32,
    /// The version of the image that answers (the old one).
    pub version: String,
    /// The binary that will be executed.
    pub binary: String,
}

/// Result of `follow` and `subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    pub subscription: u64,
    /// For `subscribe`: the sequence number of the last event published before this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// For `follow`: per process, the sequence number of the first line the stream sends
    /// (what a client resumes from if it loses the connection before any line came).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cursors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    pub subscription: u64,
}

/// Result of `unsubscribe`: the stream is ended (`ok` is always true; an unknown id is an
/// error instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeResult {
    pub ok: bool,
}

/// Result of `reload`: which programs changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadResult {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_defaults_and_rejects_unknown_fields() {
        assert_eq!(
            Request::decode("status", None).unwrap(),
            Request::Status(Selector::default())
        );
        assert_eq!(
            Request::decode("start", Some(json!({"names": ["web"]}))).unwrap(),
            Request::Start(Selector::names(["web"]))
        );
        let e = Request::decode("start", Some(json!({"nmes": ["web"]}))).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
        let e = Request::decode("start", Some(json!([1]))).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
        let e = Request::decode("stauts", None).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::MethodNotFound));
        assert!(
            e.message.contains("did you mean \"status\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let reqs = [
            Request::Hello(HelloParams {
                protocol: Some(1),
                client: Some("t".into()),
            }),
            Request::Version,
            Request::List,
            Request::Status(Selector::names(["a", "b"])),
            Request::Start(Selector::all()),
            Request::Stop(Selector::names(["a"])),
            Request::Restart(Selector::all()),
            Request::Enable(EnableParams {
                names: vec!["a".into()],
                all: false,
                now: true,
            }),
            Request::Disable(EnableParams {
                names: vec![],
                all: true,
                now: false,
            }),
            Request::Logs(LogsParams {
                names: vec!["a".into()],
                lines: Some(5),
                from_seq: None,
                stream: Some(Stream::Stderr),
                since_us: Some(7),
                until_us: None,
                grep: Some("x".into()),
            }),
            Request::Follow(FollowParams::default()),
            Request::Subscribe(SubscribeParams::default()),
            Request::Unsubscribe(UnsubscribeParams { subscription: 3 }),
            Request::Reload,
        ];
        for r in reqs {
            let (m, p) = r.encode();
            assert_eq!(Request::decode(m, Some(p)).unwrap(), r);
        }
    }

    #[test]
    fn mutating_methods() {
        assert!(Request::Start(Selector::all()).is_mutating());
        assert!(Request::Reload.is_mutating());
        assert!(!Request::Status(Selector::all()).is_mutating());
        assert!(!Request::Follow(FollowParams::default()).is_mutating());
    }
}
