//! `stop`: stops the selected programs and everything they started; one that does not run
//! is noted ("already stopped").

use super::{Caller, OpError, Selection, Step};
use crate::process::Command;
use crate::state::State;

pub async fn stop(state: &State, caller: &Caller, sel: Selection) -> Result<Vec<Step>, OpError> {
    super::lifecycle(state, caller, sel, Command::Stop).await
}
