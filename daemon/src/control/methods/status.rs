//! `status`: the full status of the named programs (all when none is named), read from
//! their cells and snapshots, never through a task.

use super::{Reply, to_raw};
use crate::ops::resolve;
use crate::state::State;
use brummer_proto::methods::{Selector, StatusResult};

pub fn run(state: &State, sel: &Selector) -> Reply {
    let entries = resolve::names_or_all(state, &sel.names)?;
    to_raw(&StatusResult {
        processes: entries.iter().map(|e| e.status()).collect(),
    })
}
