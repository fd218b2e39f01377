//! What `subscribe` and `follow` stream: events and log lines as JSON-RPC notifications.
//!
//! `{"jsonrpc":"2.0","method":"event","params":{"subscription":1,"seq":42,"type":"state-changed","process":"web","old":"running","new":"backoff",...}}`
//! `{"jsonrpc":"2.0","method":"log","params":{"subscription":2,"process":"web","seq":7,...}}`
//! `{"jsonrpc":"2.0","method":"missed","params":{"subscription":2,"process":"web","count":12}}`

use crate::methods::LogLine;
use crate::state::ProcessState;
use serde::{Deserialize, Serialize};

/// Notification method names.
pub const EVENT: &str = "event";
pub const LOG: &str = "log";
pub const MISSED: &str = "missed";

/// Something that happened in the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    StateChanged {
        process: String,
        old: ProcessState,
        new: ProcessState,
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_signal: Option<i32>,
        restarts: u32,
        /// Why, in words, when the change has a reason beyond the exit itself ("health
        /// check failed: HTTP 500 from ...", "requires db, which failed").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ProcessAdded {
        process: String,
    },
    ProcessRemoved {
        process: String,
    },
    UrlDetected {
        process: String,
        url: String,
        line_seq: u64,
    },
    ErrorDetected {
        process: String,
        line: String,
        line_seq: u64,
    },
    /// The program's status text changed (STATUS= of a notify program); `null` when it
    /// has none any more.
    StatusText {
        process: String,
        text: Option<String>,
    },
}

impl Event {
    pub fn process(&self) -> &str {
        match self {
            Event::StateChanged { process, .. }
            | Event::ProcessAdded { process }
            | Event::ProcessRemoved { process }
            | Event::UrlDetected { process, .. }
            | Event::ErrorDetected { process, .. }
            | Event::StatusText { process, .. } => process,
        }
    }
}

/// Params of an `event` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventParams {
    pub subscription: u64,
    /// Bus-wide sequence number: strictly increasing in delivery order.
    pub seq: u64,
    /// When the event was published, microseconds since the epoch.
    pub time_us: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Params of a `log` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LogParamsWire")]
pub struct LogParams {
    pub subscription: u64,
    #[serde(flatten)]
    pub line: LogLine,
}

/// `LogParams` as it is on the wire, the line's fields inline. Read through this rather
/// than through `#[serde(flatten)]`, which first collects every field of the object into
/// an intermediate map: a follower decodes one of these per line. Unknown fields are
/// ignored, as with flatten.
#[derive(Deserialize)]
struct LogParamsWire {
    subscription: u64,
    process: String,
    seq: u64,
    time: String,
    time_us: u64,
    stream: crate::Stream,
    pid: u32,
    text: String,
    #[serde(default)]
    lossy: bool,
    #[serde(default)]
    partial: bool,
}

impl From<LogParamsWire> for LogParams {
    fn from(w: LogParamsWire) -> LogParams {
        LogParams {
            subscription: w.subscription,
            line: LogLine {
                process: w.process,
                seq: w.seq,
                time: w.time,
                time_us: w.time_us,
                stream: w.stream,
                pid: w.pid,
                text: w.text,
                lossy: w.lossy,
                partial: w.partial,
            },
        }
    }
}

/// Params of a `missed` notification: items that were dropped for this subscriber because
/// it fell behind. `process` is set for log streams, absent for events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedParams {
    pub subscription: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_shape() {
        let p = EventParams {
            subscription: 1,
            seq: 9,
            time_us: 5,
            event: Event::StateChanged {
                process: "web".into(),
                old: ProcessState::Running,
                new: ProcessState::Backoff,
                pid: None,
                exit_code: Some(1),
                exit_signal: None,
                restarts: 2,
                reason: None,
            },
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "state-changed");
        assert_eq!(v["old"], "running");
        assert_eq!(v["seq"], 9);
        let back: EventParams = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn log_params_are_flat_on_the_wire_and_read_back() {
        let p = LogParams {
            subscription: 3,
            line: LogLine {
                process: "web".into(),
                seq: 7,
                time: "2026-11-23T12:00:00.000001Z".into(),
                time_us: 1,
                stream: crate::Stream::Stderr,
                pid: 42,
                text: "hi".into(),
                lossy: true,
                partial: false,
            },
        };
        let text = serde_json::to_string(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["subscription"], 3);
        assert_eq!(v["process"], "web");
        assert_eq!(v["lossy"], true);
        assert!(v.get("partial").is_none() && v.get("line").is_none(), "{v}");
        assert_eq!(serde_json::from_str::<LogParams>(&text).unwrap(), p);
        // A newer daemon's extra fields are ignored; flags absent are false.
        let newer = r#"{"subscription":1,"process":"a","seq":0,"time":"t","time_us":0,
            "stream":"stdout","pid":1,"text":"x","colour":"red"}"#;
        let q: LogParams = serde_json::from_str(newer).unwrap();
        assert_eq!(q.line.text, "x");
        assert!(!q.line.lossy && !q.line.partial);
    }
}
