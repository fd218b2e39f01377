//! The two files' formats (JSON, versioned by a `"format"` field) and how a file read from
//! disk is judged: current, torn (not JSON of the expected shape), or written by a newer
//! brummerd. Pure: no I/O, so every case is a unit test.
//!
//! Runtime state (`FORMAT` 1), beside the control socket:
//!
//! ```json
//! {"format": 1, "daemon": {"pid": 4242, "start": 987654},
//!  "programs": {"web": {"run": {"pid": 4250, "start": 987700, "pgid": 4250,
//!                                "generation": 3, "stop_signal": 15, "stop_timeout_ms": 10000,
//!                                "fds": ["web.out", "web.err", "web.pid"]},
//!                       "desired": "started"}}}
//! ```
//!
//! Enable overrides (`FORMAT` 1), in the state directory:
//!
//! ```json
//! {"format": 1, "enabled": {"web": true, "batch": false}}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format this brummerd writes and reads.
pub const FORMAT: u32 = 1;

/// What the user asked of a program by hand (`start`, `stop`, `restart`), kept until
/// reboot; `None` in a record means nothing was asked since the runtime directory was
/// created, and the enable setting decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manual {
    Started,
    Stopped,
}

/// A running child as the runtime state records it: enough to find it again after
/// brummerd died (pid + start time against pid reuse, group for its tree) and to stop it
/// as its program would have been stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub pid: i32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22).
    pub start: u64,
    pub pgid: i32,
    pub generation: u64,
    pub stop_signal: i32,
    pub stop_timeout_ms: u64,
    /// The names of the run's descriptors in systemd's file descriptor store (`fdstore`),
    /// when they are kept there: what a brummerd started after a crash re-adopts it by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Manual>,
}

impl ProgramRecord {
    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.desired.is_none()
    }
}

/// The brummerd process that wrote a runtime state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonId {
    pub pid: i32,
    pub start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeDoc {
    pub format: u32,
    pub daemon: Option<DaemonId>,
    #[serde(default)]
    pub programs: BTreeMap<String, ProgramRecord>,
}

impl RuntimeDoc {
    pub fn new(daemon: Option<DaemonId>) -> RuntimeDoc {
        RuntimeDoc {
            format: FORMAT,
            daemon,
            programs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnabledDoc {
    pub format: u32,
    #[serde(default)]
    pub enabled: BTreeMap<String, bool>,
}

impl Default for EnabledDoc {
    fn default() -> Self {
        EnabledDoc {
            format: FORMAT,
            enabled: BTreeMap::new(),
        }
    }
}

/// Why a file's content cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("not valid state (torn or edited by hand?): {0}")]
    Torn(String),
    #[error("format {0} is newer than this brummerd reads ({FORMAT})")]
    Newer(u64),
    #[error("format {0} is unknown (this brummerd reads {FORMAT})")]
    Unknown(u64),
}

/// Only the version field, so a future format's other fields cannot make the version
/// unreadable.
#[derive(Deserialize)]
struct Version {
    format: serde_json::Value,
}

/// Judges and decodes a file's bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Unusable> {
    let v: Version = serde_json::from_slice(bytes).map_err(|e| Unusable::Torn(e.to_string()))?;
    match v.format.as_u64() {
        Some(n) if n == u64::from(FORMAT) => {}
        Some(n) if n > u64::from(FORMAT) => return Err(Unusable::Newer(n)),
        Some(n) => return Err(Unusable::Unknown(n)),
        None => {
            return Err(Unusable::Torn(format!(
                "\"format\" is {}, not a number",
                v.format
            )));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| Unusable::Torn(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_round_trip_and_shape() {
        let mut doc = RuntimeDoc::new(Some(DaemonId { pid: 7, start: 9 }));
        doc.programs.insert(
            "web".into(),
            ProgramRecord {
                run: Some(Run {
                    pid: 10,
                    start: 11,
                    pgid: 10,
                    generation: 2,
                    stop_signal: 15,
                    stop_timeout_ms: 10_000,
                    fds: vec!["web.out".into(), "web.err".into(), "web.pid".into()],
                }),
                desired: Some(Manual::Started),
            },
        );
        let bytes = serde_json::to_vec(&doc).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"format":1,"#), "{text}");
        assert!(text.contains(r#""desired":"started""#), "{text}");
        assert_eq!(decode::<RuntimeDoc>(&bytes).unwrap(), doc);
    }

    #[test]
    fn torn_newer_and_unknown_files_are_told_apart() {
        let full = br#"{"format":1,"daemon":null,"programs":{"web":{"desired":"stopped"}}}"#;
        for cut in 0..full.len() - 1 {
            let e = decode::<RuntimeDoc>(&full[..cut]).unwrap_err();
            assert!(matches!(e, Unusable::Torn(_)), "cut at {cut}: {e:?}");
        }
        assert!(decode::<RuntimeDoc>(full).is_ok());
        let e = decode::<RuntimeDoc>(br#"{"format":7,"whatever":[1,2]}"#).unwrap_err();
        assert_eq!(e, Unusable::Newer(7));
        assert_eq!(
            e.to_string(),
            "format 7 is newer than this brummerd reads (1)"
        );
        assert_eq!(
            decode::<EnabledDoc>(br#"{"format":0}"#).unwrap_err(),
            Unusable::Unknown(0)
        );
        assert!(matches!(
            decode::<EnabledDoc>(br#"{"format":"1"}"#).unwrap_err(),
            Unusable::Torn(_)
        ));
        assert!(matches!(
            decode::<EnabledDoc>(br#"{"format":1,"enabled":{"web":"yes"}}"#).unwrap_err(),
            Unusable::Torn(_)
        ));
    }
}
