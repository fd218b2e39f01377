//! The D-Bus control plane: bus name `io.github.brummer.Brummer1` on the system bus (system
//! mode) or the session bus (`--user`), a manager object with an ObjectManager, and one
//! object per program. Everything the socket offers except logs.
//!
//! `connect` runs before any program starts (so `--dbus=on` fails early); `serve` runs once
//! the registry is loaded: it subscribes to the event bus, exports every object and only then
//! requests the name, then hands the subscription to the forwarder task (`forward.rs`), which
//! turns events into signals. Reads go straight to cells and the registry; mutations go
//! through `crate::ops` like the socket's, and their `OpError`s become named D-Bus errors
//! (`error.rs`). Nothing here can make a supervisor wait: the
//! forwarder is one more bounded subscriber of the event bus, and a slow or dead bus only
//! makes it fall behind (it then re-reads current state).

mod error;
pub mod escape;
mod forward;
mod objects;

use crate::mode::Mode;
use crate::state::State;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use zbus::{Connection, OwnedObjectPath, connection};

pub use error::BusError;
pub use objects::{Manager, ProcessObject, Props};

/// The well-known bus name.
pub const BUS_NAME: &str = "io.github.brummer.Brummer1";
/// The manager object; it also carries `org.freedesktop.DBus.ObjectManager`.
pub const MANAGER_PATH: &str = "/io/github/brummer/Brummer1";
/// Prefix of the per-program objects.
pub const PROCESS_PATH_PREFIX: &str = "/io/github/brummer/Brummer1/process/";
pub const MANAGER_INTERFACE: &str = "io.github.brummer.Brummer1.Manager";
pub const PROCESS_INTERFACE: &str = "io.github.brummer.Brummer1.Process";

/// How long connecting to the bus may take before `auto` gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `--dbus=auto|on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DbusMode {
    /// Use the bus when it is reachable; otherwise log one warning and run without it.
    #[default]
    Auto,
    /// Fail to start without the bus.
    On,
    Off,
}

#[derive(Debug, Clone, Default)]
pub struct DbusOptions {
    pub mode: DbusMode,
    /// A bus address to use instead of the system/session bus (tests, containers).
    pub address: Option<String>,
}

/// The zbus error is part of the message and deliberately not a `#[source]`: its own
/// Display already includes its cause, so anyhow's `{:#}` chain would print it twice.
#[derive(Debug, Error)]
pub enum DbusError {
    #[error("cannot connect to the {bus}: {cause} (run with --dbus=off to go without D-Bus)")]
    Connect { bus: String, cause: zbus::Error },
    #[error(
        "cannot connect to the {bus}: timed out after {secs} s (run with --dbus=off to go without D-Bus)"
    )]
    Timeout { bus: String, secs: u64 },
    #[error("cannot export the D-Bus objects: {0}")]
    Export(zbus::Error),
    #[error(
        "cannot own the bus name {BUS_NAME}: {0} (is another brummerd running, or does the bus policy not allow it?)"
    )]
    Name(zbus::Error),
}

/// The object path of program `name`.
pub fn process_path(name: &str) -> OwnedObjectPath {
    let path = format!("{PROCESS_PATH_PREFIX}{}", escape::escape(name));
    // An escaped label only holds [A-Za-z0-9_], so the path is always valid.
    OwnedObjectPath::try_from(path).unwrap_or_else(|_| {
        OwnedObjectPath::try_from(MANAGER_PATH).expect("the manager path is a valid object path")
    })
}

fn bus_label(opts: &DbusOptions, mode: Mode) -> String {
    match (&opts.address, mode) {
        (Some(a), _) => format!("D-Bus bus at {a}"),
        (None, Mode::System) => "D-Bus system bus".to_owned(),
        (None, Mode::User) => "D-Bus session bus".to_owned(),
    }
}

/// Connects to the bus the options name. `Ok(None)` when D-Bus is off, or unreachable in
/// `auto` mode (after one warning); an error only in `on` mode.
pub async fn connect(opts: &DbusOptions, mode: Mode) -> Result<Option<Connection>, DbusError> {
    if opts.mode == DbusMode::Off {
        return Ok(None);
    }
    let builder = match (&opts.address, mode) {
        (Some(a), _) => connection::Builder::address(a.as_str()),
        (None, Mode::System) => connection::Builder::system(),
        (None, Mode::User) => connection::Builder::session(),
    };
    let bus = bus_label(opts, mode);
    let err = match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(c)) => return Ok(Some(c)),
        Ok(Err(cause)) => DbusError::Connect { bus, cause },
        Err(_) => DbusError::Timeout {
            bus,
            secs: CONNECT_TIMEOUT.as_secs(),
        },
    };
    match opts.mode {
        DbusMode::On => Err(err),
        _ => {
            tracing::warn!(cause = %err, "running without D-Bus");
            Ok(None)
        }
    }
}

/// Exports the manager, the ObjectManager and one object per program, then requests the
/// name and starts the forwarder, which holds the connection until the shutdown token ends
/// it.
pub async fn serve(daemon: Arc<State>, conn: Connection) -> Result<(), DbusError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, serve_inner(daemon, conn)).await {
        Ok(r) => r,
        Err(_) => Err(DbusError::Timeout {
            bus: "D-Bus bus (exporting objects, requesting the name)".to_owned(),
            secs: CONNECT_TIMEOUT.as_secs(),
        }),
    }
}

async fn serve_inner(daemon: Arc<State>, conn: Connection) -> Result<(), DbusError> {
    // Subscribed before the objects are read, so nothing between the two is lost.
    let sub = daemon.bus().subscribe(forward::QUEUE);
    let server = conn.object_server();
    server
        .at(
            MANAGER_PATH,
            Manager {
                daemon: daemon.clone(),
            },
        )
        .await
        .map_err(DbusError::Export)?;
    server
        .at(MANAGER_PATH, zbus::fdo::ObjectManager)
        .await
        .map_err(DbusError::Export)?;
    let mut fwd = forward::Forwarder::new(daemon.clone(), conn.clone());
    fwd.sync_objects(false).await.map_err(DbusError::Export)?;
    conn.request_name(BUS_NAME).await.map_err(DbusError::Name)?;
    tracing::info!(
        name = BUS_NAME,
        path = MANAGER_PATH,
        "D-Bus control plane ready"
    );
    daemon.shutdown().spawn(fwd.run(sub));
    Ok(())
}
