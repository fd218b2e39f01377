//! Harness for the end-to-end tests: the real `brummerd` and `brummerctl` binaries, real
//! child processes, the real socket, in a private temporary directory per test.
//!
//! A test builds its config with [`Config`] and [`Proc`], starts a [`Daemon`] on it (or lets
//! [`brtest!`] do so), drives it through brummerctl (`ctl_ok`), the raw protocol ([`Rpc`]) or
//! the event stream ([`Events`]), and waits on named conditions with deadlines that only a
//! hang reaches ([`wait_for`], [`T`]). Tests that need root are `#[ignore = "needs root"]`
//! and call [`require_root`]; `.ci/run` runs them as root with `--ignored`.

mod bus;
mod cmd;
mod config;
mod daemon;
mod events;
mod fdstore;
mod procfs;
mod rpc;
mod wait;

pub use bus::DbusDaemon;
pub use cmd::{LineChild, NOBODY, as_nobody, output_within, run, run_ok, socat};
pub use config::{Config, Proc};
pub use daemon::{Daemon, DaemonBuilder, bin, bin_dir, brummerd_in};
pub use events::{Events, transitions};
pub use fdstore::FdStore;
pub use procfs::{
    bytes_read, comm, pgrp_and_session, pid_alive, ppid, stat_fields, tagged, tagged_by_program,
    tagged_with,
};
pub use rpc::Rpc;
pub use wait::{T, wait_for};

/// Parses newline-delimited JSON (`--json logs`, `--json events`): one value per line.
pub fn ndjson(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON value ({e}): {l:?}"))
        })
        .collect()
}

/// Fails the test unless it runs as root. Root-only tests are `#[ignore = "needs root"]`, so
/// they run only when asked for (`-- --ignored`), and then a missing root is a failure, not a
/// silent pass.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it runs programs as another uid or brummerd in system mode): \
         run it as root with `cargo test -p brummer-tests -- --ignored`"
    );
}

/// A test on a started daemon, in the style of ripgrep's `rgtest!`:
///
/// ```no_run
/// use brummer_tests::{Config, Proc, brtest};
///
/// brtest!(start_keeps_a_running_program, Config::new().process("web", Proc::sleep()), |d| {
///     d.wait_state("web", "running");
/// });
/// ```
///
/// expands to a `#[test] fn` that starts `Daemon::start(&config)` as `d` (mutable, for
/// `restart_daemon`) and runs the body; the daemon's Drop then checks a clean shutdown with
/// no survivor. Attributes and doc comments go before the name.
#[macro_export]
macro_rules! brtest {
    ($(#[$attr:meta])* $name:ident, $config:expr, |$d:ident| $body:block) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            let config: $crate::Config = $config;
            #[allow(unused_mut)]
            let mut $d = $crate::Daemon::start(&config);
            $body
        }
    };
}
