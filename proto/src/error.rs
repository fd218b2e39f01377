//! The one error vocabulary of brummer: each [`ErrorCode`] maps to a JSON-RPC code, a D-Bus
//! error name and a brummerctl exit code, each in exactly one function below.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The line is not JSON, or not UTF-8.
    ParseError,
    /// Valid JSON but not a JSON-RPC 2.0 request object.
    InvalidRequest,
    /// Unknown method.
    MethodNotFound,
    /// Params missing, of the wrong type, or with unknown fields.
    InvalidParams,
    /// A bug or an unexpected OS failure inside the daemon.
    Internal,
    /// A process name that is not in the registry (data: `name`, `suggestion`).
    NoSuchProcess,
    /// The caller's uid may read but not change (SO_PEERCRED / D-Bus credentials).
    PermissionDenied,
    /// The operation was tried and failed (spawn error, stop timed out, ...).
    OperationFailed,
    /// A request line longer than [`crate::MAX_LINE`].
    RequestTooLarge,
    /// A reload whose configuration failed to load; the running config is kept.
    ConfigInvalid,
    /// The daemon is shutting down and takes no new work.
    ShuttingDown,
    /// A subscription id that this connection does not hold.
    NoSuchSubscription,
    /// A start of one program that already runs (D-Bus only: the socket answers such a
    /// start with success and the note "already running").
    AlreadyRunning,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::Internal,
        ErrorCode::NoSuchProcess,
        ErrorCode::PermissionDenied,
        ErrorCode::OperationFailed,
        ErrorCode::RequestTooLarge,
        ErrorCode::ConfigInvalid,
        ErrorCode::ShuttingDown,
        ErrorCode::NoSuchSubscription,
        ErrorCode::AlreadyRunning,
    ];

    /// The JSON-RPC `error.code`. Standard codes for protocol errors, -32001.. for ours.
    pub fn rpc_code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
            ErrorCode::NoSuchProcess => -32001,
            ErrorCode::PermissionDenied => -32002,
            ErrorCode::OperationFailed => -32003,
            ErrorCode::RequestTooLarge => -32004,
            ErrorCode::ConfigInvalid => -32005,
            ErrorCode::ShuttingDown => -32006,
            ErrorCode::NoSuchSubscription => -32007,
            ErrorCode::AlreadyRunning => -32008,
        }
    }

    pub fn from_rpc_code(code: i64) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.rpc_code() == code)
    }

    /// The D-Bus error name (`io.github.brummer.Brummer1.Error.*`).
    pub fn dbus_name(self) -> &'static str {
        match self {
            ErrorCode::ParseError | ErrorCode::InvalidRequest | ErrorCode::InvalidParams => {
                "io.github.brummer.Brummer1.Error.InvalidArgs"
            }
            ErrorCode::MethodNotFound => "io.github.brummer.Brummer1.Error.UnknownMethod",
            ErrorCode::Internal => "io.github.brummer.Brummer1.Error.Internal",
            ErrorCode::NoSuchProcess => "io.github.brummer.Brummer1.Error.NoSuchProcess",
            ErrorCode::PermissionDenied => "io.github.brummer.Brummer1.Error.PermissionDenied",
            ErrorCode::OperationFailed => "io.github.brummer.Brummer1.Error.Failed",
            ErrorCode::RequestTooLarge => "io.github.brummer.Brummer1.Error.InvalidArgs",
            ErrorCode::ConfigInvalid => "io.github.brummer.Brummer1.Error.ConfigInvalid",
            ErrorCode::ShuttingDown => "io.github.brummer.Brummer1.Error.ShuttingDown",
            ErrorCode::NoSuchSubscription => "io.github.brummer.Brummer1.Error.InvalidArgs",
            ErrorCode::AlreadyRunning => "io.github.brummer.Brummer1.Error.AlreadyRunning",
        }
    }

    /// brummerctl's exit code when the daemon answers with this error
    /// (0 ok, 1 failed, 2 usage, 3 unreachable, 4 not found, 5 permission denied).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::NoSuchProcess => 4,
            ErrorCode::PermissionDenied => 5,
            ErrorCode::ShuttingDown => 3,
            _ => 1,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A JSON-RPC error object: `{"code": -32001, "message": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            code: code.rpc_code(),
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    /// `no process named "wbe" (did you mean "web"?)`, with `data: {name, suggestion}`.
    pub fn no_such_process(name: &str, suggestion: Option<&str>) -> RpcError {
        let message = match suggestion {
            Some(s) => format!("no process named {name:?} (did you mean {s:?}?)"),
            None => format!("no process named {name:?}"),
        };
        RpcError::new(ErrorCode::NoSuchProcess, message)
            .with_data(serde_json::json!({ "name": name, "suggestion": suggestion }))
    }

    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_rpc_code(self.code)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_roundtrip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_rpc_code(c.rpc_code()), Some(c));
            assert!(
                c.dbus_name()
                    .starts_with("io.github.brummer.Brummer1.Error.")
            );
            assert!((1..=5).contains(&c.exit_code()));
        }
    }

    #[test]
    fn no_such_process_message() {
        let e = RpcError::no_such_process("wbe", Some("web"));
        assert_eq!(e.message, r#"no process named "wbe" (did you mean "web"?)"#);
        assert_eq!(e.kind(), Some(ErrorCode::NoSuchProcess));
    }
}
