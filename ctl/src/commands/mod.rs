//! One module per verb: build the request, call the daemon, render the result.
//!
//! Each `run` returns the exit code for a completed command (0, or 1 when some operation
//! failed) or a [`CtlError`] that `main_entry` prints. Rendering helpers are pure functions
//! tested beside their verb.

pub mod deps;
pub mod enable;
pub mod events;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod reexec;
pub mod reload;
pub mod resume;
pub mod status;
pub mod version;

use crate::client::Client;
use crate::exit::CtlError;
use crate::output::Printer;
use crate::socket::SocketChoice;
use brummer_proto::methods::Request;
use brummer_proto::rpc::Notification;

/// What every verb needs: where the daemon is, how to print.
pub struct Ctx {
    pub socket: SocketChoice,
    pub json: bool,
    /// Colours on stdout (a TTY and no `NO_COLOR`).
    pub color: bool,
    pub out: Printer<crate::output::Stdout>,
}

impl Ctx {
    pub fn connect(&self) -> Result<Client, CtlError> {
        Client::connect(&self.socket)
    }

    /// Connect, `hello` + `request` in one round trip, return the request's result.
    pub fn call(&self, request: Request) -> Result<serde_json::Value, CtlError> {
        let mut client = self.connect()?;
        let mut session = client.session(vec![request], &mut ignore_notifications)?;
        Ok(session.results.remove(0))
    }
}

/// For one-shot calls: notifications cannot come (nothing subscribed), ignore any.
pub fn ignore_notifications(_: Notification) -> Result<(), CtlError> {
    Ok(())
}
