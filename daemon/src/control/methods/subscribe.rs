//! `subscribe`: streams events from the bus through a bounded queue of the stream's own;
//! events the queue dropped while the client read slowly are reported as `missed`, with
//! the exact count.

use super::{Stream, StreamCtx, notify, to_raw};
use crate::state::State;
use brummer_core::Recv;
use brummer_proto::events::{self, EventParams, MissedParams};
use brummer_proto::methods::{SubscribeParams, SubscribeResult};
use std::sync::Arc;

/// Event queue length per subscriber; beyond it the oldest events are dropped and counted.
const EVENT_QUEUE: usize = 1024;

pub fn open(state: Arc<State>, p: SubscribeParams, s: StreamCtx) -> Stream {
    Stream {
        task: Box::pin(run(state, p, s)),
        on: None,
    }
}

async fn run(state: Arc<State>, p: SubscribeParams, s: StreamCtx) {
    let StreamCtx { sub, out, id } = s;
    // Subscribed before the reply: the reply's seq is a point after which nothing is lost.
    let queue = state.bus().subscribe(EVENT_QUEUE);
    // The subscription's own starting point: an event published after `subscribe` but
    // before a second read of the bus's last seq would reach the client with a smaller seq.
    let last = queue.start_seq();
    let reply = SubscribeResult {
        subscription: sub,
        seq: Some(last),
        cursors: Default::default(),
    };
    if !out.reply(id, to_raw(&reply)).await {
        return;
    }
    // A resuming client: the events after its last one up to now are gone (the bus keeps
    // no history; a re-exec starts a new bus whose numbers go on from the old one's).
    if let Some(after) = p.after_seq
        && last > after
    {
        let m = MissedParams {
            subscription: sub,
            process: None,
            count: last - after,
        };
        if !notify(&out, events::MISSED, m).await {
            return;
        }
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
