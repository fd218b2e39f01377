//! `daemon-reexec`: through `ops::reexec`; answers with the pid and the binary before the
//! image is replaced, after which this connection closes.

use super::{Reply, to_raw};
use crate::ops::{self, Caller};
use crate::state::State;
use std::sync::Arc;

pub async fn run(state: Arc<State>, caller: Caller) -> Reply {
    to_raw(&ops::reexec::reexec(&state, &caller).await?)
}
