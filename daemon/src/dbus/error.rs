//! `BusError`: an [`ErrorCode`] plus the same human message the socket (and so the CLI)
//! gives, sent as the named D-Bus error `ErrorCode::dbus_name()` returns. An operation's
//! `OpError` maps through its own code, so every failure has its own name.

use brummer_proto::{ErrorCode, RpcError};
use zbus::DBusError;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BusError {
    pub code: ErrorCode,
    pub message: String,
}

impl BusError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> BusError {
        BusError {
            code,
            message: message.into(),
        }
    }
}

impl From<RpcError> for BusError {
    fn from(e: RpcError) -> BusError {
        BusError::new(e.kind().unwrap_or(ErrorCode::Internal), e.message)
    }
}

impl From<crate::ops::OpError> for BusError {
    fn from(e: crate::ops::OpError) -> BusError {
        BusError::new(e.code(), e.to_string())
    }
}

impl From<zbus::Error> for BusError {
    fn from(e: zbus::Error) -> BusError {
        BusError::new(ErrorCode::Internal, format!("D-Bus: {e}"))
    }
}

impl From<zbus::fdo::Error> for BusError {
    fn from(e: zbus::fdo::Error) -> BusError {
        BusError::new(ErrorCode::Internal, format!("D-Bus: {e}"))
    }
}

impl DBusError for BusError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name()).build(&(self.message.as_str(),))
    }

    fn name(&self) -> ErrorName<'_> {
        // Every name is checked to be valid by the test below.
        ErrorName::from_static_str_unchecked(self.code.dbus_name())
    }

    fn description(&self) -> Option<&str> {
        Some(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_valid_error_name() {
        for c in ErrorCode::ALL {
            assert!(
                ErrorName::try_from(c.dbus_name()).is_ok(),
                "{}",
                c.dbus_name()
            );
        }
        let e = BusError::from(RpcError::no_such_process("wbe", Some("web")));
        assert_eq!(
            e.name().as_str(),
            "io.github.brummer.Brummer1.Error.NoSuchProcess"
        );
        assert_eq!(
            e.description(),
            Some(r#"no process named "wbe" (did you mean "web"?)"#)
        );
    }
}
