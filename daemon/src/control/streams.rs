//! Streaming methods: `follow` (log lines from ring cursors) and `subscribe` (events from
//! an own bounded bus queue). Each runs as a task writing into the connection's outbox; when
//! the client reads slowly the task waits on the outbox, and whatever the ring or queue
//! dropped meanwhile is reported as a `missed` notification with the exact count.

use super::methods::{resolve_names, wire_line};
use super::outbox::Outbox;
use crate::daemon::Daemon;
use crate::entry::ProcessEntry;
use crate::logread::{self, Filter, RingRead};
use crate::logthread::{LocalFollower, ThreadWake};
use brummer_core::{Line, Recv};
use brummer_proto::events::{self, EventParams, LogParams, MissedParams};
use brummer_proto::methods::{FollowParams, SubscribeResult};
use brummer_proto::rpc::JSONRPC;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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

/// One followed process: its cursor, and whether this follower is counted as behind.
struct Cursor {
    next: u64,
    behind: Option<BehindGuard>,
}

/// Counts a follower in `followers_behind` while it reads from disk; uncounts on drop (also
/// when the stream task is aborted by `unsubscribe` or a vanished client).
struct BehindGuard(Arc<ProcessEntry>);

impl BehindGuard {
    fn new(e: &Arc<ProcessEntry>) -> BehindGuard {
        e.counters.followers_behind.fetch_add(1, Ordering::Relaxed);
        BehindGuard(e.clone())
    }
}

impl Drop for BehindGuard {
    fn drop(&mut self) {
        self.0
            .counters
            .followers_behind
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The log thread a follower of `names` runs on: the one every named process's capture
/// runs on, if they share one. Following all processes (which may be added later) or
/// processes on several threads stays on the main runtime.
pub fn placement(d: &Daemon, names: &[String]) -> Option<Arc<ThreadWake>> {
    let snap = d.registry.load();
    let mut index = None;
    for n in names {
        let t = &snap.get(n)?.thread;
        match index {
            None => index = Some(t.clone()),
            Some(ref i) if i.index == t.index => {}
            Some(_) => return None,
        }
    }
    index
}

/// Streams log lines of the named processes (all when `names` is empty) to the client.
/// `local` is set when the task runs on the log thread of every named process
/// ([`placement`]).
pub async fn follow(
    d: Arc<Daemon>,
    out: Outbox,
    id: Option<Value>,
    sub: u64,
    p: FollowParams,
    local: Option<Arc<ThreadWake>>,
) {
    let local = local.map(LocalFollower::new);
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
    let filter = match Filter::new(p.stream, p.grep.as_deref(), None, None) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            out.reply(id, Err(e)).await;
            return;
        }
    };
    let back = p.lines.unwrap_or(0) as u64;
    let is_wanted = |name: &str| named.as_ref().is_none_or(|n| n.iter().any(|x| x == name));
    let mut cursors: HashMap<Arc<str>, Cursor> = HashMap::new();
    let wanted: Vec<Arc<ProcessEntry>> = d
        .registry
        .load()
        .iter()
        .filter(|(name, _)| is_wanted(name))
        .map(|(_, e)| e.clone())
        .collect();
    let starts: Vec<u64> = match p.since_us {
        Some(us) => {
            let (d2, w2) = (d.clone(), wanted.clone());
            tokio::task::spawn_blocking(move || {
                w2.iter()
                    .map(|e| logread::seq_at_time(&d2.log_dir, e, us))
                    .collect()
            })
            .await
            .unwrap_or_default()
        }
        None => Vec::new(),
    };
    for (i, e) in wanted.iter().enumerate() {
        let next = match starts.get(i) {
            Some(s) => *s,
            None => e.ring.next_seq().saturating_sub(back),
        };
        cursors.insert(e.name.clone(), Cursor { next, behind: None });
    }
    let reply = SubscribeResult {
        subscription: sub,
        seq: None,
    };
    if !out.reply(id, super::methods::to_raw(&reply)).await {
        return;
    }
    let since = p.since_us;
    let mut batch: Vec<(u64, Arc<str>, Line)> = Vec::new();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    loop {
        // Woken by this thread's captures while every followed process is still captured
        // here; otherwise by every capture. Registered before reading: a chunk that lands
        // after the read still wakes us; a registry changed before the registration is
        // looked at again, and a reload after it wakes local followers
        // (`LogThreads::wake_all`).
        let snap = d.registry.load_full();
        let on_thread = local.as_ref().map(|l| l.wake()).filter(|w| {
            snap.iter()
                .filter(|(name, _)| is_wanted(name))
                .all(|(_, e)| e.thread.index == w.index)
        });
        let woken = match on_thread {
            Some(w) => w.notify.notified(),
            None => d.log_activity.notified(),
        };
        tokio::pin!(woken);
        woken.as_mut().enable();
        if !Arc::ptr_eq(&snap, &d.registry.load_full()) {
            continue;
        }
        let mut more = false;
        batch.clear();
        for (name, e) in snap.iter() {
            if !is_wanted(name) {
                continue;
            }
            // A process new to us (added by reload) is followed from its first line.
            let c = cursors.entry(e.name.clone()).or_insert_with(|| Cursor {
                next: e.ring.oldest_seq(),
                behind: None,
            });
            let head = e.ring.next_seq();
            e.counters
                .follower_lag_max
                .fetch_max(head.saturating_sub(c.next), Ordering::Relaxed);
            got.clear();
            let mut missed = 0;
            let mut read_disk = c.next < e.ring.oldest_seq();
            if !read_disk {
                match logread::read_ring(e, c.next, u64::MAX, BATCH, &filter, &mut buf, &mut got) {
                    RingRead::Done(next, _) => c.next = next,
                    RingRead::Overtaken => read_disk = true,
                }
            }
            if read_disk {
                // Behind the ring: backfill from disk on a blocking thread.
                if c.behind.is_none() {
                    c.behind = Some(BehindGuard::new(e));
                }
                let (d2, e2, f2, from) = (d.clone(), e.clone(), filter.clone(), c.next);
                let to = e.ring.oldest_seq().max(from);
                let r = tokio::task::spawn_blocking(move || {
                    let mut v = Vec::new();
                    let o = logread::read_forward(&d2.log_dir, &e2, from, to, BATCH, &f2, &mut v);
                    (v, o)
                })
                .await;
                match r {
                    Ok((v, o)) => {
                        got = v;
                        missed = o.missed;
                        c.next = o.next_seq.max(from);
                    }
                    Err(_) => return,
                }
            } else if c.behind.is_some() && c.next >= e.ring.oldest_seq() {
                c.behind = None;
            }
            if missed > 0 {
                e.counters
                    .follower_missed
                    .fetch_add(missed, Ordering::Relaxed);
                let m = MissedParams {
                    subscription: sub,
                    process: Some(name.to_string()),
                    count: missed,
                };
                if !notify(&out, events::MISSED, m).await {
                    return;
                }
            }
            more |= c.next < e.ring.next_seq();
            batch.extend(
                got.drain(..)
                    .filter(|l| since.is_none_or(|s| l.meta.wall_us >= s))
                    .map(|l| (l.meta.wall_us, e.name.clone(), l)),
            );
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
        if more {
            // Behind: let the capture (on a log thread, the same one) run between batches
            // instead of catching up on a whole ring at a stretch.
            tokio::task::yield_now().await;
        } else {
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
    if !out.reply(id, super::methods::to_raw(&reply)).await {
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
