//! `reload`: through `ops::reload`; answers the programs added, removed, changed and
//! unchanged, or the configuration's errors.

use super::{Reply, to_raw};
use crate::ops::{self, Caller};
use crate::state::State;
use std::sync::Arc;

pub async fn run(state: Arc<State>, caller: Caller) -> Reply {
    to_raw(&ops::reload::reload(&state, &caller).await?)
}
