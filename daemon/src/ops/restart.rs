//! `restart`: Restarts the selected programs: a stop, then a start, resetting the restart counters.

use super::{Caller, OpError, Selection, Step};
use crate::process::Command;
use crate::state::State;

pub async fn restart(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, Command::Restart).await
}
