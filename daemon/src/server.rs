//! The composition root and the top loop: builds the [`State`], loads the programs, brings
//! up the planes in the order clients rely on (D-Bus objects, then the bus name, then the
//! socket, then READY=1), runs reloads and reaps orphans until the shutdown future
//! resolves, then stops every program, drains their logs and ends every task through the
//! one shutdown token.
//!
//! Shutdown, in order: new work is refused (`State::begin_shutdown`, STOPPING=1); every
//! program is stopped in parallel, orphans reaped meanwhile; the capture tasks write what
//! they read (bounded); the token is triggered and every task (listener, connections,
//! streams, scanner, D-Bus forwarder, STATUS= task) ends at its next await; the server
//! waits for them (bounded) and removes the socket file.

use crate::clockwatch;
use crate::codepages;
use crate::config::{Config, LoadOptions};
use crate::control;
use crate::dbus::{self, DbusMode, DbusOptions};
use crate::logs::{self, scanner};
use crate::mode::Mode;
use crate::ops;
use crate::process::Command;
use crate::shutdown::Shutdown;
use crate::state::{ReloadRequest, State};
use crate::systemd::notify;
use brummer_proto::methods::ReloadResult;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long shutdown waits for captured output to be written after every program stopped.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the tasks to end once the token is triggered. They end at
/// their next await point, so this only bounds a task stuck in a blocking call.
const TASKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything `run` needs besides the loaded config.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// How to load the config again on reload.
    pub load: LoadOptions,
    pub socket: PathBuf,
    /// Remove the socket file at shutdown: true when we bound it, false when systemd passed
    /// it (socket activation: the `.socket` unit owns the file and keeps listening).
    pub unlink_socket: bool,
    pub log_dir: PathBuf,
    pub dbus: DbusOptions,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot set up the socket listener: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the log threads: {0}")]
    LogThreads(#[source] std::io::Error),
    #[error(transparent)]
    Dbus(#[from] dbus::DbusError),
}

/// Runs the daemon until `shutdown` resolves; then stops every program and returns.
pub async fn run(
    opts: Options,
    config: Config,
    listener: StdUnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    // Before any program starts, so that `--dbus=on` without a bus fails cleanly.
    let dbus_conn = match dbus::connect(&opts.dbus, opts.mode).await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&opts.socket);
            return Err(e.into());
        }
    };
    let tasks = Shutdown::new();
    let ring_bytes = config.daemon.ring_bytes.unwrap_or(logs::DEFAULT_RING_BYTES);
    let (state, mut reload_rx) =
        State::new(opts.mode, opts.log_dir.clone(), ring_bytes, tasks.clone())
            .map_err(RunError::LogThreads)?;
    let state = Arc::new(state);
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut sigchld = signal(SignalKind::child()).map_err(RunError::Signals)?;

    // Programs first, then the planes: a client that connects sees every program.
    ops::reload::install(&state, &config);
    tracing::info!(processes = config.processes.len(), socket = %opts.socket.display(), mode = opts.mode.as_str(), "brummerd ready");

    // The name is requested only once every object is exported (inside `serve`).
    let mut fatal = None;
    if let Some(conn) = dbus_conn {
        match dbus::serve(state.clone(), conn).await {
            Ok(()) => {}
            Err(e) if opts.dbus.mode == DbusMode::On => {
                tracing::error!(cause = %e, "D-Bus is required (--dbus=on); shutting down");
                fatal = Some(RunError::Dbus(e));
            }
            Err(e) => tracing::warn!(cause = %e, "running without D-Bus"),
        }
    }
    // After D-Bus: a client that reaches the socket finds the bus name owned too.
    scanner::spawn(state.logs().clone(), state.bus().clone(), &tasks);
    tasks.spawn(clockwatch::run());
    control::serve(state.clone(), listener).map_err(RunError::Listener)?;
    // Config loaded and every control plane serving: READY=1.
    notify::ready_and_follow(state.clone());
    // Start-up is over: the code only it ran need not stay resident.
    codepages::release_startup_pages();
    // WATCHDOG=1 is sent from this loop (and from the reload and shutdown waits below), so
    // a wedged top-level loop really misses it and systemd restarts us.
    let mut watchdog = Watchdog::new(notify::watchdog_interval());

    tokio::pin!(shutdown);
    while fatal.is_none() {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = watchdog.tick() => notify::watchdog(),
            _ = sighup.recv() => {
                match reload_notified(&state, &opts.load, &mut watchdog).await {
                    Ok(r) => tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, "reloaded on SIGHUP"),
                    Err(e) => tracing::error!(cause = %e, "reload failed; keeping the running configuration"),
                }
            }
            Some(ReloadRequest { reply }) = reload_rx.recv() => {
                let r = reload_notified(&state, &opts.load, &mut watchdog).await;
                if let Err(e) = &r {
                    tracing::error!(cause = %e, "reload failed; keeping the running configuration");
                }
                let _ = reply.send(r);
            }
            _ = sigchld.recv() => { state.children().reap_orphans(); }
        }
    }

    tracing::info!("shutting down: stopping every program");
    notify::stopping();
    state.begin_shutdown();
    stop_all(&state, &mut sigchld, &mut watchdog).await;
    // Programs are gone, so their pipes are closed (or held by nothing we could stop):
    // wait, bounded, for the captured output to reach the disk.
    if !state.logs().drain(LOG_FLUSH_TIMEOUT).await {
        tracing::warn!(
            "log capture still busy after {LOG_FLUSH_TIMEOUT:?} at shutdown; the rest is not written"
        );
    }
    tasks.trigger();
    state.bus().close();
    if !tasks.wait(TASKS_TIMEOUT).await {
        tracing::warn!(
            running = tasks.running(),
            "tasks still running {TASKS_TIMEOUT:?} after shutdown began"
        );
    }
    if opts.unlink_socket {
        let _ = std::fs::remove_file(&opts.socket);
    }
    tracing::info!("brummerd stopped");
    fatal.map_or(Ok(()), Err)
}

/// Stops every program in parallel, reaping orphans (which keep dying meanwhile) and
/// pinging the watchdog until all have answered.
async fn stop_all(state: &State, sigchld: &mut Signal, watchdog: &mut Watchdog) {
    let mut set = tokio::task::JoinSet::new();
    for e in state.entries() {
        set.spawn(async move { (e.name.clone(), e.send(Command::Remove).await) });
    }
    loop {
        tokio::select! {
            r = set.join_next() => match r {
                Some(Ok((name, Err(err)))) => {
                    tracing::error!(process = %name, cause = %err, "stop at shutdown failed");
                }
                Some(Ok((_, Ok(_)))) => {}
                Some(Err(e)) => tracing::error!(cause = %e, "stop task failed"),
                None => break,
            },
            _ = sigchld.recv() => { state.children().reap_orphans(); }
            _ = watchdog.tick() => notify::watchdog(),
        }
    }
    state.children().reap_orphans();
}

/// Pings the systemd watchdog at a fixed interval, or never when the unit has none.
struct Watchdog(Option<tokio::time::Interval>);

impl Watchdog {
    fn new(every: Option<Duration>) -> Self {
        Watchdog(every.map(|d| {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }))
    }

    async fn tick(&mut self) {
        match &mut self.0 {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// A reload between RELOADING=1 and READY=1, pinging the watchdog while it waits (a reload
/// may wait for removed programs to stop, up to their `stop_timeout`).
async fn reload_notified(
    state: &State,
    load: &LoadOptions,
    watchdog: &mut Watchdog,
) -> Result<ReloadResult, String> {
    notify::reloading();
    let work = ops::reload::apply(state, load);
    tokio::pin!(work);
    let r = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = watchdog.tick() => notify::watchdog(),
        }
    };
    notify::ready(&notify::current_summary(state));
    r
}
