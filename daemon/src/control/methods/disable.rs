//! `disable`: through `ops::enable`; sets the disable override (and stops with `now`), answering each program's
//! outcome (its note says what was done) and status.

use super::{Reply, to_raw};
use crate::ops::{self, Caller, Selection};
use crate::state::State;
use brummer_proto::methods::{EnableParams, OpResult};
use std::sync::Arc;

pub async fn run(state: Arc<State>, caller: Caller, p: EnableParams) -> Reply {
    // Who asks is checked before what is asked, as for every mutating method.
    ops::may_change(&state, &caller)?;
    let sel = Selection::of(&p.selector())?;
    let done = ops::enable::enable(&state, &caller, sel, false, p.now).await?;
    to_raw(&OpResult {
        results: done.iter().map(|d| d.to_wire()).collect(),
    })
}
