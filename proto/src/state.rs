//! Process states and output streams as they appear on the wire (kebab-case strings).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a program is in its life cycle.
///
/// ```
/// # use brummer_proto::ProcessState;
/// assert_eq!(serde_json::to_string(&ProcessState::Backoff).unwrap(), r#""backoff""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum ProcessState {
    /// Not running and not going to run until asked.
    #[default]
    Stopped = 0,
    /// Spawn in progress.
    Starting = 1,
    /// The child exists.
    Running = 2,
    /// Stop signal sent, waiting for the child and its descendants to go.
    Stopping = 3,
    /// The child ended on its own and the restart policy does not bring it back.
    Exited = 4,
    /// The child ended and will be started again at `next_attempt`.
    Backoff = 5,
    /// The start limit was hit; only an explicit start brings it back.
    Failed = 6,
}

impl ProcessState {
    pub const ALL: [ProcessState; 7] = [
        ProcessState::Stopped,
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Stopping,
        ProcessState::Exited,
        ProcessState::Backoff,
        ProcessState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Stopped => "stopped",
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Stopping => "stopping",
            ProcessState::Exited => "exited",
            ProcessState::Backoff => "backoff",
            ProcessState::Failed => "failed",
        }
    }

    /// Inverse of `as u8`, for packed status words.
    pub fn from_u8(v: u8) -> Option<ProcessState> {
        ProcessState::ALL.get(v as usize).copied()
    }

    /// True while a child process may exist.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ProcessState::Starting | ProcessState::Running | ProcessState::Stopping
        )
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which pipe a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn from_u8(v: u8) -> Option<Stream> {
        match v {
            0 => Some(Stream::Stdout),
            1 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            other => Err(format!(
                "unknown stream {other:?}: expected stdout or stderr"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrips_through_u8_and_json() {
        for s in ProcessState::ALL {
            assert_eq!(ProcessState::from_u8(s as u8), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ProcessState>(&json).unwrap(), s);
        }
        assert_eq!(ProcessState::from_u8(7), None);
    }
}
