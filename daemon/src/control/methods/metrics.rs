//! `metrics`: the Prometheus text of every program and the daemon (`ops::metrics`), read
//! from cells and the last usage samples, never through a task.

use super::{Reply, to_raw};
use crate::ops;
use crate::state::State;
use brummer_proto::methods::MetricsResult;

pub fn run(state: &State) -> Reply {
    to_raw(&MetricsResult {
        text: ops::metrics::render(state),
    })
}
