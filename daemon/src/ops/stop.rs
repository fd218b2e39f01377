//! `stop`: Stops the selected programs and everything they started (each: a no-op with the note "already stopped" when none runs).

use super::{Caller, OpError, Selection, Step};
use crate::process::Command;
use crate::state::State;

pub async fn stop(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, Command::Stop).await
}
