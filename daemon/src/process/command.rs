//! What a supervisor task can be asked to do, and what it answers. Commands arrive over a
//! bounded channel, each with its own reply sender (`ProcessEntry::send` never waits for
//! room).

use crate::config::ProcessDef;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Room in each program's command channel. Commands are rare; a full channel means the
/// task is wedged, which the caller reports instead of waiting.
pub const COMMAND_QUEUE: usize = 32;

/// The reply to one command.
pub type Outcome = Result<Done, Failure>;

pub type Reply = oneshot::Sender<Outcome>;

pub enum Command {
    Start(Reply),
    Stop(Reply),
    Restart(Reply),
    /// New definition from a reload; a running program is restarted with it.
    Reconfigure(Arc<ProcessDef>, Reply),
    /// Stop the program and end the task (removal on reload, daemon shutdown).
    Remove(Reply),
    /// End the task without touching the program, handing its state and its pidfd over to
    /// the next brummerd image (re-exec).
    Detach(oneshot::Sender<Detached>),
}

/// A supervisor task's state as it ended for a re-exec: what the handover records, the
/// descriptors (pidfd, notify socket) that must stay open until `execve`, and its capture
/// task, whose pipes the hand-over takes next.
pub struct Detached {
    pub program: crate::handover::Program,
    pub keep: Vec<std::os::fd::OwnedFd>,
    pub capture: crate::logs::capture::CaptureHandle,
}

/// A command that did what was asked, or found it already done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Done,
    AlreadyRunning,
    AlreadyStopped,
}

impl Done {
    /// The note the socket's `OpOutcome` carries.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Done::Done => None,
            Done::AlreadyRunning => Some("already running"),
            Done::AlreadyStopped => Some("already stopped"),
        }
    }
}

/// Why a command failed. The text is what the user reads after `NAME: failed: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The child could not be started (spawn error, or its pidfd could not be watched).
    #[error("{0}")]
    Start(String),
    /// Something of the program's process tree could not be stopped.
    #[error("stop incomplete: {0}")]
    Stop(String),
    /// A start that waited for its dependencies was ended by a stop, restart or removal.
    #[error("{0}")]
    Interrupted(String),
    #[error("too many pending commands for this process; try again")]
    Busy,
    #[error("the process is being removed")]
    Removed,
    #[error("the process's supervisor ended before answering")]
    NoAnswer,
}
