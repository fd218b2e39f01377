//! `restart`: a stop, then a start, of each selected program; the start resets its restart
//! counters, as an explicit start does.

use super::{Caller, OpError, Selection, Step};
use crate::state::State;

pub async fn restart(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, super::Lifecycle::Restart).await
}
