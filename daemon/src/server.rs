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
use crate::desired::{self, Desired};
use crate::handover::{self, Handover};
use crate::logs::{self, scanner};
use crate::mode::Mode;
use crate::ops;
use crate::process::Command;
use crate::process::cgroupsource::CgroupSource;
use crate::process::procsource::ProcSource;
use crate::process::supervisor::leftover;
use crate::process::usage;
use crate::scrape;
use crate::shutdown::Shutdown;
use crate::state::{ReexecRequest, ReloadRequest, State};
use crate::systemd::notify;
use brummer_proto::methods::{ReexecResult, ReloadResult};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long shutdown waits for captured output to be written after every program stopped.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the state files to be written once every program stopped.
const STATE_SYNC_TIMEOUT: Duration = Duration::from_secs(5);
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
    /// Persistent state (enable overrides); the runtime state lives beside the socket.
    pub state_dir: PathBuf,
    pub dbus: DbusOptions,
    /// The binary a re-exec executes: the path this one was started from, so that after a
    /// package upgrade it is the new one.
    pub binary: PathBuf,
    /// This image's arguments (argv[1..]), given to the next one.
    pub args: Vec<std::ffi::OsString>,
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
    handed: Option<Handover>,
    stored: Vec<(String, OwnedFd)>,
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
    let me = leftover::me();
    let (desired, previous) = Desired::open(
        desired::runtime_path(&opts.socket),
        &opts.state_dir,
        opts.mode,
        me,
    );
    let desired = Arc::new(desired);
    let re_executed = handed.is_some();
    // After a crash under systemd: the runs whose descriptors systemd kept are taken back
    // as a re-exec would hand them over.
    let (handed, readopted) = match handed {
        Some(h) => (Some(h), Vec::new()),
        None if !stored.is_empty() => leftover_readopt(&previous, stored),
        None => (None, Vec::new()),
    };
    let event_seq = handed.as_ref().map_or(0, |h| h.event_seq);
    let (state, mut requests) = State::new(
        opts.mode,
        opts.log_dir.clone(),
        ring_bytes,
        tasks.clone(),
        desired.clone(),
        &opts.socket,
        event_seq,
    )
    .map_err(RunError::LogThreads)?;
    let state = Arc::new(state);
    state.set_loaded(config.inputs.clone());
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut sigchld = signal(SignalKind::child()).map_err(RunError::Signals)?;
    // Every handler is installed (SIGTERM and SIGINT by main): a stop or reload request
    // that came while the previous image re-executed into this one is delivered now.
    handover::release_signals();

    // Before anything starts: what a brummerd that died left running on this socket is
    // stopped, so no second copy of a program runs beside it (or fails on its port). Not
    // after a re-exec: what the previous image left is ours and handed over. (A handover
    // this image could not read is a crash: `handed` is None then, and its children are
    // found and stopped here.)
    if !re_executed {
        let mut leftovers =
            leftover::find(&previous, &opts.socket, &config.processes, state.procs()).await;
        leftovers.retain(|l| !readopted.contains(&l.name));
        leftover::stop(leftovers, state.procs()).await;
        leftover::sweep_cgroups(&readopted).await;
        // Notify sockets it left name runs that are gone, but those of re-adopted runs.
        let keep: Vec<&std::path::Path> = handed
            .iter()
            .flat_map(|h| &h.programs)
            .filter_map(|p| p.notify.as_ref().map(|n| n.path.as_path()))
            .collect();
        sweep_notify_dir(&crate::process::supervisor::notify_dir(&opts.socket), &keep);
    }
    desired.start(&tasks);

    // Programs first, then the planes: a client that connects sees every program.
    state.logs().reserve_rings(config.processes.len());
    let adopted = match handed {
        Some(h) => ops::reexec::adopt(&state, &config, h, re_executed),
        None => {
            ops::reload::install(&state, &config);
            Default::default()
        }
    };
    state.logs().end_startup();
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
    let sampled = state.clone();
    let first_sample = if re_executed {
        usage::FIRST_AFTER_REEXEC
    } else {
        Duration::ZERO
    };
    match crate::cgroup::tree() {
        Some(tree) => {
            tracing::info!(
                containment = usage::containment().as_str(),
                cgroup = %tree.base().display(),
                controllers = %tree.controllers().join(" "),
                "each program runs in a cgroup of its own"
            );
            // Without the memory controller a cgroup knows no memory figure: /proc then.
            if tree.has("memory") {
                tasks.spawn(usage::run(
                    CgroupSource::new(tree),
                    move || sampled.entries(),
                    first_sample,
                ));
            } else {
                tasks.spawn(usage::run(
                    ProcSource::new(state.procs().clone()),
                    move || sampled.entries(),
                    first_sample,
                ));
            }
        }
        None => {
            tracing::info!(
                containment = usage::containment().as_str(),
                why = crate::cgroup::why_not().unwrap_or("not looked for"),
                "no cgroup containment: programs are held together by their process group and session, found in /proc"
            );
            tasks.spawn(usage::run(
                ProcSource::new(state.procs().clone()),
                move || sampled.entries(),
                first_sample,
            ));
        }
    }
    // The listener's descriptor, kept for a re-exec (the same socket: pending clients wait
    // in its backlog while the image is replaced).
    let listener_fd: Option<OwnedFd> = listener.try_clone().ok().map(OwnedFd::from);
    control::serve(state.clone(), listener).map_err(RunError::Listener)?;
    // The adopted programs' tasks, once the socket serves: spawning them is not on the way
    // to the first answer. Awaited before shutdown stops the programs.
    let adopting = tokio::spawn(async move { adopted.run() });
    if let Some(addr) = config.daemon.metrics_listen {
        match scrape::serve(state.clone(), addr) {
            Ok(bound) => {
                tracing::info!(address = %bound, "serving metrics at http://{bound}/metrics")
            }
            Err(e) => {
                tracing::error!(address = %addr, cause = %e, "cannot listen for metrics scrapes (daemon.metrics_listen); serving none")
            }
        }
    }
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
            Some(ReexecRequest { reply, answered }) = requests.reexec.recv() => {
                match ops::reexec::check(&opts.binary, &opts.load, &state.loaded()) {
                    Ok(checked) => tracing::debug!(?checked, "re-exec: configuration checked"),
                    Err(e) => {
                        tracing::error!(cause = %e, "re-exec refused");
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
                let _ = reply.send(Ok(ReexecResult {
                    pid: std::process::id(),
                    version: brummer_proto::VERSION.to_string(),
                    binary: opts.binary.display().to_string(),
                }));
                let err = reexec(&state, &opts, listener_fd.as_ref(), answered, &mut watchdog, shutdown.as_mut(), &mut sighup).await;
                // Only a failed execve returns, with nothing supervised any more: the
                // programs are still our children, and the next start finds them.
                tracing::error!(cause = %err, "re-exec failed; exiting so that the service manager starts brummerd again");
                std::process::exit(1);
            }
            Some(ReloadRequest { reply }) = requests.reload.recv() => {
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
    let _ = adopting.await;
    notify::stopping();
    state.begin_shutdown();
    stop_all(&state, &mut sigchld, &mut watchdog).await;
    // The runtime state now records no child, and keeps the starts and stops by hand.
    if tokio::time::timeout(STATE_SYNC_TIMEOUT, state.desired().sync())
        .await
        .is_err()
    {
        tracing::warn!("state files not written within {STATE_SYNC_TIMEOUT:?} at shutdown");
    }
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

/// Hands every program over and replaces the image; returns only if `execve` failed (with
/// the binary on disk and then with this image's own).
/// How long a re-exec waits for its answer to be handed to the caller's socket.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

async fn reexec(
    state: &State,
    opts: &Options,
    listener: Option<&OwnedFd>,
    answered: tokio::sync::oneshot::Receiver<()>,
    watchdog: &mut Watchdog,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    sighup: &mut Signal,
) -> std::io::Error {
    tracing::info!(binary = %opts.binary.display(), "re-executing: handing every program over");
    notify::reloading();
    // A stop or reload asked for from now on waits, pending, for the next image.
    handover::hold_signals();
    state.begin_shutdown();
    let work = ops::reexec::hand_over(state);
    tokio::pin!(work);
    let (mut h, keep) = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = watchdog.tick() => notify::watchdog(),
        }
    };
    h.listener = listener.map(|fd| fd.as_raw_fd());
    h.unlink_socket = opts.unlink_socket;
    let programs = h.programs.len();
    let memfd = match h.to_memfd() {
        Ok(fd) => fd,
        Err(e) => return std::io::Error::other(e.to_string()),
    };
    let prepared = handover::Prepared { memfd, keep };
    // A request our handlers took before `hold_signals` has been dispatched to its stream
    // by now (the hand-over awaited many times): it is made pending for the next image too.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if shutdown.poll(&mut cx).is_ready() {
        handover::hold_again(nix::sys::signal::Signal::SIGTERM);
    }
    if sighup.poll_recv(&mut cx).is_ready() {
        handover::hold_again(nix::sys::signal::Signal::SIGHUP);
    }
    if let Some(fd) = listener {
        handover::set_cloexec(fd.as_raw_fd(), false);
    }
    // The caller's answer leaves before its connection does (`execve` closes it). Bounded:
    // a caller that stopped reading must not hold the re-exec up.
    let _ = tokio::time::timeout(ANSWER_WAIT, answered).await;
    tracing::info!(programs, "handed over; executing {}", opts.binary.display());
    let err = handover::exec(&opts.binary, &opts.args, &prepared);
    tracing::error!(binary = %opts.binary.display(), cause = %err, "execve failed; trying this image's own binary");
    let err2 = handover::exec(
        std::path::Path::new("/proc/self/exe"),
        &opts.args,
        &prepared,
    );
    tracing::error!(cause = %err2, "execve of /proc/self/exe failed too");
    err
}

/// Stops every program, dependents first (each as soon as what depends on it is down, in
/// parallel otherwise), reaping orphans (which keep dying meanwhile) and pinging the
/// watchdog until all have answered.
async fn stop_all(state: &State, sigchld: &mut Signal, watchdog: &mut Watchdog) {
    let entries = state.entries();
    let graph = crate::ops::deps::graph(state);
    let stops = crate::ops::deps::stop_in_order(&entries, &graph, Command::Remove);
    tokio::pin!(stops);
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut stops => break outcomes,
            _ = sigchld.recv() => { state.children().reap_orphans(); }
            _ = watchdog.tick() => notify::watchdog(),
        }
    };
    for (e, outcome) in entries.iter().zip(outcomes) {
        if let Err(err) = outcome {
            tracing::error!(process = %e.name, cause = %err, "stop at shutdown failed");
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

/// Removes what a brummerd that died left in the notify sockets' folder, but `keep`.
fn sweep_notify_dir(dir: &std::path::Path, keep: &[&std::path::Path]) {
    if keep.is_empty() {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !keep.contains(&path.as_path()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The crash path's re-adoption ([`readopt::from_store`]), logged.
fn leftover_readopt(
    previous: &crate::desired::Previous,
    stored: Vec<(String, OwnedFd)>,
) -> (Option<Handover>, Vec<String>) {
    let (h, taken) = crate::process::supervisor::readopt::from_store(previous, stored);
    if !taken.is_empty() {
        tracing::info!(
            programs = taken.len(),
            "re-adopting what the previous brummerd left running, from systemd's descriptor store"
        );
    }
    (h, taken)
}
