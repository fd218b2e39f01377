//! `start`: starts the selected programs; one that already runs is left alone and noted
//! ("already running"). The request is recorded in the runtime state (the program is
//! started again after a crash or re-exec of brummerd, not after a reboot).

use super::{Caller, OpError, Selection, Step};
use crate::state::State;

pub async fn start(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, super::Lifecycle::Start).await
}
