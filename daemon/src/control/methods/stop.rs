//! `stop`: through `ops::stop`; answers each selected program's outcome and status.

use super::{Reply, to_raw};
use crate::ops::{self, Caller, Selection};
use crate::state::State;
use brummer_proto::methods::{OpResult, Selector};
use std::sync::Arc;

pub async fn run(state: Arc<State>, caller: Caller, sel: Selector) -> Reply {
    // Who asks is checked before what is asked, as for every mutating method.
    ops::may_change(&state, &caller)?;
    let steps = ops::stop::stop(&state, &caller, Selection::of(&sel)?).await?;
    to_raw(&OpResult {
        results: steps.iter().map(|s| s.to_wire()).collect(),
    })
}
