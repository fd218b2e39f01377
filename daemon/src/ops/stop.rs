//! `stop`: stops the selected programs and everything they started; one that does not run
//! is noted ("already stopped"). The request is recorded in the runtime state (the program
//! stays stopped across a crash or re-exec of brummerd, not across a reboot).

use super::{Caller, OpError, Selection, Step};
use crate::state::State;

pub async fn stop(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, super::Lifecycle::Stop).await
}
