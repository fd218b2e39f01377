//! A program as the daemon holds it: its entry in the registry (`entry`), the commands its
//! supervisor task takes (`command`) and the task itself (`supervisor`), which owns the
//! child, runs the state machine and is the only writer of the program's status; and what
//! each program costs (`usage`, sampled by one task for all, from its cgroup: `cgroupsource`,
//! or from /proc: `procsource`).

pub mod board;
pub mod cgroupsource;
pub mod command;
pub mod entry;
pub mod procsource;
pub mod supervisor;
pub mod usage;

pub use board::Board;
pub use command::{Command, Done, Failure, Outcome};
pub use entry::{ProcessEntry, ProcessInfo};
