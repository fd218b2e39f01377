//! `OpError`: why an operation failed, typed, so that each plane answers it in its own
//! form: the socket as a JSON-RPC error with a stable code, D-Bus as a named error.

use brummer_proto::{ErrorCode, RpcError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("no process named {name:?}{}", did_you_mean(.suggestion))]
    NoSuchProcess {
        name: String,
        suggestion: Option<String>,
    },
    #[error(
        "permission denied: uid {uid} may read but not change anything (needs root, uid {daemon_uid} or group brummer)"
    )]
    PermissionDenied { uid: u32, daemon_uid: u32 },
    #[error("brummerd is shutting down")]
    ShuttingDown,
    #[error("name at least one process, or set \"all\": true")]
    NothingSelected,
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// Each failed program with why, in the CLI's words (`web: failed: ...`).
    #[error("{}", failures(.0))]
    Failed(Vec<(String, String)>),
    #[error("too many reloads queued; try again")]
    ReloadBusy,
    #[error("reload failed, keeping the running configuration:\n{0}")]
    ConfigInvalid(String),
    /// A state file could not be written (the text names it and why).
    #[error("{0}")]
    StateFile(String),
    /// A re-exec refused before anything was handed over; the running image goes on.
    #[error("cannot re-execute brummerd, the running daemon goes on: {0}")]
    ReexecRefused(String),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

fn failures(f: &[(String, String)]) -> String {
    f.iter()
        .map(|(name, why)| format!("{name}: failed: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl OpError {
    /// The one code both planes derive their answer from.
    pub fn code(&self) -> ErrorCode {
        match self {
            OpError::NoSuchProcess { .. } => ErrorCode::NoSuchProcess,
            OpError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            OpError::ShuttingDown => ErrorCode::ShuttingDown,
            OpError::NothingSelected => ErrorCode::InvalidParams,
            OpError::AlreadyRunning(_) => ErrorCode::AlreadyRunning,
            OpError::Failed(_)
            | OpError::ReloadBusy
            | OpError::StateFile(_)
            | OpError::ReexecRefused(_) => ErrorCode::OperationFailed,
            OpError::ConfigInvalid(_) => ErrorCode::ConfigInvalid,
        }
    }
}

impl From<OpError> for RpcError {
    fn from(e: OpError) -> RpcError {
        match &e {
            OpError::NoSuchProcess { name, suggestion } => {
                RpcError::no_such_process(name, suggestion.as_deref())
            }
            _ => RpcError::new(e.code(), e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes() {
        let e = OpError::NoSuchProcess {
            name: "wbe".into(),
            suggestion: Some("web".into()),
        };
        assert_eq!(
            e.to_string(),
            r#"no process named "wbe" (did you mean "web"?)"#
        );
        let rpc = RpcError::from(e);
        assert_eq!(rpc.kind(), Some(ErrorCode::NoSuchProcess));
        assert_eq!(
            rpc.data.as_ref().map(|d| d["suggestion"].clone()),
            Some("web".into())
        );
        let f = OpError::Failed(vec![("a".into(), "x".into()), ("b".into(), "y".into())]);
        assert_eq!(f.to_string(), "a: failed: x; b: failed: y");
        assert_eq!(f.code(), ErrorCode::OperationFailed);
        assert_eq!(OpError::NothingSelected.code(), ErrorCode::InvalidParams);
        assert_eq!(
            OpError::AlreadyRunning("web".into()).code().dbus_name(),
            "io.github.brummer.Brummer1.Error.AlreadyRunning"
        );
    }
}
