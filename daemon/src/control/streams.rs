//! Streaming methods: `follow` (log lines from ring cursors) and `subscribe` (events from
//! an own bounded bus queue). Each runs as a task writing into the connection's outbox; when
//! the client reads slowly the task waits on the outbox, and whatever the ring or queue
//! dropped meanwhile is reported as a `missed` notification with the exact count.

use super::conn::Outbox;
use super::methods::{resolve_names, wire_line};
use crate::daemon::Daemon;
use brummer_core::{Line, Recv};
use brummer_proto::events::{self, EventParams, LogParams, MissedParams};
use brummer_proto::methods::{FollowParams, SubscribeResult};
use brummer_proto::rpc::JSONRPC;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Event queue length per subscriber; beyond it the oldest events are dropped and counted.
const EVENT_QUEUE: usize = 1024;

/// Lines read from one ring per pass, so one busy process cannot starve the others.
const BATCH: usize = 1024;

#[derive(Serialize)]
struct Note<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
}

async fn notify<P: Serialize>(out: &Outbox, method: &str, params: P) -> bool {
    out.send(&Note {
        jsonrpc: JSONRPC,
        method,
        params,
    })
    .await
}

pub async fn follow(d: Arc<Daemon>, out: Outbox, id: Option<Value>, sub: u64, p: FollowParams) {
    // Named processes must exist now; "all" also picks up processes added later.
    let named = if p.names.is_empty() {
        None
    } else {
        match resolve_names(&d, &p.names) {
            Ok(_) => Some(p.names.clone()),
            Err(e) => {
                out.reply(id, Err(e)).await;
                return;
            }
        }
    };
    let back = p.lines.unwrap_or(0) as u64;
    let mut cursors: HashMap<Arc<str>, u64> = HashMap::new();
    for (name, e) in d.registry.load().iter() {
        if named.as_ref().is_none_or(|n| n.iter().any(|x| x == name)) {
            cursors.insert(e.name.clone(), e.ring.next_seq().saturating_sub(back));
        }
    }
    let reply = SubscribeResult {
        subscription: sub,
        seq: None,
    };
    if !out
        .reply(id, Ok(serde_json::to_value(reply).unwrap_or(Value::Null)))
        .await
    {
        return;
    }
    let mut batch: Vec<(u64, Arc<str>, Line)> = Vec::new();
    let mut buf = Vec::new();
    loop {
        // Registered before reading: a chunk that lands after the read still wakes us.
        let woken = d.log_activity.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();

        let snap = d.registry.load();
        let mut more = false;
        batch.clear();
        for (name, e) in snap.iter() {
            let wanted = named.as_ref().is_none_or(|n| n.iter().any(|x| x == name));
            if !wanted {
                continue;
            }
            // A process new to us (added by reload) is followed from its first line.
            let cursor = cursors
                .entry(e.name.clone())
                .or_insert_with(|| e.ring.oldest_seq());
            buf.clear();
            let r = e.ring.read_from(*cursor, BATCH, p.stream, &mut buf);
            *cursor = r.next_seq;
            if r.missed > 0 {
                let m = MissedParams {
                    subscription: sub,
                    process: Some(name.to_string()),
                    count: r.missed,
                };
                if !notify(&out, events::MISSED, m).await {
                    return;
                }
            }
            more |= r.next_seq < e.ring.next_seq();
            batch.extend(buf.drain(..).map(|l| (l.meta.wall_us, e.name.clone(), l)));
        }
        drop(snap);
        batch.sort_by(|a, b| (a.0, &a.1, a.2.meta.seq).cmp(&(b.0, &b.1, b.2.meta.seq)));
        for (_, name, l) in batch.drain(..) {
            let params = LogParams {
                subscription: sub,
                line: wire_line(&name, &l),
            };
            if !notify(&out, events::LOG, params).await {
                return;
            }
        }
        if !more {
            woken.await;
        }
    }
}

pub async fn subscribe(d: Arc<Daemon>, out: Outbox, id: Option<Value>, sub: u64) {
    // Subscribed before the reply: the reply's seq is a point after which nothing is lost.
    let queue = d.shared.bus.subscribe(EVENT_QUEUE);
    let reply = SubscribeResult {
        subscription: sub,
        seq: Some(d.shared.bus.last_seq()),
    };
    if !out
        .reply(id, Ok(serde_json::to_value(reply).unwrap_or(Value::Null)))
        .await
    {
        return;
    }
    loop {
        match std::future::poll_fn(|cx| queue.poll_recv(cx)).await {
            Recv::Event(env) => {
                let params = EventParams {
                    subscription: sub,
                    seq: env.seq,
                    time_us: env.time_us,
                    event: env.event,
                };
                if !notify(&out, events::EVENT, params).await {
                    return;
                }
            }
            Recv::Missed(n) => {
                let m = MissedParams {
                    subscription: sub,
                    process: None,
                    count: n,
                };
                if !notify(&out, events::MISSED, m).await {
                    return;
                }
            }
            Recv::Closed => return,
            Recv::Empty => {}
        }
    }
}
