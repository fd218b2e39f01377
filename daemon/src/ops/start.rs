//! `start`: starts the selected programs; one that already runs is left alone and noted
//! ("already running").

use super::{Caller, OpError, Selection, Step};
use crate::process::Command;
use crate::state::State;

pub async fn start(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, Command::Start).await
}
