//! The event stream as a test reads it: a subscribed connection that checks, on every event,
//! that `seq` strictly increases and nothing was missed, and collects events until a
//! condition holds.

use crate::daemon::Daemon;
use crate::rpc::Rpc;
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Events<'d> {
    d: &'d Daemon,
    pub rpc: Rpc,
    /// The subscription id from the subscribe reply.
    pub subscription: u64,
    /// The seq of the last event read; at first, the subscribe reply's seq (the last event
    /// published before the subscription).
    pub last_seq: u64,
}

impl<'d> Events<'d> {
    pub fn subscribe(d: &'d Daemon) -> Events<'d> {
        let mut rpc = d.rpc();
        let r = rpc.subscribe();
        Events {
            d,
            rpc,
            subscription: r["subscription"].as_u64().expect("subscription id"),
            last_seq: r["seq"].as_u64().expect("subscribe reply's seq"),
        }
    }

    /// The next event's params, or None when none came within `timeout`.
    pub fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let n = self.rpc.next_notification(timeout)?;
        assert_eq!(n["method"], "event", "unexpected notification {n}");
        let p = n["params"].clone();
        let seq = p["seq"].as_u64().expect("seq");
        assert!(
            seq > self.last_seq,
            "seq not increasing: {seq} after {}: {p}",
            self.last_seq
        );
        assert_eq!(p["subscription"], self.subscription, "{p}");
        self.last_seq = seq;
        Some(p)
    }

    /// Every event up to and including the first that `stop` accepts; panics (with the
    /// events so far, the status and the daemon's log) when `timeout` passes first.
    pub fn until(&mut self, timeout: Duration, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(p) = self.next_within(left) else {
                panic!(
                    "timed out after {timeout:?} waiting for an event; got so far:\n{}\nstatus: {:#?}\n{}",
                    seen.iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.d.status(),
                    self.d.daemon_log()
                );
            };
            let done = stop(&p);
            seen.push(p);
            if done {
                return seen;
            }
        }
    }

    /// The `state-changed` events of `name`, up to and including the first that reaches
    /// state `new`.
    pub fn states_until(&mut self, name: &str, new: &str, timeout: Duration) -> Vec<Value> {
        let evs = self.until(timeout, |e| is_state_change(e, name) && e["new"] == new);
        evs.into_iter()
            .filter(|e| is_state_change(e, name))
            .collect()
    }
}

fn is_state_change(e: &Value, name: &str) -> bool {
    e["type"] == "state-changed" && e["process"] == name
}

/// The state changes of `process` among `events`, as `"old->new"`.
pub fn transitions(events: &[Value], process: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| is_state_change(e, process))
        .map(|e| {
            format!(
                "{}->{}",
                e["old"].as_str().unwrap_or("?"),
                e["new"].as_str().unwrap_or("?")
            )
        })
        .collect()
}
