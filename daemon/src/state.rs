//! `State`: what the planes and the operations share. The registry of programs, the event
//! bus, the log plane, the access policy, the shutdown token and the reload channel, behind
//! private fields: readers borrow them through methods, and the only writers of the
//! registry are [`State::publish`]'s callers (start-up and reload, both on the server's
//! top loop, so registry writes are serial without a lock held across an `.await`).

use crate::access::Access;
use crate::config::ProcessDef;
use crate::desired::Desired;
use crate::logs::LogPlane;
use crate::mode::Mode;
use crate::process::ProcessEntry;
use crate::process::command::COMMAND_QUEUE;
use crate::process::supervisor::{self, Children, Shared};
use crate::shutdown::{Later, Shutdown};
use brummer_core::{EventBus, Registry, Snapshot};
use brummer_proto::events::Event;
use brummer_proto::methods::ReloadResult;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Reloads queued at once; more are refused (the caller retries).
const RELOAD_QUEUE: usize = 8;

/// A reload asked for by a control plane; the server's top loop runs it and answers with
/// the result or the configuration's error text. SIGHUP asks without a reply.
pub struct ReloadRequest {
    pub reply: oneshot::Sender<Result<ReloadResult, String>>,
}

/// A re-exec asked for by a control plane; the server's top loop checks it, answers, and
/// then hands over and replaces the image (the answer is all the caller gets).
pub struct ReexecRequest {
    pub reply: oneshot::Sender<Result<brummer_proto::methods::ReexecResult, String>>,
    /// Fired (or dropped) by the plane once the answer is on its way to the caller: the
    /// top loop waits for it, briefly, before the image (and the caller's connection) goes.
    pub answered: oneshot::Receiver<()>,
}

/// The top loop's answer to a re-exec request.
pub type ReexecReply = oneshot::Receiver<Result<brummer_proto::methods::ReexecResult, String>>;

pub struct State {
    mode: Mode,
    registry: Registry<ProcessEntry>,
    /// Events of every program: supervisors, the scanner and reloads publish; streams, the
    /// D-Bus forwarder and the STATUS= task subscribe.
    bus: Arc<EventBus<Event>>,
    /// What every supervisor task shares: the bus, the spawn gate, the /proc scanner.
    programs: Arc<Shared>,
    /// Runtime state and enable overrides (`desired`), shared with the supervisors.
    desired: Arc<Desired>,
    logs: Arc<LogPlane>,
    access: Access,
    /// Every task's shutdown token; triggered by the server once programs are stopped.
    shutdown: Shutdown,
    /// Set when shutdown begins: no new work is accepted from then on.
    stopping: AtomicBool,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reexec_tx: mpsc::Sender<ReexecRequest>,
    /// Open control-socket connections (the metrics' `brummer_daemon_connections`).
    connections: Arc<AtomicU64>,
    /// Messages waiting in the control connections' outboxes, all together (the metrics'
    /// `brummer_daemon_outbox_queued_messages`); kept by the outboxes themselves.
    outbox_queued: Arc<AtomicUsize>,
    /// What the configuration in force was loaded from (a re-exec's check compares).
    loaded: arc_swap::ArcSwap<crate::config::Inputs>,
}

/// Counts one open connection until dropped.
pub struct ConnectionCount(Arc<AtomicU64>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The receiving ends of the requests the server's top loop runs.
pub struct TopRequests {
    pub reload: mpsc::Receiver<ReloadRequest>,
    pub reexec: mpsc::Receiver<ReexecRequest>,
}

impl State {
    /// A state with no programs, and the receiving ends of its request channels (the
    /// server's top loop holds them). Every child's environment names `socket` (the
    /// daemon's mark, by which the next brummerd finds leftovers). Events are numbered
    /// from `event_seq + 1` (non-zero after a re-exec: the previous image's came before).
    /// Records what the configuration now in force was loaded from (start-up, a reload).
    pub fn set_loaded(&self, inputs: crate::config::Inputs) {
        self.loaded.store(Arc::new(inputs));
    }

    /// What the configuration in force was loaded from.
    pub fn loaded(&self) -> Arc<crate::config::Inputs> {
        self.loaded.load_full()
    }

    pub fn new(
        mode: Mode,
        log_dir: PathBuf,
        ring_bytes: usize,
        shutdown: Shutdown,
        desired: Arc<Desired>,
        socket: &Path,
        event_seq: u64,
    ) -> std::io::Result<(State, TopRequests)> {
        let (reload_tx, reload_rx) = mpsc::channel(RELOAD_QUEUE);
        let (reexec_tx, reexec_rx) = mpsc::channel(1);
        let bus = Arc::new(EventBus::after(event_seq));
        let mut base_env = supervisor::base_env();
        base_env.retain(|(k, _)| k != supervisor::leftover::DAEMON_ENV);
        base_env.push((
            OsString::from(supervisor::leftover::DAEMON_ENV),
            socket.as_os_str().to_owned(),
        ));
        let notify_dir = supervisor::notify_dir(socket);
        let state = State {
            mode,
            registry: Registry::new(),
            bus: bus.clone(),
            programs: Arc::new(Shared {
                children: Children::default(),
                bus,
                base_env,
                procs: supervisor::ProcScanner::default(),
                desired: desired.clone(),
                notify_dir,
                probes: Shared::probe_limit(),
                board: Default::default(),
            }),
            desired,
            logs: Arc::new(LogPlane::start(log_dir, ring_bytes)?),
            access: Access::new(mode),
            shutdown,
            stopping: AtomicBool::new(false),
            reload_tx,
            reexec_tx,
            connections: Arc::default(),
            outbox_queued: Arc::default(),
            loaded: Default::default(),
        };
        Ok((
            state,
            TopRequests {
                reload: reload_rx,
                reexec: reexec_rx,
            },
        ))
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn registry(&self) -> &Registry<ProcessEntry> {
        &self.registry
    }

    pub fn bus(&self) -> &Arc<EventBus<Event>> {
        &self.bus
    }

    pub fn logs(&self) -> &Arc<LogPlane> {
        &self.logs
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn desired(&self) -> &Arc<Desired> {
        &self.desired
    }

    /// The /proc scanner every stop shares.
    pub fn procs(&self) -> &supervisor::ProcScanner {
        &self.programs.procs
    }

    /// The spawn gate and orphan reaper.
    pub fn children(&self) -> &Children {
        &self.programs.children
    }

    /// Counts a connection as open until the returned value is dropped.
    pub fn connection_opened(&self) -> ConnectionCount {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionCount(self.connections.clone())
    }

    /// Control-socket connections open now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The gauge every connection's outbox counts its queued messages in.
    pub fn outbox_queued(&self) -> Arc<AtomicUsize> {
        self.outbox_queued.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// From now on operations refuse new work.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Queues a reload for the top loop; `None` when too many are queued already.
    pub fn request_reload(&self) -> Option<oneshot::Receiver<Result<ReloadResult, String>>> {
        let (tx, rx) = oneshot::channel();
        self.reload_tx
            .try_send(ReloadRequest { reply: tx })
            .ok()
            .map(|_| rx)
    }

    /// Queues a re-exec for the top loop; `None` when one is queued already.
    pub fn request_reexec(&self) -> Option<(ReexecReply, oneshot::Sender<()>)> {
        let (tx, rx) = oneshot::channel();
        let (answered_tx, answered) = oneshot::channel();
        self.reexec_tx
            .try_send(ReexecRequest {
                reply: tx,
                answered,
            })
            .ok()
            .map(|_| (rx, answered_tx))
    }

    /// Creates a program: its log (ring, disk log, capture task) and its supervisor task,
    /// which starts it as soon as it runs when it should run (a start by hand recorded in
    /// the runtime state, else its enable setting: `Desired::should_run`). Not visible to
    /// readers until [`publish`](Self::publish).
    ///
    /// The supervisor task is spawned by `later`: run it once every program of the batch
    /// is created, so that no program starts while the others still open their disk logs
    /// (a start judges the descriptors brummerd keeps free for its clients by the newest
    /// one it opened, and log files opened after it would take them).
    pub fn add_process(&self, def: Arc<ProcessDef>, later: &mut Later) -> Arc<ProcessEntry> {
        let autostart = self.desired.should_run(&def.name, def.autostart);
        self.add_process_with(def, autostart, later)
    }

    /// [`add_process`](Self::add_process), started when `autostart` says so (start-up
    /// starts what the programs that should run require or want, too).
    pub fn add_process_with(
        &self,
        def: Arc<ProcessDef>,
        autostart: bool,
        later: &mut Later,
    ) -> Arc<ProcessEntry> {
        let (log, capture) = self.logs.open(&def);
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let entry = Arc::new(ProcessEntry::new(def, log, tx));
        entry.set_enabled_override(self.desired.enabled_override(&entry.name));
        supervisor::spawn_task(
            entry.clone(),
            rx,
            capture,
            self.programs.clone(),
            supervisor::Begin::Fresh { autostart },
            &self.shutdown,
            Some(later),
        );
        entry
    }

    /// Creates a program the previous brummerd image handed over: its log goes on from the
    /// handed-over pipes, its supervisor from the handed state and child. Not visible to
    /// readers until [`publish`](Self::publish); its tasks are spawned by `later`.
    ///
    /// `seq_known`: a re-exec's handover says where the ring goes on, and the disk log is
    /// opened by the capture task; after a crash (systemd's store) it is opened here, and
    /// its end says.
    pub fn adopt_process(
        &self,
        def: Arc<ProcessDef>,
        mut adopted: supervisor::Adopted,
        pipes: Vec<(std::os::fd::OwnedFd, crate::handover::Pipe)>,
        seq_known: bool,
        later: &mut Later,
    ) -> Arc<ProcessEntry> {
        let p = &adopted.program;
        let (log, capture) = if seq_known {
            self.logs.open_handed(&def, p.next_seq, later)
        } else {
            self.logs.open_from(&def, p.next_seq)
        };
        log.urls
            .store(Arc::new(std::mem::take(&mut adopted.program.urls)));
        if let Err(e) = capture.adopt(pipes) {
            tracing::error!(process = %def.name, cause = e, "the handed-over output is not captured");
        }
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let entry = Arc::new(ProcessEntry::new(def, log, tx));
        entry.set_enabled_override(self.desired.enabled_override(&entry.name));
        supervisor::spawn_task(
            entry.clone(),
            rx,
            capture,
            self.programs.clone(),
            supervisor::Begin::Adopted(Box::new(adopted)),
            &self.shutdown,
            Some(later),
        );
        entry
    }

    /// Makes `entries` the programs everyone sees. The log plane's set goes first, so a
    /// reader that finds a program in the registry finds its log too.
    pub fn publish(&self, entries: Vec<(String, Arc<ProcessEntry>)>) {
        self.logs
            .publish(entries.iter().map(|(n, e)| (n.clone(), e.log.clone())));
        self.programs
            .board
            .publish(entries.iter().map(|(_, e)| e.clone()));
        self.registry
            .update(|_| (Snapshot::from_entries(entries), ()));
    }

    /// Every program, in name order.
    pub fn entries(&self) -> Vec<Arc<ProcessEntry>> {
        self.registry
            .load()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
}
