//! brummer-proto: the contract between brummerd, brummerctl and the tests.
//!
//! The control socket speaks JSON-RPC 2.0, one JSON object per line (`\n`), UTF-8.
//! This crate owns the wire types (`rpc`: envelopes; `methods`: params and results of every
//! method; `events`: streamed notifications), the one [`ErrorCode`] enum that yields the
//! JSON-RPC code, the D-Bus error name and the brummerctl exit code, and the process-name
//! rules, and the line framing both ends use (`codec`: bytes in, lines out). It has no I/O
//! and no async runtime: each end reads bytes its own way and hands them to the codec.
//!
//! `docs/protocol.md` shows every method as a request/response exchange.

pub mod codec;
pub mod error;
pub mod events;
pub mod methods;
pub mod name;
pub mod rpc;
pub mod state;

pub use error::{ErrorCode, RpcError};
pub use name::{NameError, validate_name};
pub use state::{ProcessState, Stream};

/// Version of the wire protocol, exchanged by `hello`. Bumped on incompatible changes only.
pub const PROTOCOL_VERSION: u32 = 1;

/// The version brummerd and brummerctl report: the crate's, unless the build set
/// `BRUMMER_VERSION` (packaging/e2e-systemd.sh builds a newer package that way, to test an
/// upgrade).
pub const VERSION: &str = match option_env!("BRUMMER_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Longest request line the daemon reads; a longer one is answered with
/// [`ErrorCode::RequestTooLarge`] and skipped up to the next newline
/// ([`codec::LineDecoder`]). Replies have no limit: a `logs` reply may be far longer.
pub const MAX_LINE: usize = 1024 * 1024;

/// Name of the per-user and system socket file inside its directory.
pub const SOCKET_FILE: &str = "brummer.sock";

/// Default system socket path.
pub const SYSTEM_SOCKET: &str = "/run/brummer/brummer.sock";
