//! `start`: Starts the selected programs (each: a no-op with the note "already running" when it runs).

use super::{Caller, OpError, Selection, Step};
use crate::process::Command;
use crate::state::State;

pub async fn start(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, Command::Start).await
}
