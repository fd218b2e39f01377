//! Streams that outlive their connection. When brummerd closes a `logs -f` or `events`
//! stream because it re-executes (`daemon-reexec`, a package upgrade) or is restarted by
//! its service manager, the socket file stays where it was: the client connects again and
//! resumes where the stream stopped. A socket file that is gone means the daemon stopped
//! for good: the stream ends at once, as before.

use crate::client::{Client, RawNotification, Session};
use crate::exit::CtlError;
use crate::socket::SocketChoice;
use brummer_proto::ErrorCode;
use brummer_proto::methods::Request;
use std::time::{Duration, Instant};

/// How long a stream waits for brummerd to answer again: a re-exec takes milliseconds, a
/// restart by systemd (RestartSec= and start-up) a few seconds.
pub const RECONNECT_FOR: Duration = Duration::from_secs(30);
/// Pause between two connection attempts.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Whether `e` ended a stream in a way that a new connection may resume.
pub fn is_drop(e: &CtlError) -> bool {
    matches!(e, CtlError::StreamEnded { .. } | CtlError::Lost { .. })
}

/// Whether a failed attempt is worth another one: the daemon is between two images
/// (nobody listens yet, it closed a connection it had just accepted, or it refuses new
/// work while it hands over).
fn transient(e: &CtlError) -> bool {
    match e {
        CtlError::Unreachable { path, .. } => path.exists(),
        CtlError::Closed { .. } | CtlError::StreamEnded { .. } | CtlError::Lost { .. } => true,
        CtlError::Daemon(r) => r.kind() == Some(ErrorCode::ShuttingDown),
        _ => false,
    }
}

/// Connects again and opens the stream with `requests` (rebuilt for each attempt),
/// retrying transient failures until [`RECONNECT_FOR`] has passed. `dropped` is the error
/// that ended the previous connection: returned as it is when the daemon does not come
/// back.
pub fn reopen(
    socket: &SocketChoice,
    dropped: CtlError,
    requests: &dyn Fn() -> Vec<Request>,
    on_note: &mut dyn FnMut(RawNotification) -> Result<(), CtlError>,
) -> Result<(Client, Session), CtlError> {
    let deadline = Instant::now() + RECONNECT_FOR;
    let mut last = dropped;
    loop {
        if !transient(&last) || Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(RETRY_EVERY);
        let attempt = Client::connect(socket).and_then(|mut client| {
            let session = client.session(requests(), &mut |n| on_note(n.into()))?;
            Ok((client, session))
        });
        match attempt {
            Ok(open) => return Ok(open),
            Err(e) => last = e,
        }
    }
}
