//! The two exported interfaces: `io.github.brummer.Brummer1.Manager` at the manager path and
//! `io.github.brummer.Brummer1.Process` at one path per program. Both are thin structs of
//! shared handles: properties read the program's `StatusCell`/`ProcessInfo` (one atomic load,
//! one `ArcSwap` load, never a task), mutations go through `crate::ops` exactly as the socket's
//! do, after checking the caller's credentials with the bus. Signals are sent by the forwarder
//! (`forward.rs`), never from here.

use super::error::BusError;
use super::process_path;
use crate::ops::{self, Caller, Selection};
use crate::process::ProcessEntry;
use crate::process::entry::epoch_us;
use crate::state::State;
use brummer_proto::{ErrorCode, ProcessState};
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::{ResponseDispatchNotifier, SignalEmitter};
use zbus::{Connection, ObjectPath, OwnedObjectPath, OwnedVariant, Variant, fdo, interface};

/// The Process interface's properties as one value, so the forwarder can tell which changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    pub state: ProcessState,
    /// 0 when no child exists.
    pub pid: u32,
    pub restarts: u32,
    /// -1 until a run has ended with an exit code.
    pub exit_code: i32,
    /// 0 unless the last run was ended by a signal.
    pub exit_signal: i32,
    /// µs since the epoch of the last start; 0 before the first.
    pub started_at: u64,
    pub urls: Vec<String>,
    /// STATUS= of the program; empty when none.
    pub status_text: String,
    /// Why the last run failed (spawn, readiness, watchdog, health, start limit); empty
    /// when nothing failed since the last start by hand.
    pub last_error: String,
}

impl Props {
    /// Reads the current values: one cell load and one snapshot load.
    pub fn of(e: &ProcessEntry) -> Props {
        let hot = e.cell.load().hot();
        let info = e.info.load();
        Props {
            state: hot.state,
            pid: hot.pid.unwrap_or(0),
            restarts: hot.restarts,
            exit_code: info.exit_code.unwrap_or(-1),
            exit_signal: info.exit_signal.unwrap_or(0),
            started_at: info.started_at.map(epoch_us).unwrap_or(0),
            urls: e.log.urls.load().as_ref().clone(),
            status_text: info.status_text.clone().unwrap_or_default(),
            last_error: info.last_error.clone().unwrap_or_default(),
        }
    }

    /// The properties that differ from `old` (all of them when `old` is `None`), as the
    /// `a{sv}` of PropertiesChanged / GetAll.
    pub fn changed(&self, old: Option<&Props>) -> HashMap<&'static str, Variant<'static>> {
        let mut m = HashMap::new();
        let differs = |f: &dyn Fn(&Props) -> bool| old.is_none_or(f);
        if differs(&|o| o.state != self.state) {
            m.insert("State", Variant::from(self.state.as_str().to_owned()));
        }
        if differs(&|o| o.pid != self.pid) {
            m.insert("Pid", Variant::from(self.pid));
        }
        if differs(&|o| o.restarts != self.restarts) {
            m.insert("Restarts", Variant::from(self.restarts));
        }
        if differs(&|o| o.exit_code != self.exit_code) {
            m.insert("ExitCode", Variant::from(self.exit_code));
        }
        if differs(&|o| o.exit_signal != self.exit_signal) {
            m.insert("ExitSignal", Variant::from(self.exit_signal));
        }
        if differs(&|o| o.started_at != self.started_at) {
            m.insert("StartedAt", Variant::from(self.started_at));
        }
        if differs(&|o| o.urls != self.urls) {
            m.insert("Urls", Variant::from(self.urls.clone()));
        }
        if differs(&|o| o.status_text != self.status_text) {
            m.insert("StatusText", Variant::from(self.status_text.clone()));
        }
        if differs(&|o| o.last_error != self.last_error) {
            m.insert("LastError", Variant::from(self.last_error.clone()));
        }
        m
    }
}

/// Every property of a program, as `GetState` and `GetAll` report them.
pub fn all_props(e: &ProcessEntry) -> HashMap<String, OwnedVariant> {
    let mut m: HashMap<String, OwnedVariant> = Props::of(e)
        .changed(None)
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), OwnedVariant::try_from(v).ok()?)))
        .collect();
    if let Ok(v) = OwnedVariant::try_from(Variant::from(e.name.to_string())) {
        m.insert("Name".to_owned(), v);
    }
    if let Ok(v) = OwnedVariant::try_from(Variant::from(e.enabled())) {
        m.insert("Enabled".to_owned(), v);
    }
    for (k, v) in usage_props(e) {
        if let Ok(v) = OwnedVariant::try_from(Variant::from(v)) {
            m.insert(k.to_owned(), v);
        }
    }
    let def = e.def();
    for (key, names) in [
        ("Requires", &def.deps.requires),
        ("Wants", &def.deps.wants),
        ("After", &def.deps.after),
    ] {
        if let Ok(v) = OwnedVariant::try_from(Variant::from(names.clone())) {
            m.insert(key.to_owned(), v);
        }
    }
    m
}

/// The usage properties, named as systemd names a unit's, with its "not known" value
/// (`u64::MAX`, shown as `[not set]`) while no sample of the running child exists.
pub fn usage_props(e: &ProcessEntry) -> [(&'static str, u64); 6] {
    let u = e.usage();
    let u = u.as_deref();
    let get =
        |f: fn(&crate::process::usage::Usage) -> Option<u64>| u.and_then(f).unwrap_or(u64::MAX);
    [
        ("MemoryCurrent", get(|u| Some(u.memory_bytes))),
        ("MemoryPeak", get(|u| Some(u.memory_peak_bytes))),
        ("CPUUsageNSec", get(|u| Some(u.cpu_ns))),
        ("TasksCurrent", get(|u| Some(u64::from(u.tasks)))),
        ("IOReadBytes", get(|u| u.io.map(|(r, _)| r))),
        ("IOWriteBytes", get(|u| u.io.map(|(_, w)| w))),
    ]
}

/// Who the call's sender is, by the bus's own account (GetConnectionCredentials), judged
/// by the same rule as the socket's peers.
async fn caller(d: &State, conn: &Connection, hdr: &Header<'_>) -> Result<Caller, BusError> {
    let sender = hdr.sender().ok_or_else(|| {
        BusError::new(
            ErrorCode::PermissionDenied,
            "permission denied: the call has no sender",
        )
    })?;
    let dbus = fdo::DBusProxy::new(conn).await?;
    let creds = dbus
        .get_connection_credentials(BusName::Unique(sender.clone()))
        .await?;
    let Some(uid) = creds.unix_user_id() else {
        return Err(BusError::new(
            ErrorCode::PermissionDenied,
            "permission denied: the bus did not report the caller's uid",
        ));
    };
    let groups = creds.unix_group_ids().map(Vec::as_slice);
    Ok(Caller {
        uid,
        can_write: d.access().may_write(uid, groups, creds.process_id()),
    })
}

/// Start, stop or restart, as a D-Bus method: any failure becomes one named error, a
/// start of a single program that already runs is `AlreadyRunning`.
async fn lifecycle(
    d: &State,
    conn: &Connection,
    hdr: &Header<'_>,
    op: Op,
    sel: Selection,
) -> Result<(), BusError> {
    let who = caller(d, conn, hdr).await?;
    let single = matches!(&sel, Selection::Entries(e) if e.len() == 1)
        || matches!(&sel, Selection::Names(n) if n.len() == 1);
    let steps = match op {
        Op::Start => ops::start::start(d, &who, sel).await?,
        Op::Stop => ops::stop::stop(d, &who, sel).await?,
        Op::Restart => ops::restart::restart(d, &who, sel).await?,
    };
    if single && op == Op::Start {
        ops::started(steps)?;
    } else {
        ops::all_ok(&steps)?;
    }
    Ok(())
}

/// Enable or disable, as a D-Bus method: the names whose setting changed, or one named
/// error (an empty list selects nothing and is refused, as on the socket).
async fn enable(
    d: &State,
    conn: &Connection,
    hdr: &Header<'_>,
    names: Vec<String>,
    on: bool,
    now: bool,
) -> Result<Vec<String>, BusError> {
    let who = caller(d, conn, hdr).await?;
    let sel = if names.is_empty() {
        return Err(ops::OpError::NothingSelected.into());
    } else {
        Selection::Names(names)
    };
    let done = ops::enable::enable(d, &who, sel, on, now).await?;
    ops::enable::all_ok(&done)?;
    Ok(done
        .iter()
        .filter(|d| d.changed)
        .map(|d| d.entry.name.to_string())
        .collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Stop,
    Restart,
}

/// `io.github.brummer.Brummer1.Manager` at `/io/github/brummer/Brummer1`.
pub struct Manager {
    pub daemon: Arc<State>,
}

fn one(name: &str) -> Selection {
    Selection::Names(vec![name.to_owned()])
}

#[interface(
    name = "io.github.brummer.Brummer1.Manager",
    introspection_docs = false
)]
impl Manager {
    /// Every program: name, state, object path, pid (0 when none), restarts.
    #[zbus(out_args("processes"))]
    fn list_processes(&self) -> Vec<(String, String, OwnedObjectPath, u32, u32)> {
        self.daemon
            .registry()
            .load()
            .iter()
            .map(|(name, e)| {
                let hot = e.cell.load().hot();
                (
                    name.to_string(),
                    hot.state.as_str().to_owned(),
                    process_path(name),
                    hot.pid.unwrap_or(0),
                    hot.restarts,
                )
            })
            .collect()
    }

    #[zbus(out_args("path"))]
    fn get_process(&self, name: &str) -> Result<OwnedObjectPath, BusError> {
        let e = ops::resolve::names_or_all(&self.daemon, &[name.to_owned()])?;
        Ok(process_path(e.first().map(|e| &*e.name).unwrap_or(name)))
    }

    async fn start(
        &self,
        name: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        lifecycle(&self.daemon, conn, &hdr, Op::Start, one(name)).await
    }

    async fn stop(
        &self,
        name: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        lifecycle(&self.daemon, conn, &hdr, Op::Stop, one(name)).await
    }

    async fn restart(
        &self,
        name: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        lifecycle(&self.daemon, conn, &hdr, Op::Restart, one(name)).await
    }

    async fn start_all(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        lifecycle(&self.daemon, conn, &hdr, Op::Start, Selection::All).await
    }

    async fn stop_all(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        lifecycle(&self.daemon, conn, &hdr, Op::Stop, Selection::All).await
    }

    /// Sets the enable override of the named programs (kept across restarts and reboots);
    /// with `now`, starts them too. Returns the names whose setting changed.
    #[zbus(out_args("changed"))]
    async fn enable(
        &self,
        names: Vec<String>,
        now: bool,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<String>, BusError> {
        enable(&self.daemon, conn, &hdr, names, true, now).await
    }

    /// Sets the disable override of the named programs; with `now`, stops them too.
    /// Returns the names whose setting changed.
    #[zbus(out_args("changed"))]
    async fn disable(
        &self,
        names: Vec<String>,
        now: bool,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<String>, BusError> {
        enable(&self.daemon, conn, &hdr, names, false, now).await
    }

    /// Re-reads the configuration; returns the names added, removed and changed.
    #[zbus(out_args("added", "removed", "changed"))]
    async fn reload(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(Vec<String>, Vec<String>, Vec<String>), BusError> {
        let who = caller(&self.daemon, conn, &hdr).await?;
        let r = ops::reload::reload(&self.daemon, &who).await?;
        Ok((r.added, r.removed, r.changed))
    }

    /// Re-executes brummerd in place (its binary on disk), keeping every program. The
    /// answer comes before the image is replaced; the bus name is then released and taken
    /// again by the new image, whose events go on from the same sequence number.
    #[zbus(out_args("binary"))]
    async fn reexec(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<ResponseDispatchNotifier<String>, BusError> {
        let who = caller(&self.daemon, conn, &hdr).await?;
        let (r, answered) = ops::reexec::reexec(&self.daemon, &who).await?;
        // zbus sends the answer after this returns: the top loop executes the new image
        // only once it is sent (or could not be: the notifier fires when dropped), so the
        // caller gets its answer rather than a vanished peer. Bounded by the top loop.
        let (reply, sent) = ResponseDispatchNotifier::new(r.binary);
        tokio::spawn(async move {
            sent.await;
            answered.done();
        });
        Ok(reply)
    }

    /// A full resync: the event sequence number read first, then every program's properties.
    /// Events with a higher seq may already be reflected in the properties.
    #[zbus(out_args("seq", "processes"))]
    fn get_state(&self) -> (u64, HashMap<String, HashMap<String, OwnedVariant>>) {
        let seq = self.daemon.bus().last_seq();
        let procs = self
            .daemon
            .registry()
            .load()
            .iter()
            .map(|(n, e)| (n.to_string(), all_props(e)))
            .collect();
        (seq, procs)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        brummer_proto::VERSION.to_owned()
    }

    /// Sequence number of the last event published; StateChanged signals carry the same
    /// numbering. Not signalled (it changes with every event): read it, or use GetState.
    #[zbus(property(emits_changed_signal = "false"))]
    fn event_sequence(&self) -> u64 {
        self.daemon.bus().last_seq()
    }

    #[zbus(signal)]
    pub async fn process_added(
        emitter: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn process_removed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        old: &str,
        new: &str,
        seq: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn url_detected(
        emitter: &SignalEmitter<'_>,
        name: &str,
        url: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn error_detected(
        emitter: &SignalEmitter<'_>,
        name: &str,
        line: &str,
    ) -> zbus::Result<()>;

    /// The daemon's signal forwarder fell behind and dropped `count` events (only when the bus
    /// does not take its signals as fast as they come); the properties have been re-read
    /// since. A client that tracks state should call GetState.
    #[zbus(signal)]
    pub async fn events_missed(
        emitter: &SignalEmitter<'_>,
        count: u64,
        seq: u64,
    ) -> zbus::Result<()>;
}

/// `io.github.brummer.Brummer1.Process` at `/io/github/brummer/Brummer1/process/<escaped>`.
pub struct ProcessObject {
    pub daemon: Arc<State>,
    pub entry: Arc<ProcessEntry>,
}

#[interface(
    name = "io.github.brummer.Brummer1.Process",
    introspection_docs = false
)]
impl ProcessObject {
    async fn start(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let sel = Selection::Entries(vec![self.entry.clone()]);
        lifecycle(&self.daemon, conn, &hdr, Op::Start, sel).await
    }

    async fn stop(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let sel = Selection::Entries(vec![self.entry.clone()]);
        lifecycle(&self.daemon, conn, &hdr, Op::Stop, sel).await
    }

    async fn restart(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let sel = Selection::Entries(vec![self.entry.clone()]);
        lifecycle(&self.daemon, conn, &hdr, Op::Restart, sel).await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.entry.name.to_string()
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.entry.cell.load().state().as_str().to_owned()
    }

    #[zbus(property)]
    fn pid(&self) -> u32 {
        self.entry.cell.load().pid().unwrap_or(0)
    }

    #[zbus(property)]
    fn restarts(&self) -> u32 {
        self.entry.cell.load().restarts()
    }

    #[zbus(property)]
    fn exit_code(&self) -> i32 {
        self.entry.info.load().exit_code.unwrap_or(-1)
    }

    #[zbus(property)]
    fn exit_signal(&self) -> i32 {
        self.entry.info.load().exit_signal.unwrap_or(0)
    }

    #[zbus(property)]
    fn started_at(&self) -> u64 {
        self.entry.info.load().started_at.map(epoch_us).unwrap_or(0)
    }

    /// Starts with brummerd (the enable override, else `autostart`). Changed only by
    /// Enable/Disable, which answer when it is in force: no PropertiesChanged.
    #[zbus(property(emits_changed_signal = "false"))]
    fn enabled(&self) -> bool {
        self.entry.enabled()
    }

    #[zbus(property)]
    fn urls(&self) -> Vec<String> {
        self.entry.log.urls.load().as_ref().clone()
    }

    /// The programs this one requires (`requires`). Changed only by a reload: no
    /// PropertiesChanged.
    #[zbus(property(emits_changed_signal = "false"))]
    fn requires(&self) -> Vec<String> {
        self.entry.def().deps.requires.clone()
    }

    /// The programs this one wants (`wants`). Changed only by a reload.
    #[zbus(property(emits_changed_signal = "false"))]
    fn wants(&self) -> Vec<String> {
        self.entry.def().deps.wants.clone()
    }

    /// The programs this one starts after (`after`). Changed only by a reload.
    #[zbus(property(emits_changed_signal = "false"))]
    fn after(&self) -> Vec<String> {
        self.entry.def().deps.after.clone()
    }

    /// STATUS= of the program (`ready = "notify"`); empty when none.
    #[zbus(property)]
    fn status_text(&self) -> String {
        self.entry
            .info
            .load()
            .status_text
            .clone()
            .unwrap_or_default()
    }

    /// Why the last run failed, in words ("health check failed: HTTP 500 from ..."); empty
    /// when nothing failed since the last start by hand.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.entry
            .info
            .load()
            .last_error
            .clone()
            .unwrap_or_default()
    }

    // The usage properties change at every sample: like systemd's, they emit no
    // PropertiesChanged; a client reads them when it wants them.

    #[zbus(property(emits_changed_signal = "false"), name = "MemoryCurrent")]
    fn memory_current(&self) -> u64 {
        self.usage("MemoryCurrent")
    }

    #[zbus(property(emits_changed_signal = "false"), name = "MemoryPeak")]
    fn memory_peak(&self) -> u64 {
        self.usage("MemoryPeak")
    }

    #[zbus(property(emits_changed_signal = "false"), name = "CPUUsageNSec")]
    fn cpu_usage_nsec(&self) -> u64 {
        self.usage("CPUUsageNSec")
    }

    #[zbus(property(emits_changed_signal = "false"), name = "TasksCurrent")]
    fn tasks_current(&self) -> u64 {
        self.usage("TasksCurrent")
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOReadBytes")]
    fn io_read_bytes(&self) -> u64 {
        self.usage("IOReadBytes")
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOWriteBytes")]
    fn io_write_bytes(&self) -> u64 {
        self.usage("IOWriteBytes")
    }
}

impl ProcessObject {
    /// The usage property `name` of `usage_props`.
    fn usage(&self, name: &str) -> u64 {
        usage_props(&self.entry)
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(u64::MAX, |(_, v)| *v)
    }
}
