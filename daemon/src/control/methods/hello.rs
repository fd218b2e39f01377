//! `hello`: the protocol handshake. A client naming another protocol version is refused
//! (and the connection refuses everything after it until a hello succeeds).

use super::{Reply, to_raw, version};
use crate::control::Peer;
use crate::state::State;
use brummer_proto::methods::{HelloParams, HelloResult};
use brummer_proto::{ErrorCode, PROTOCOL_VERSION, RpcError};

pub fn run(state: &State, peer: Peer, p: HelloParams) -> Reply {
    if let Some(v) = p.protocol
        && v != PROTOCOL_VERSION
    {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!(
                "protocol {v} is not supported: brummerd speaks protocol {PROTOCOL_VERSION} (upgrade the client or the daemon)"
            ),
        ));
    }
    to_raw(&HelloResult {
        protocol: PROTOCOL_VERSION,
        daemon: version::daemon(),
        mode: state.mode().as_str().into(),
        pid: std::process::id(),
        can_write: peer.can_write,
    })
}
