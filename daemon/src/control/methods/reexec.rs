//! `daemon-reexec`: through `ops::reexec`; answers with the pid and the binary before the
//! image is replaced, after which this connection closes. The top loop executes only once
//! the answer has been handed to this connection's socket (or a moment has passed).

use super::{AfterReply, Reply, to_raw};
use crate::ops::{self, Caller};
use crate::state::State;
use std::sync::Arc;

pub async fn run(state: Arc<State>, caller: Caller) -> (Reply, AfterReply) {
    match ops::reexec::reexec(&state, &caller).await {
        Ok((r, answered)) => (to_raw(&r), Box::new(move || answered.done())),
        Err(e) => (Err(e.into()), Box::new(|| {})),
    }
}
