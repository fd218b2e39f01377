//! `version`: the daemon's version and protocol.

use super::{Reply, to_raw};
use brummer_proto::PROTOCOL_VERSION;
use brummer_proto::methods::VersionResult;

pub fn run() -> Reply {
    to_raw(&VersionResult {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
    })
}

/// "brummerd VERSION", as `hello` reports it.
pub fn daemon() -> String {
    format!("brummerd {}", env!("CARGO_PKG_VERSION"))
}
