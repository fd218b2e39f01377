//! `follow`: streams log lines of the named programs (all, also ones added later, when none
//! is named) as `log` notifications, and lines that exist nowhere any more as `missed`. The
//! following itself is `logs::follow`; this file is its transport onto the connection.

use super::{Stream, StreamCtx, notify, to_raw, wire_line};
use crate::control::outbox::Outbox;
use crate::logs::follow::{FollowSink, FollowSpec, Follower, placement};
use crate::logs::read::Filter;
use crate::ops::resolve;
use crate::state::State;
use brummer_core::Line;
use brummer_proto::events::{self, LogParams, MissedParams};
use brummer_proto::methods::{FollowParams, SubscribeResult};
use std::sync::Arc;

/// Runs on the log thread of the named programs when they share one (`placement`).
pub fn open(state: Arc<State>, p: FollowParams, s: StreamCtx) -> Stream {
    let local = if p.names.is_empty() {
        None
    } else {
        placement(state.logs(), &p.names)
    };
    let on = local.as_ref().map(|w| w.handle.clone());
    Stream {
        task: Box::pin(run(state, p, s, local)),
        on,
    }
}

async fn run(
    state: Arc<State>,
    p: FollowParams,
    s: StreamCtx,
    local: Option<Arc<crate::logs::threads::ThreadWake>>,
) {
    let StreamCtx { sub, out, id } = s;
    // Named processes must exist now; "all" also picks up processes added later.
    let names = if p.names.is_empty() {
        None
    } else {
        match resolve::names_or_all(&state, &p.names) {
            Ok(_) => Some(p.names.clone()),
            Err(e) => {
                out.reply(id, Err(e.into())).await;
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
    let spec = FollowSpec {
        names,
        filter,
        back: p.lines.map(|n| n as u64),
        since_us: p.since_us,
        resume: p.resume,
    };
    let follower = Follower::open(state.logs().clone(), spec, local).await;
    let reply = SubscribeResult {
        subscription: sub,
        seq: None,
        cursors: follower.starts(),
    };
    if !out.reply(id, to_raw(&reply)).await {
        return;
    }
    follower.run(Sink { out, sub }).await;
}

struct Sink {
    out: Outbox,
    sub: u64,
}

impl FollowSink for Sink {
    async fn line(&mut self, process: &str, line: &Line) -> bool {
        let params = LogParams {
            subscription: self.sub,
            line: wire_line(process, line),
        };
        notify(&self.out, events::LOG, params).await
    }

    async fn missed(&mut self, process: &str, count: u64) -> bool {
        let m = MissedParams {
            subscription: self.sub,
            process: Some(process.to_owned()),
            count,
        };
        notify(&self.out, events::MISSED, m).await
    }
}
