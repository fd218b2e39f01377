//! `list`: every program's name and state, one atomic load each.

use super::{Reply, to_raw};
use crate::state::State;
use brummer_proto::methods::{ListEntry, ListResult};

pub fn run(state: &State) -> Reply {
    let snap = state.registry().load();
    to_raw(&ListResult {
        processes: snap
            .iter()
            .map(|(n, e)| ListEntry {
                name: n.to_string(),
                state: e.cell.load().state(),
            })
            .collect(),
    })
}
