//! `version`: the daemon's version and protocol.

use super::{Reply, to_raw};
use brummer_proto::PROTOCOL_VERSION;
use brummer_proto::methods::VersionResult;

pub fn run() -> Reply {
    to_raw(&VersionResult {
        version: brummer_proto::VERSION.into(),
        protocol: PROTOCOL_VERSION,
    })
}

/// "brummerd VERSION", as `hello` reports it.
pub fn daemon() -> String {
    format!("brummerd {}", brummer_proto::VERSION)
}
