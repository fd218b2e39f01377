//! Following logs: a cursor per program over its ring, backfilled from disk when it fell
//! behind, woken by the captures. The transport is not here: lines and missed counts go to
//! a [`FollowSink`] (the control plane writes them to its connection). When the sink is
//! slow the follower waits on it, and whatever the ring dropped meanwhile is read from
//! disk or counted as missed, exactly.

use super::read::{self, Filter, RingRead};
use super::threads::{LocalFollower, ThreadWake};
use super::{LogPlane, ProcessLog};
use brummer_core::Line;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Lines read from one ring per pass, so one busy process cannot starve the others.
const BATCH: usize = 1024;

/// Where a follower's lines go.
pub trait FollowSink: Send {
    /// One line of `process`; false when nobody listens any more (the follower ends).
    fn line(&mut self, process: &str, line: &Line) -> impl Future<Output = bool> + Send;
    /// `count` lines of `process` that exist nowhere any more; false as for `line`.
    fn missed(&mut self, process: &str, count: u64) -> impl Future<Output = bool> + Send;
}

/// What to follow.
pub struct FollowSpec {
    /// The programs (they must exist now); `None` follows all, also ones added later.
    pub names: Option<Vec<String>>,
    pub filter: Arc<Filter>,
    /// Lines before the newest to start with; with `since_us`, at most this many of the
    /// lines since then (`None`: all of them).
    pub back: Option<u64>,
    /// Start at the first line written at or after this time (µs since the epoch).
    pub since_us: Option<u64>,
    /// Start these programs at these sequence numbers (a client resuming after a lost
    /// connection), whatever `back` and `since_us` say.
    pub resume: BTreeMap<String, u64>,
}

/// One followed process: its cursor, and whether this follower is counted as behind.
struct Cursor {
    next: u64,
    behind: Option<BehindGuard>,
}

/// Counts a follower in `followers_behind` while it reads from disk; uncounts on drop (also
/// when the follower is cancelled by `unsubscribe` or a vanished client).
struct BehindGuard(Arc<ProcessLog>);

impl BehindGuard {
    fn new(e: &Arc<ProcessLog>) -> BehindGuard {
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
pub fn placement(plane: &LogPlane, names: &[String]) -> Option<Arc<ThreadWake>> {
    let snap = plane.logs().load();
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

/// A follower with its starting cursors set, not yet sending.
pub struct Follower {
    reader: Reader,
    local: Option<LocalFollower>,
}

/// What a follower reads with: its cursors and the plane they point into.
struct Reader {
    plane: Arc<LogPlane>,
    spec: FollowSpec,
    cursors: HashMap<Arc<str>, Cursor>,
}

impl Follower {
    /// Places the cursors: `since_us` seeks on disk (on a blocking thread), else `back`
    /// lines before the newest. `local` is set when the follower runs on the log thread of
    /// every program it follows ([`placement`]).
    pub async fn open(
        plane: Arc<LogPlane>,
        spec: FollowSpec,
        local: Option<Arc<ThreadWake>>,
    ) -> Follower {
        let local = local.map(LocalFollower::new);
        let wanted: Vec<Arc<ProcessLog>> = plane
            .logs()
            .load()
            .iter()
            .filter(|(name, _)| spec.wants(name))
            .map(|(_, e)| e.clone())
            .collect();
        let starts: Vec<u64> = match spec.since_us {
            Some(us) => {
                let (p2, w2) = (plane.clone(), wanted.clone());
                tokio::task::spawn_blocking(move || {
                    w2.iter()
                        .map(|e| read::seq_at_time(p2.dir(), e, us))
                        .collect()
                })
                .await
                .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let mut cursors = HashMap::new();
        for (i, e) in wanted.iter().enumerate() {
            let last_n = e.ring.next_seq().saturating_sub(spec.back.unwrap_or(0));
            let next = match (spec.resume.get(&*e.name), starts.get(i), spec.back) {
                (Some(r), _, _) => *r,
                (None, Some(s), Some(_)) => (*s).max(last_n),
                (None, Some(s), None) => *s,
                (None, None, _) => last_n,
            };
            cursors.insert(e.name.clone(), Cursor { next, behind: None });
        }
        Follower {
            reader: Reader {
                plane,
                spec,
                cursors,
            },
            local,
        }
    }

    /// Where each followed program starts: the sequence number of the first line this
    /// follower will send of it.
    pub fn starts(&self) -> BTreeMap<String, u64> {
        self.reader
            .cursors
            .iter()
            .map(|(n, c)| (n.to_string(), c.next))
            .collect()
    }

    /// Sends lines to `sink` until it reports that nobody listens, or the caller drops
    /// the future (every await point leaves the cursors consistent).
    pub async fn run<S: FollowSink>(self, mut sink: S) {
        let Follower { mut reader, local } = self;
        let mut batch: Vec<Vec<(Arc<str>, Line)>> = Vec::new();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            // Woken by this thread's captures while every followed process is still
            // captured here; otherwise by every capture. Registered before reading: a chunk
            // that lands after the read still wakes us; a registry changed before the
            // registration is looked at again, and a reload after it wakes local followers
            // (`LogPlane::publish`).
            let plane = reader.plane.clone();
            let snap = plane.logs().load_full();
            let on_thread = local.as_ref().map(|l| l.wake()).filter(|w| {
                snap.iter()
                    .filter(|(name, _)| reader.spec.wants(name))
                    .all(|(_, e)| e.thread.index == w.index)
            });
            let woken = match on_thread {
                Some(w) => w.notify.notified(),
                None => plane.activity().notified(),
            };
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !Arc::ptr_eq(&snap, &plane.logs().load_full()) {
                continue;
            }
            let mut more = false;
            batch.clear();
            for (name, e) in snap.iter() {
                if !reader.spec.wants(name) {
                    continue;
                }
                got.clear();
                let Some(step) = reader.step(e, &mut buf, &mut got).await else {
                    return;
                };
                if step.missed > 0 && !sink.missed(name, step.missed).await {
                    return;
                }
                more |= step.more;
                batch.push(
                    got.drain(..)
                        .filter(|l| reader.spec.since_us.is_none_or(|s| l.meta.wall_us >= s))
                        .map(|l| (e.name.clone(), l))
                        .collect(),
                );
            }
            drop(snap);
            // Capture order across processes; each process's lines in seq order even when
            // the wall clock went back meanwhile (`merge`).
            let merged = super::merge::by_time(std::mem::take(&mut batch), |(_, l)| l.meta.wall_us);
            for (name, l) in merged {
                if !sink.line(&name, &l).await {
                    return;
                }
            }
            if more {
                // Behind: let the capture (on a log thread, the same one) run between
                // batches instead of catching up on a whole ring at a stretch.
                tokio::task::yield_now().await;
            } else {
                woken.await;
            }
        }
    }
}

impl Reader {
    /// Reads the next batch of one program: from its ring, or from disk when the ring
    /// has overtaken the cursor. `None` when the disk read's thread failed.
    async fn step(
        &mut self,
        e: &Arc<ProcessLog>,
        buf: &mut Vec<Line>,
        got: &mut Vec<Line>,
    ) -> Option<Step> {
        // A process new to us (added by reload) is followed from its first line.
        let c = self
            .cursors
            .entry(e.name.clone())
            .or_insert_with(|| Cursor {
                next: e.ring.oldest_seq(),
                behind: None,
            });
        let head = e.ring.next_seq();
        e.counters
            .follower_lag_max
            .fetch_max(head.saturating_sub(c.next), Ordering::Relaxed);
        let mut missed = 0;
        let mut read_disk = c.next < e.ring.oldest_seq();
        if !read_disk {
            let filter = &self.spec.filter;
            match read::read_ring(e, c.next, u64::MAX, BATCH, filter, buf, got) {
                RingRead::Done(next, _) => c.next = next,
                RingRead::Overtaken => read_disk = true,
            }
        }
        if read_disk {
            // Behind the ring: backfill from disk on a blocking thread.
            if c.behind.is_none() {
                c.behind = Some(BehindGuard::new(e));
            }
            let (p2, e2, f2, from) = (
                self.plane.clone(),
                e.clone(),
                self.spec.filter.clone(),
                c.next,
            );
            let to = e.ring.oldest_seq().max(from);
            let (v, o) = tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                let o = read::read_forward(p2.dir(), &e2, from, to, BATCH, &f2, &mut v);
                (v, o)
            })
            .await
            .ok()?;
            *got = v;
            missed = o.missed;
            c.next = o.next_seq.max(from);
        } else if c.behind.is_some() && c.next >= e.ring.oldest_seq() {
            c.behind = None;
        }
        if missed > 0 {
            e.counters
                .follower_missed
                .fetch_add(missed, Ordering::Relaxed);
        }
        Some(Step {
            missed,
            more: c.next < e.ring.next_seq(),
        })
    }
}

/// One program's share of a pass.
struct Step {
    missed: u64,
    /// The ring holds more after this batch.
    more: bool,
}

impl FollowSpec {
    fn wants(&self, name: &str) -> bool {
        self.names
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == name))
    }
}
