//! The daemon's shared state and its top-level loop: load programs into the registry, start
//! the control socket, handle SIGHUP/reload and SIGCHLD (orphans), and on shutdown stop
//! every program in parallel before returning.
//!
//! The registry is written only here (initial load and reload, both on this task), which
//! makes reloads serial without a lock held across an `.await`.

use crate::capture::spawn_capture;
use crate::config::{self, Config, LoadOptions, ProcessDef};
use crate::control;
use crate::dbus::{self, DbusMode, DbusOptions};
use crate::disklog::DiskLog;
use crate::entry::{ProcessEntry, ProcessInfo};
use crate::logthread::LogThreads;
use crate::notify;
use crate::supervisor::{self, Command, OpReply, Shared};
use arc_swap::ArcSwap;
use brummer_core::{EventBus, LogRing, Registry, Snapshot, StatusCell};
use brummer_proto::events::Event;
use brummer_proto::methods::ReloadResult;
use std::collections::BTreeMap;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, oneshot};

/// Default size of each program's in-memory log ring.
pub const DEFAULT_RING_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}

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

/// A reload asked for over the socket; SIGHUP asks without a reply.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<ReloadResult, String>>,
}

/// State shared by the control plane and the top-level loop.
pub struct Daemon {
    pub mode: Mode,
    pub registry: Registry<ProcessEntry>,
    pub shared: Arc<Shared>,
    pub log_dir: PathBuf,
    pub ring_bytes: ArcSwap<usize>,
    pub origin: Instant,
    /// Woken by every capture task after each chunk; log followers wait on it.
    pub log_activity: Arc<Notify>,
    /// Capture tasks, drained at shutdown so the last lines a program wrote reach the
    /// disk. The lock is only held to spawn or to take the set.
    pub log_tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// The threads that run the capture tasks and write the disk logs.
    pub log_threads: LogThreads,
    pub reload_tx: mpsc::Sender<ReloadRequest>,
    pub shutting_down: AtomicBool,
    /// uid of brummerd; it may always change things.
    pub uid: u32,
    /// gid of group `brummer`, whose members may change things: looked up at start in
    /// system mode, on first use (a caller that is neither root nor `uid`) in user mode.
    /// Read through [`Daemon::brummer_gid`].
    pub brummer_gid: std::sync::OnceLock<Option<u32>>,
}

impl Daemon {
    /// The gid of group `brummer`, if it exists. A user daemon's socket is private (0600),
    /// so its callers are nearly always root or its own uid and never need the lookup;
    /// skipping it at start keeps NSS (libnss_systemd, libcap: ~0.35 MiB resident) out of
    /// the daemon. The one blocking lookup then happens on the first foreign caller.
    pub fn brummer_gid(&self) -> Option<u32> {
        *self.brummer_gid.get_or_init(|| {
            nix::unistd::Group::from_name("brummer")
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Creates the entry, capture task and supervisor task of a program.
    fn add_process(&self, def: Arc<ProcessDef>, autostart: bool) -> Arc<ProcessEntry> {
        let ring_bytes = **self.ring_bytes.load();
        // The ring's line limit decides how long lines are cut; the disk index records it.
        let max_payload = LogRing::new(ring_bytes, 0).0.max_payload();
        // Sequence numbers continue where the disk log of an earlier run ended.
        let (disk, first_seq) = match DiskLog::open(&self.log_dir, &def.name, max_payload) {
            Ok((d, next)) => (Some(d), next),
            Err(e) => {
                tracing::error!(process = %def.name, dir = %self.log_dir.display(), cause = %e, "cannot open disk log; output kept in memory only");
                (None, 0)
            }
        };
        let (ring, writer) = LogRing::new(ring_bytes, first_seq);
        let (tx, rx) = mpsc::channel(supervisor::COMMAND_QUEUE);
        let thread = self.log_threads.next();
        let entry = Arc::new(ProcessEntry {
            name: Arc::from(def.name.as_str()),
            def: ArcSwap::new(def),
            cell: StatusCell::default(),
            info: ArcSwap::from_pointee(ProcessInfo::default()),
            ring,
            log_notify: self.log_activity.clone(),
            thread,
            counters: Default::default(),
            urls: ArcSwap::from_pointee(Vec::new()),
            cmd: tx,
        });
        entry.counters.disk_seq.store(first_seq, Ordering::Release);
        let cap = {
            let mut tasks = self
                .log_tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Forget the results of captures of removed programs.
            while tasks.try_join_next().is_some() {}
            spawn_capture(
                &mut tasks,
                &entry.thread.handle,
                entry.clone(),
                writer,
                disk,
                self.origin,
            )
        };
        supervisor::spawn_task(entry.clone(), rx, cap, self.shared.clone(), autostart);
        entry
    }
}

/// Sends a command and waits for its reply. A full queue or a finished task is an error
/// at once, never a wait on the queue.
pub async fn command(
    entry: &ProcessEntry,
    make: impl FnOnce(oneshot::Sender<OpReply>) -> Command,
) -> OpReply {
    let (tx, rx) = oneshot::channel();
    if let Err(e) = entry.cmd.try_send(make(tx)) {
        let why = match e {
            mpsc::error::TrySendError::Full(_) => {
                "too many pending commands for this process; try again"
            }
            mpsc::error::TrySendError::Closed(_) => "the process is being removed",
        };
        return OpReply {
            ok: false,
            error: Some(why.into()),
            note: None,
        };
    }
    rx.await.unwrap_or(OpReply {
        ok: false,
        error: Some("the process's supervisor ended before answering".into()),
        note: None,
    })
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
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(8);
    let shared = Arc::new(Shared {
        children: supervisor::Children::default(),
        bus: EventBus::new(),
        base_env: supervisor::base_env(),
        procs: supervisor::ProcScanner::default(),
    });
    let daemon = Arc::new(Daemon {
        mode: opts.mode,
        registry: Registry::new(),
        shared,
        log_dir: opts.log_dir.clone(),
        ring_bytes: ArcSwap::from_pointee(config.daemon.ring_bytes.unwrap_or(DEFAULT_RING_BYTES)),
        origin: Instant::now(),
        log_activity: Arc::new(Notify::new()),
        log_tasks: Default::default(),
        log_threads: LogThreads::start().map_err(RunError::LogThreads)?,
        reload_tx,
        shutting_down: AtomicBool::new(false),
        uid: nix::unistd::getuid().as_raw(),
        brummer_gid: std::sync::OnceLock::new(),
    });
    if opts.mode == Mode::System {
        daemon.brummer_gid();
    }

    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut sigchld = signal(SignalKind::child()).map_err(RunError::Signals)?;

    // Programs first, then the socket: a client that connects sees every program.
    let entries: Vec<(String, Arc<ProcessEntry>)> = config
        .processes
        .values()
        .map(|def| {
            (
                def.name.clone(),
                daemon.add_process(def.clone(), def.autostart),
            )
        })
        .collect();
    daemon
        .registry
        .update(|_| (Snapshot::from_entries(entries), ()));
    tracing::info!(processes = config.processes.len(), socket = %opts.socket.display(), mode = opts.mode.as_str(), "brummerd ready");

    // The name is requested only once every object is exported (inside `serve`).
    let mut fatal = None;
    let dbus_service = match dbus_conn {
        Some(conn) => match dbus::serve(daemon.clone(), conn).await {
            Ok(s) => Some(s),
            Err(e) if opts.dbus.mode == DbusMode::On => {
                tracing::error!(cause = %e, "D-Bus is required (--dbus=on); shutting down");
                fatal = Some(RunError::Dbus(e));
                None
            }
            Err(e) => {
                tracing::warn!(cause = %e, "running without D-Bus");
                None
            }
        },
        None => None,
    };
    // After D-Bus: a client that reaches the socket finds the bus name owned too.
    let scanner_task = crate::scanner::spawn(daemon.clone());
    let listener_task = control::serve(daemon.clone(), listener).map_err(RunError::Listener)?;
    // Config loaded and the control socket listening: READY=1 (the D-Bus service, when it
    // lands, must be serving before this line).
    let status_task = notify::ready_and_follow(daemon.clone());
    crate::codepages::release_startup_code();
    // WATCHDOG=1 is sent from this loop (and from the reload and shutdown waits below), so
    // a wedged top-level loop really misses it and systemd restarts us.
    let mut watchdog = Watchdog::new(notify::watchdog_interval());

    tokio::pin!(shutdown);
    while fatal.is_none() {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = watchdog.tick() => notify::watchdog(),
            _ = sighup.recv() => {
                match reload_notified(&daemon, &opts.load, &mut watchdog).await {
                    Ok(r) => tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, "reloaded on SIGHUP"),
                    Err(e) => tracing::error!(cause = %e, "reload failed; keeping the running configuration"),
                }
            }
            Some(req) = reload_rx.recv() => {
                let r = reload_notified(&daemon, &opts.load, &mut watchdog).await;
                if let Err(e) = &r {
                    tracing::error!(cause = %e, "reload failed; keeping the running configuration");
                }
                let _ = req.reply.send(r);
            }
            _ = sigchld.recv() => {
                daemon.shared.children.reap_orphans();
            }
        }
    }

    tracing::info!("shutting down: stopping every program");
    notify::stopping();
    daemon.shutting_down.store(true, Ordering::Release);
    status_task.abort();
    listener_task.abort();
    let snapshot = daemon.registry.load_full();
    let mut set = tokio::task::JoinSet::new();
    for (_, e) in snapshot.iter() {
        let e = e.clone();
        set.spawn(async move { (e.name.clone(), command(&e, Command::Remove).await) });
    }
    // Orphans keep dying while programs stop; keep reaping them.
    loop {
        tokio::select! {
            r = set.join_next() => match r {
                Some(Ok((name, reply))) => {
                    if let Some(err) = reply.error {
                        tracing::error!(process = %name, cause = %err, "stop at shutdown failed");
                    }
                }
                Some(Err(e)) => tracing::error!(cause = %e, "stop task failed"),
                None => break,
            },
            _ = sigchld.recv() => { daemon.shared.children.reap_orphans(); }
            _ = watchdog.tick() => notify::watchdog(),
        }
    }
    daemon.shared.children.reap_orphans();
    // Programs are gone, so their pipes are closed (or held by nothing we could stop):
    // wait, bounded, for the captured output to reach the disk.
    let mut logs = std::mem::take(
        &mut *daemon
            .log_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let flushed = tokio::time::timeout(LOG_FLUSH_TIMEOUT, async {
        while logs.join_next().await.is_some() {}
    })
    .await;
    if flushed.is_err() {
        tracing::warn!(
            "log capture still busy after {LOG_FLUSH_TIMEOUT:?} at shutdown; the rest is not written"
        );
    }
    scanner_task.abort();
    daemon.shared.bus.close();
    if let Some(s) = dbus_service {
        s.stop();
    }
    if opts.unlink_socket {
        let _ = std::fs::remove_file(&opts.socket);
    }
    tracing::info!("brummerd stopped");
    fatal.map_or(Ok(()), Err)
}

/// How long shutdown waits for captured output to be written after every program stopped.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Pings the systemd watchdog at a fixed interval, or never when the unit has none.
struct Watchdog(Option<tokio::time::Interval>);

impl Watchdog {
    fn new(every: Option<std::time::Duration>) -> Self {
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

/// `reload` between RELOADING=1 and READY=1, pinging the watchdog while it waits (a reload
/// may wait for removed programs to stop, up to their `stop_timeout`).
async fn reload_notified(
    daemon: &Arc<Daemon>,
    load: &LoadOptions,
    watchdog: &mut Watchdog,
) -> Result<ReloadResult, String> {
    notify::reloading();
    let work = reload(daemon, load);
    tokio::pin!(work);
    let r = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = watchdog.tick() => notify::watchdog(),
        }
    };
    notify::ready(&notify::current_summary(daemon));
    r
}

/// Re-reads the configuration and applies the difference. The only writer of the registry
/// after start-up.
async fn reload(daemon: &Arc<Daemon>, load: &LoadOptions) -> Result<ReloadResult, String> {
    let config = config::load(load).map_err(|e| e.to_string())?;
    daemon.ring_bytes.store(Arc::new(
        config.daemon.ring_bytes.unwrap_or(DEFAULT_RING_BYTES),
    ));
    let current = daemon.registry.load_full();
    let mut result = ReloadResult::default();
    let mut next: BTreeMap<String, Arc<ProcessEntry>> = BTreeMap::new();
    let mut reconfigure = Vec::new();
    for (name, def) in &config.processes {
        match current.get(name) {
            Some(entry) => {
                if **entry.def.load() == **def {
                    result.unchanged.push(name.clone());
                } else {
                    result.changed.push(name.clone());
                    reconfigure.push((entry.clone(), def.clone()));
                }
                next.insert(name.clone(), entry.clone());
            }
            None => {
                result.added.push(name.clone());
                next.insert(name.clone(), daemon.add_process(def.clone(), def.autostart));
            }
        }
    }
    let removed: Vec<Arc<ProcessEntry>> = current
        .iter()
        .filter(|(n, _)| !config.processes.contains_key(*n))
        .map(|(_, e)| e.clone())
        .collect();
    result.removed = removed.iter().map(|e| e.name.to_string()).collect();
    daemon
        .registry
        .update(|_| (Snapshot::from_entries(next), ()));
    // A follower waiting on its log thread must look again: a process it follows may now
    // live on another thread.
    daemon.log_threads.wake_all();
    for name in &result.added {
        daemon.shared.bus.publish(Event::ProcessAdded {
            process: name.clone(),
        });
    }
    for e in &result.removed {
        daemon
            .shared
            .bus
            .publish(Event::ProcessRemoved { process: e.clone() });
    }
    // Stops and restarts run in parallel; the reply waits for all of them.
    let mut set = tokio::task::JoinSet::new();
    for e in removed {
        set.spawn(async move { command(&e, Command::Remove).await });
    }
    for (e, def) in reconfigure {
        set.spawn(async move { command(&e, |tx| Command::Reconfigure(def, tx)).await });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(OpReply { error: Some(e), .. }) = r {
            tracing::warn!(cause = %e, "reload step failed");
        }
    }
    Ok(result)
}
