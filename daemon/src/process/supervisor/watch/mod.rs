//! The watcher of one run of a program: a task of its own that decides when the run is
//! ready (READY=1 on its notify socket, or a probe that succeeds), keeps its watchdog and
//! its health probe, and tells the supervisor task in [`Note`]s over a bounded channel.
//! It never touches the child or the program's status: the supervisor acts on the notes
//! (`supervisor/readiness.rs`), so a slow probe can never hold up a command.
//!
//! The watcher lives as long as its run: the supervisor drops its [`Watch`] when the child
//! exits or is stopped, which cancels the task (and closes the notify socket) at its next
//! await. After a `Fail` note it ends by itself.

pub mod notify;
pub mod probe;

use super::Shared;
use crate::config::{Check, Probe, ProcessDef, Ready};
use crate::logs::ProcessLog;
use crate::process::entry::{epoch_us, rfc3339};
use crate::shutdown::Shutdown;
use brummer_proto::methods::ProbeResult;
use notify::{Assignment, NotifySocket};
use probe::{LogCursor, Outcome};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// Notes waiting for the supervisor; the watcher waits when they are not taken.
const NOTES: usize = 16;
/// Garbage messages logged per run; the rest are only counted.
const GARBAGE_LOGGED: u32 = 5;
/// At most one status text per this interval reaches the supervisor (and so the event
/// bus): a program that sends STATUS= in a tight loop must not push everyone else's
/// events out of the subscribers' queues. The latest text always arrives.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// What the watcher tells the supervisor.
#[derive(Debug)]
pub enum Note {
    /// The run is ready: `running` from now on.
    Ready,
    /// STATUS= of the program.
    Status(String),
    /// A probe try ended.
    Probe(ProbeResult),
    /// The run failed (not ready in time, watchdog, health): stop it, the restart policy
    /// decides what follows. The text is the reason users read. The watcher has ended.
    Fail(String),
}

/// Everything a watcher needs, moved into its task.
pub struct Spec {
    pub def: Arc<ProcessDef>,
    pub pid: i32,
    pub generation: u32,
    pub log: Arc<ProcessLog>,
    /// The ring's next sequence number before the spawn: a log probe reads from there.
    pub log_from: u64,
    pub notify: Option<Arc<NotifySocket>>,
    pub shared: Arc<Shared>,
    /// When the child was spawned (ready_timeout and start periods count from it).
    pub spawned: Instant,
    /// Already ready (`ready = "started"`, or a run adopted as `running`): only the watchdog
    /// and the health probe run.
    pub ready: bool,
}

/// The supervisor's end of a watcher. Dropping it cancels the watcher.
pub struct Watch {
    rx: mpsc::Receiver<Note>,
    token: Shutdown,
    /// The run's notify socket, shared with the watcher, for a re-exec's handover.
    notify: Option<Arc<NotifySocket>>,
}

impl Watch {
    /// Starts the watcher of a run; `None` when there is nothing to watch (ready at once,
    /// no health probe).
    pub fn start(spec: Spec, shutdown: &Shutdown) -> Option<Watch> {
        if spec.ready && spec.def.health.is_none() && spec.notify.is_none() {
            return None;
        }
        let token = shutdown.child();
        let (tx, rx) = mpsc::channel(NOTES);
        let notify = spec.notify.clone();
        token.spawn(Watcher::new(spec, tx).run());
        Some(Watch { rx, token, notify })
    }

    /// The run's notify socket, if it has one.
    pub fn notify(&self) -> Option<&Arc<NotifySocket>> {
        self.notify.as_ref()
    }

    /// The next note; `None` once the watcher ended. Cancel-safe.
    pub async fn next(&mut self) -> Option<Note> {
        self.rx.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.token.trigger();
    }
}

type Try = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Watcher {
    spec: Spec,
    tx: mpsc::Sender<Note>,
    ready: bool,
    ready_deadline: Instant,
    /// Watchdog interval in force (WATCHDOG_USEC may change it) and when the next ping is
    /// due; armed once ready.
    watchdog: Option<Duration>,
    watchdog_due: Option<Instant>,
    /// Consecutive failed health tries.
    failures: u32,
    last_detail: Option<String>,
    log: Option<LogCursor>,
    garbage: u32,
    /// Set when the run became ready: the probe schedule starts over with the health probe.
    phase_changed: bool,
    /// STATUS= held back by [`STATUS_EVERY`], and when it is due.
    status_held: Option<String>,
    status_due: Option<Instant>,
    status_sent: Option<Instant>,
}

impl Watcher {
    fn new(spec: Spec, tx: mpsc::Sender<Note>) -> Watcher {
        let log = match &spec.def.ready {
            Ready::Probe(Probe {
                check: Check::Log(re),
                ..
            }) if !spec.ready => Some(LogCursor::new(
                spec.log.clone(),
                spec.log_from,
                spec.generation,
                re.0.clone(),
            )),
            _ => None,
        };
        let ready_deadline = spec.spawned + spec.def.ready_timeout;
        // Pings come only over the socket: none, no watchdog (a run adopted without one).
        let watchdog = spec.def.watchdog.filter(|_| spec.notify.is_some());
        let mut w = Watcher {
            ready: spec.ready,
            ready_deadline,
            watchdog,
            watchdog_due: None,
            failures: 0,
            last_detail: None,
            log,
            garbage: 0,
            phase_changed: false,
            status_held: None,
            status_due: None,
            status_sent: None,
            spec,
            tx,
        };
        if w.ready {
            w.arm_watchdog();
        }
        w
    }

    /// The probe of the current phase.
    fn probe(&self) -> Option<&Probe> {
        if self.ready {
            self.spec.def.health.as_ref().map(|h| &h.probe)
        } else {
            match &self.spec.def.ready {
                Ready::Probe(p) => Some(p),
                _ => None,
            }
        }
    }

    async fn run(mut self) {
        let mut inflight: Option<Try> = None;
        let mut next_try = self.first_try();
        let notify = self.spec.notify.take();
        loop {
            let probing = self.probe().is_some();
            if self.ready
                && notify.is_none()
                && self.watchdog_due.is_none()
                && inflight.is_none()
                && !probing
            {
                // Ready, and nothing left to watch (no socket, no watchdog, no health).
                return;
            }
            tokio::select! {
                d = recv(notify.as_ref()), if notify.is_some() => {
                    match d {
                        Ok(d) => {
                            if let Some(reason) = self.datagram(d).await {
                                return self.fail(reason).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(process = %self.spec.def.name, cause = %e, "notify socket failed");
                            return self.fail(format!("notify socket failed: {e}")).await;
                        }
                    }
                }
                _ = sleep_until(self.ready_deadline), if !self.ready => {
                    let spent = self.ready_deadline.saturating_duration_since(self.spec.spawned);
                    let mut reason = format!("not ready within {}", humantime::format_duration(spent));
                    if let Some(d) = &self.last_detail {
                        reason.push_str(&format!(" ({d})"));
                    }
                    return self.fail(reason).await;
                }
                _ = sleep_opt(self.status_due), if self.status_due.is_some() => {
                    self.status_due = None;
                    if let Some(text) = self.status_held.take() {
                        self.status_sent = Some(Instant::now());
                        self.send(Note::Status(text)).await;
                    }
                }
                _ = sleep_opt(self.watchdog_due), if self.watchdog_due.is_some() => {
                    let every = self.watchdog.unwrap_or_default();
                    return self
                        .fail(format!(
                            "watchdog timeout: no WATCHDOG=1 within {}",
                            humantime::format_duration(every)
                        ))
                        .await;
                }
                o = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    if let Some(reason) = self.outcome(o).await {
                        return self.fail(reason).await;
                    }
                    next_try = self.after_try();
                }
                _ = sleep_until(next_try), if inflight.is_none() && probing => {
                    if self.log.is_some() {
                        let o = self.log.as_mut().map(LogCursor::look).expect("guarded");
                        if let Some(reason) = self.outcome(o).await {
                            return self.fail(reason).await;
                        }
                        next_try = self.after_try();
                    } else {
                        inflight = self.start_try();
                    }
                }
            }
            if self.phase_changed {
                // A readiness try still running when READY=1 came: its answer is moot.
                inflight = None;
                self.phase_changed = false;
                next_try = self.first_try();
            }
        }
    }

    /// When the first try of the current phase is due: a readiness probe after its start
    /// period, a health probe one interval after the run became ready.
    fn first_try(&self) -> Instant {
        let now = Instant::now();
        match (self.ready, self.probe()) {
            (false, Some(p)) => (self.spec.spawned + p.start_period).max(now),
            (true, Some(p)) => now + p.interval,
            (_, None) => now,
        }
    }

    fn after_try(&self) -> Instant {
        Instant::now() + self.probe().map_or(Duration::ZERO, |p| p.interval)
    }

    /// Starts one try of an exec, http or tcp probe, under a permit of the shared limit.
    fn start_try(&self) -> Option<Try> {
        let p = self.probe()?.clone();
        let shared = self.spec.shared.clone();
        let def = self.spec.def.clone();
        Some(Box::pin(async move {
            // The semaphore is never closed.
            let _permit = shared.probes.acquire().await;
            match &p.check {
                Check::Exec(argv) => {
                    probe::exec(argv, &def, &shared.base_env, &shared.children, p.timeout).await
                }
                Check::Http(url) => probe::http(url, p.timeout).await,
                Check::Tcp(addr) => probe::tcp(addr, p.timeout).await,
                Check::Log(_) => Outcome {
                    ok: false,
                    detail: "a log probe is not a try".into(),
                },
            }
        }))
    }

    /// Records a try's outcome; `Some(reason)` when it ends the run.
    async fn outcome(&mut self, o: Outcome) -> Option<String> {
        let kind = self.probe().map_or("?", |p| p.check.kind());
        let now = SystemTime::now();
        self.send(Note::Probe(ProbeResult {
            phase: if self.ready { "health" } else { "ready" }.to_owned(),
            probe: kind.to_owned(),
            ok: o.ok,
            detail: o.detail.clone(),
            time: rfc3339(now),
            time_us: epoch_us(now),
        }))
        .await;
        if !self.ready {
            if o.ok {
                self.became_ready().await;
            } else {
                self.last_detail = Some(o.detail);
            }
            return None;
        }
        let health = self.spec.def.health.as_ref()?;
        if o.ok {
            self.failures = 0;
            return None;
        }
        if Instant::now() < self.spec.spawned + health.probe.start_period {
            return None;
        }
        self.failures += 1;
        (self.failures >= health.failures).then(|| format!("health check failed: {}", o.detail))
    }

    /// Acts on one notify datagram; `Some(reason)` when it ends the run.
    async fn datagram(&mut self, d: notify::Datagram) -> Option<String> {
        if d.truncated {
            self.garbage("is longer than 4096 bytes", d.pid);
            return None;
        }
        let Some(pid) = d.pid else {
            self.garbage("came without the sender's credentials", None);
            return None;
        };
        if !notify::belongs(pid, self.spec.pid) {
            self.garbage("came from a process outside the program", Some(pid));
            return None;
        }
        let list = match notify::parse(&d.bytes) {
            Ok(list) => list,
            Err(why) => {
                self.garbage(why, Some(pid));
                return None;
            }
        };
        for a in list {
            match a {
                Assignment::Ready => {
                    if !self.ready {
                        self.became_ready().await;
                    }
                }
                Assignment::Status(text) => self.status(text).await,
                Assignment::ExtendTimeout(us) => {
                    let until = Instant::now() + Duration::from_micros(us);
                    if !self.ready && until > self.ready_deadline {
                        self.ready_deadline = until;
                    }
                }
                Assignment::Watchdog => {
                    if self.ready {
                        self.arm_watchdog();
                    }
                }
                Assignment::WatchdogUsec(us) => {
                    self.watchdog = Some(Duration::from_micros(us));
                    if self.ready {
                        self.arm_watchdog();
                    }
                }
                Assignment::WatchdogTrigger => {
                    return Some("watchdog triggered by the program (WATCHDOG=trigger)".into());
                }
                Assignment::Stopping => {
                    tracing::debug!(process = %self.spec.def.name, "the program says it is stopping");
                }
            }
        }
        None
    }

    /// Passes STATUS= on, or holds it until [`STATUS_EVERY`] after the last one passed.
    async fn status(&mut self, text: String) {
        let now = Instant::now();
        match self.status_sent.map(|t| t + STATUS_EVERY) {
            Some(due) if due > now => {
                self.status_held = Some(text);
                self.status_due = Some(due);
            }
            _ => {
                self.status_sent = Some(now);
                self.send(Note::Status(text)).await;
            }
        }
    }

    fn garbage(&mut self, why: &str, pid: Option<i32>) {
        self.garbage = self.garbage.saturating_add(1);
        if self.garbage <= GARBAGE_LOGGED {
            tracing::warn!(
                process = %self.spec.def.name,
                sender = ?pid,
                count = self.garbage,
                "notify message ignored: it {why}"
            );
        }
    }

    async fn became_ready(&mut self) {
        self.ready = true;
        // The log cursor serves readiness only; the health probe is another kind.
        self.log = None;
        self.phase_changed = true;
        self.arm_watchdog();
        self.send(Note::Ready).await;
    }

    fn arm_watchdog(&mut self) {
        self.watchdog_due = self.watchdog.map(|d| Instant::now() + d);
    }

    async fn fail(self, reason: String) {
        self.send(Note::Fail(reason)).await;
    }

    async fn send(&self, note: Note) {
        // The supervisor is gone only when the run ended: nobody needs the note then.
        let _ = self.tx.send(note).await;
    }
}

async fn recv(s: Option<&Arc<NotifySocket>>) -> std::io::Result<notify::Datagram> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
