//! brummerctl's exit codes and the one error type that carries them.
//!
//! Every failure the user can see is a [`CtlError`]; [`CtlError::exit_code`] is the only
//! place that turns one into an exit status (daemon error replies defer to
//! [`ErrorCode::exit_code`] in brummer-proto). `main_entry` prints the error and exits.

use brummer_proto::{ErrorCode, RpcError};
use std::io;
use std::path::PathBuf;

/// Everything went as asked.
pub const OK: i32 = 0;
/// The operation was tried and failed (or the daemon returned a generic error).
pub const FAILED: i32 = 1;
/// Bad command line (clap exits with this on its own).
pub const USAGE: i32 = 2;
/// brummerd is not running, not listening, or went away mid-request.
pub const UNREACHABLE: i32 = 3;
/// A process name the daemon does not know.
pub const NOT_FOUND: i32 = 4;
/// The socket or the daemon refused us.
pub const PERMISSION_DENIED: i32 = 5;

/// The `after_help` text of `brummerctl --help`; keep in sync with the constants above.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  ok
  1  the operation failed
  2  usage error
  3  brummerd unreachable (not running, or it went away)
  4  no such process
  5  permission denied

Socket: --socket PATH, else $BRUMMER_SOCKET, else the user socket
$XDG_RUNTIME_DIR/brummer/brummer.sock when it exists and you are not root,
else the system socket /run/brummer/brummer.sock.";

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// connect(2) failed with ENOENT or ECONNREFUSED. `user_instances`: the `brummerd
    /// --user` sockets that answer, when brummerctl chose the system socket by itself.
    #[error("{}", unreachable_message(path, *user_mode, user_instances))]
    Unreachable {
        path: PathBuf,
        user_mode: bool,
        user_instances: Vec<PathBuf>,
    },

    /// connect(2) failed with EACCES or EPERM.
    #[error(
        "permission denied on {}: add yourself to group brummer or use sudo",
        path.display()
    )]
    PermissionDenied { path: PathBuf },

    /// Any other connect(2) failure.
    #[error("cannot connect to brummerd at {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },

    /// EOF before every reply we were waiting for arrived.
    #[error(
        "brummerd at {} closed the connection before answering: did it stop? ({})",
        path.display(),
        if *user_mode { "start it with: brummerd --user" } else { "systemctl status brummerd" }
    )]
    Closed { path: PathBuf, user_mode: bool },

    /// EOF while streaming (`logs --follow`, `events`).
    #[error("brummerd at {} closed the connection: did it stop?", path.display())]
    StreamEnded { path: PathBuf },

    /// A read or write error on the socket after connecting.
    #[error("lost the connection to brummerd at {}: {source}", path.display())]
    Lost { path: PathBuf, source: io::Error },

    /// `hello` told us the daemon speaks another protocol version.
    #[error(
        "brummerd at {} speaks protocol {daemon} ({daemon_version}) but this brummerctl \
         speaks protocol {client}: use the brummerctl that came with brummerd",
        path.display()
    )]
    ProtocolMismatch {
        path: PathBuf,
        daemon: u32,
        daemon_version: String,
        client: u32,
    },

    /// A reply we could not make sense of.
    #[error("unexpected reply from brummerd: {0}")]
    BadReply(String),

    /// The daemon answered with a JSON-RPC error; its message is made for users.
    #[error("{0}")]
    Daemon(RpcError),

    /// Writing our own output failed (a broken pipe is not reported, see `is_broken_pipe`).
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

/// `cannot reach brummerd at SOCKET: is it running? (FIX)`, and where a user instance
/// listens instead, if one does.
fn unreachable_message(path: &std::path::Path, user_mode: bool, users: &[PathBuf]) -> String {
    let fix = if user_mode {
        "start it with: brummerd --user"
    } else {
        "systemctl status brummerd"
    };
    let mut m = format!(
        "cannot reach brummerd at {}: is it running? ({fix})",
        path.display()
    );
    for u in users {
        m.push_str(&format!(
            "; a user instance (brummerd --user) listens at {0}: reach it with \
             brummerctl --socket {0} (or BRUMMER_SOCKET={0})",
            u.display()
        ));
    }
    m
}

impl CtlError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Unreachable { .. }
            | CtlError::Connect { .. }
            | CtlError::Closed { .. }
            | CtlError::StreamEnded { .. }
            | CtlError::Lost { .. } => UNREACHABLE,
            CtlError::PermissionDenied { .. } => PERMISSION_DENIED,
            CtlError::Daemon(e) => e.kind().map_or(FAILED, ErrorCode::exit_code),
            CtlError::ProtocolMismatch { .. } | CtlError::BadReply(_) => FAILED,
            CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => OK,
            CtlError::Output(_) => FAILED,
        }
    }

    /// True when stdout's reader went away (`brummerctl logs | head -1`): we stop quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Turns the outcome of a command into the process exit status, printing the error (if any)
/// to `stderr` as `brummerctl: MESSAGE`. A broken pipe on stdout is a quiet 0.
pub fn finish(result: Result<i32, CtlError>, stderr: &mut dyn io::Write) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => OK,
        Err(e) => {
            // Nothing sensible is left to do if stderr is gone too.
            let _ = writeln!(stderr, "brummerctl: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_map_through_error_code() {
        let e = CtlError::Daemon(RpcError::no_such_process("wbe", Some("web")));
        assert_eq!(e.exit_code(), NOT_FOUND);
        assert_eq!(
            e.to_string(),
            r#"no process named "wbe" (did you mean "web"?)"#
        );
        let e = CtlError::Daemon(RpcError::new(ErrorCode::PermissionDenied, "x"));
        assert_eq!(e.exit_code(), PERMISSION_DENIED);
        let e = CtlError::Daemon(RpcError::new(ErrorCode::OperationFailed, "x"));
        assert_eq!(e.exit_code(), FAILED);
        // An error code this brummerctl does not know yet is a plain failure.
        let e = CtlError::Daemon(RpcError {
            code: -32099,
            message: "new".into(),
            data: None,
        });
        assert_eq!(e.exit_code(), FAILED);
    }

    #[test]
    fn unreachable_messages_name_the_fix() {
        let e = CtlError::Unreachable {
            path: "/run/brummer/brummer.sock".into(),
            user_mode: false,
            user_instances: vec![],
        };
        assert_eq!(
            e.to_string(),
            "cannot reach brummerd at /run/brummer/brummer.sock: is it running? \
             (systemctl status brummerd)"
        );
        assert_eq!(e.exit_code(), UNREACHABLE);
        // Issue 17: root, the system daemon down, a user instance up.
        let e = CtlError::Unreachable {
            path: "/run/brummer/brummer.sock".into(),
            user_mode: false,
            user_instances: vec!["/run/user/0/brummer/brummer.sock".into()],
        };
        assert_eq!(
            e.to_string(),
            "cannot reach brummerd at /run/brummer/brummer.sock: is it running? \
             (systemctl status brummerd); a user instance (brummerd --user) listens at \
             /run/user/0/brummer/brummer.sock: reach it with brummerctl --socket \
             /run/user/0/brummer/brummer.sock (or BRUMMER_SOCKET=/run/user/0/brummer/brummer.sock)"
        );
        let e = CtlError::Unreachable {
            path: "/run/user/1000/brummer/brummer.sock".into(),
            user_mode: true,
            user_instances: vec![],
        };
        assert!(
            e.to_string()
                .ends_with("is it running? (start it with: brummerd --user)")
        );
        let e = CtlError::PermissionDenied {
            path: "/run/brummer/brummer.sock".into(),
        };
        assert_eq!(
            e.to_string(),
            "permission denied on /run/brummer/brummer.sock: add yourself to group brummer \
             or use sudo"
        );
        assert_eq!(e.exit_code(), PERMISSION_DENIED);
    }

    #[test]
    fn finish_prints_prefixed_errors_and_hides_broken_pipes() {
        let mut err = Vec::new();
        assert_eq!(finish(Ok(1), &mut err), 1);
        assert!(err.is_empty());

        let bp = CtlError::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(bp.is_broken_pipe());
        assert_eq!(finish(Err(bp), &mut err), OK);
        assert!(err.is_empty(), "a broken pipe must be quiet");

        let e = CtlError::Closed {
            path: "/s".into(),
            user_mode: false,
        };
        assert_eq!(finish(Err(e), &mut err), UNREACHABLE);
        let text = String::from_utf8(err).unwrap();
        assert!(
            text.starts_with("brummerctl: brummerd at /s closed the connection"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }
}
