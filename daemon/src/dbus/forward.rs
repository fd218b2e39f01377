//! The forwarder: one task, one bounded event-bus subscription, turning events into D-Bus
//! signals and keeping the exported process objects in step with the registry.
//!
//! - `StateChanged`, `UrlDetected`, `ErrorDetected` become the manager's signals at once,
//!   carrying the bus sequence number.
//! - The program's properties are re-read from its cell and emitted as one
//!   `PropertiesChanged` holding only what changed since the last one, at most once per
//!   `COALESCE` per program (the latest values win), so a crash loop cannot flood the bus.
//! - `ProcessAdded`/`ProcessRemoved` (and any gap) diff the registry against the exported
//!   objects; adding/removing an object makes zbus's ObjectManager send
//!   InterfacesAdded/Removed, and we send ProcessAdded/ProcessRemoved.
//!
//! It never makes a publisher wait: if sending to the bus is slow, the subscription drops
//! the oldest events and reports `Missed`, and the forwarder re-reads current state. If the
//! connection is gone it drops its subscription and ends.

use super::objects::{Manager, ProcessObject, Props};
use super::{MANAGER_PATH, PROCESS_INTERFACE, process_path};
use crate::process::ProcessEntry;
use crate::state::State;
use brummer_core::{Envelope, Recv, Subscription};
use brummer_proto::events::Event;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::{Duration, Instant};
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, OwnedObjectPath};

/// Events the forwarder may fall behind by before it loses some (and re-reads state).
pub const QUEUE: usize = 1024;
/// At most one PropertiesChanged per program per this interval.
const COALESCE: Duration = Duration::from_millis(50);

struct Served {
    entry: Arc<ProcessEntry>,
    path: OwnedObjectPath,
    emitter: SignalEmitter<'static>,
    /// The values last sent (or exported with the object).
    last: Props,
    last_emit: Option<Instant>,
    dirty: bool,
}

pub struct Forwarder {
    daemon: Arc<State>,
    conn: Connection,
    manager: SignalEmitter<'static>,
    served: BTreeMap<Arc<str>, Served>,
    failed_sends: u64,
}

impl Forwarder {
    pub fn new(daemon: Arc<State>, conn: Connection) -> Forwarder {
        let manager = SignalEmitter::from_parts(
            conn.clone(),
            ObjectPath::from_static_str_unchecked(MANAGER_PATH),
        );
        Forwarder {
            daemon,
            conn,
            manager,
            served: BTreeMap::new(),
            failed_sends: 0,
        }
    }

    /// Exports objects for programs that lack one and removes those of programs that are
    /// gone (or were replaced), sending ProcessAdded/ProcessRemoved when `signal` is set.
    pub async fn sync_objects(&mut self, signal: bool) -> zbus::Result<()> {
        let snap = self.daemon.registry().load_full();
        let conn = self.conn.clone();
        let server = conn.object_server();
        let gone: Vec<Arc<str>> = self
            .served
            .iter()
            .filter(|(n, s)| snap.get(n).is_none_or(|e| !Arc::ptr_eq(e, &s.entry)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(s) = self.served.remove(&name) {
                server.remove::<ProcessObject, _>(s.path.as_ref()).await?;
                if signal {
                    self.send(
                        Manager::process_removed(&self.manager, &name, s.path.as_ref()).await,
                    );
                }
            }
        }
        for (name, entry) in snap.iter() {
            if self.served.contains_key(name) {
                continue;
            }
            let path = process_path(name);
            let last = Props::of(entry);
            let obj = ProcessObject {
                daemon: self.daemon.clone(),
                entry: entry.clone(),
            };
            server.at(path.as_ref(), obj).await?;
            let emitter = SignalEmitter::from_parts(self.conn.clone(), path.clone().into_inner());
            if signal {
                self.send(Manager::process_added(&self.manager, name, path.as_ref()).await);
            }
            self.served.insert(
                entry.name.clone(),
                Served {
                    entry: entry.clone(),
                    path,
                    emitter,
                    last,
                    last_emit: None,
                    dirty: false,
                },
            );
        }
        Ok(())
    }

    /// Counts a failed send; the first is logged, later ones only at debug level.
    fn send(&mut self, r: zbus::Result<()>) {
        if let Err(e) = r {
            self.failed_sends += 1;
            if self.failed_sends == 1 {
                tracing::warn!(cause = %e, "cannot send a D-Bus signal");
            } else {
                tracing::debug!(cause = %e, "cannot send a D-Bus signal");
            }
        }
    }

    fn mark(&mut self, name: &str) {
        if let Some(s) = self.served.get_mut(name) {
            s.dirty = true;
        }
    }

    /// When the next coalesced PropertiesChanged is due, if any is pending.
    fn next_due(&self) -> Option<Instant> {
        self.served
            .values()
            .filter(|s| s.dirty)
            .map(|s| s.last_emit.map_or_else(Instant::now, |t| t + COALESCE))
            .min()
    }

    /// Sends PropertiesChanged for every dirty program whose interval has passed.
    async fn flush_due(&mut self) {
        let now = Instant::now();
        let mut results = Vec::new();
        for s in self.served.values_mut() {
            if !s.dirty || s.last_emit.is_some_and(|t| now < t + COALESCE) {
                continue;
            }
            s.dirty = false;
            let props = Props::of(&s.entry);
            let changed = props.changed(Some(&s.last));
            if changed.is_empty() {
                continue;
            }
            s.last = props;
            s.last_emit = Some(now);
            let r = zbus::fdo::Properties::properties_changed(
                &s.emitter,
                InterfaceName::from_static_str_unchecked(PROCESS_INTERFACE),
                changed,
                Cow::Borrowed(&[]),
            )
            .await;
            results.push(r);
        }
        for r in results {
            self.send(r);
        }
    }

    async fn event(&mut self, env: Envelope<Event>) -> zbus::Result<()> {
        match &env.event {
            Event::StateChanged {
                process, old, new, ..
            } => {
                if !self.served.contains_key(process.as_str()) {
                    // Published by a new program's supervisor before its ProcessAdded.
                    self.sync_objects(true).await?;
                }
                let r = Manager::state_changed(
                    &self.manager,
                    process,
                    old.as_str(),
                    new.as_str(),
                    env.seq,
                )
                .await;
                self.send(r);
                self.mark(process);
            }
            Event::ProcessAdded { .. } | Event::ProcessRemoved { .. } => {
                self.sync_objects(true).await?;
            }
            Event::UrlDetected { process, url, .. } => {
                let r = Manager::url_detected(&self.manager, process, url).await;
                self.send(r);
                self.mark(process);
            }
            Event::ErrorDetected { process, line, .. } => {
                let r = Manager::error_detected(&self.manager, process, line).await;
                self.send(r);
            }
            Event::StatusText { process, .. } => self.mark(process),
        }
        Ok(())
    }

    /// Runs until the event bus closes or the bus connection is gone.
    pub async fn run(mut self, sub: Subscription<Event>) {
        loop {
            self.flush_due().await;
            if self.conn.is_closed() {
                tracing::warn!("D-Bus connection closed; continuing without D-Bus");
                return;
            }
            let due = self.next_due();
            let recv = tokio::select! {
                r = sub.recv() => r,
                _ = sleep_opt(due) => continue,
            };
            let r = match recv {
                Recv::Event(env) => self.event(env).await,
                Recv::Missed(n) => {
                    tracing::debug!(missed = n, "D-Bus forwarder fell behind; re-reading state");
                    let seq = self.daemon.bus().last_seq();
                    let r = Manager::events_missed(&self.manager, n, seq).await;
                    self.send(r);
                    let names: Vec<Arc<str>> = self.served.keys().cloned().collect();
                    for n in names {
                        self.mark(&n);
                    }
                    self.sync_objects(true).await
                }
                Recv::Closed => return,
                Recv::Empty => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!(cause = %e, "cannot update the D-Bus objects");
            }
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
