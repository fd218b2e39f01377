//! brummerd's command line, as a clap derive definition.
//!
//! Public so that the man-page and completions generator (`xtask`) can build
//! `Args::command()`; `main.rs` parses it. Nothing here touches the system.

use clap::Parser;
use std::path::PathBuf;

/// Text appended to `brummerd --help` and to brummerd(8).
pub const AFTER_HELP: &str = "\
Signals: SIGTERM or SIGINT stop every program, then brummerd exits; SIGHUP reloads the
configuration (a bad one is rejected and the running one kept).

systemd: with Type=notify brummerd reports READY=1, a STATUS= summary, RELOADING=1 and
STOPPING=1, and pings the watchdog when WatchdogSec= is set. Started by brummerd.socket,
it takes the control socket named \"control\" from LISTEN_FDS instead of binding one. Under
systemd (JOURNAL_STREAM) it logs to the journal, otherwise to stderr; BRUMMER_LOG sets
the level (e.g. BRUMMER_LOG=debug).

After a crash: brummerd records each program's child (pid, start time, process group) and
the starts and stops made by hand in a runtime state file beside its socket. Started
again after it died without stopping its programs (SIGKILL, a crash), it stops what the
previous brummerd left running, each with its stop_signal and stop_timeout, then SIGKILL,
before it starts anything, and logs what it stopped; it also finds them by BRUMMER_DAEMON
(its socket) in their environment. A torn runtime state, or one of a newer brummerd, is
reported and ignored. Programs then start as asked by hand (until reboot), else as
enabled (brummerctl enable/disable), else by autostart.
Under systemd (brummerd.service: KillMode=process, FileDescriptorStoreMax=, FDSTORE=) the
programs outlive a crash instead: each run's output pipes and pidfd are kept in systemd's
descriptor store (FDSTORE=1, names NAME.out, NAME.err, NAME.pid, and NAME.notify for the
notify socket of a program with ready = \"notify\"), and the brummerd that Restart= starts
gets them back and re-adopts every run whose pid and start time still match: same pids,
the lines written meanwhile waited in the pipes, and a watchdog is watched again. A re-adopted
program is no longer brummerd's child, so if it ends its status is \"exit status unknown\".
Re-exec: `brummerctl daemon-reexec` (D-Bus Manager.Reexec; a package upgrade does it too)
makes brummerd execute its binary on disk again, in the same process: every program goes
on as its child with the same pid, its output pipes stay open (no line lost or doubled,
sequence numbers go on; lines held in memory for a failing disk log get one last write, and
those it still refuses are logged and counted as lost, disk_lost_lines), and states, restart
counters and backoff timers carry over. The
configuration on disk is read again; a program no longer in it is stopped, a changed one
keeps running and gets its new definition at its next start (`brummerctl reload` applies
changes). A configuration that does not load refuses the re-exec. `logs -f` and `events`
reconnect and resume. A stop (SIGTERM) sent during a re-exec is carried out by the new
image.

cgroups: where brummerd's cgroup is a cgroup v2 subtree delegated to it (systemd's
Delegate=yes, marked by the trusted.delegate or user.delegate attribute; with --user, a
service of the user's own systemd manager, which marks nothing), it moves itself
into its leaf \"daemon\" and runs each program in a leaf of its own, \"prog-NAME\", with
the cpu, memory, pids and io controllers it is offered: the program enters it before it
executes, so nothing it starts escapes; a stop ends with cgroup.kill; usage figures come
from the cgroup's files; memory_max, cpu_max and the other limits of brummer.toml(5) are
written there. Elsewhere (cgroup v1 or hybrid hosts, containers, a shell without
delegation) the process group and /proc are used, as the log says once at start-up and
`status --json` shows (\"containment\").

Files: /etc/brummer/brummer.toml and /etc/brummer/processes.d/*.toml (see brummer.toml(5)),
/run/brummer/brummer.sock, /run/brummer/brummer.state.json (runtime state),
/var/lib/brummer/enabled.json (enable overrides), /var/log/brummer/NAME.log; with --user
the same under $XDG_CONFIG_HOME/brummer/, $XDG_RUNTIME_DIR/brummer/,
$XDG_STATE_HOME/brummer/ and $XDG_STATE_HOME/brummer/logs/.";

/// brummer process supervisor daemon. Runs in the foreground; stop it with SIGTERM or
/// SIGINT (every program is stopped first), reload its configuration with SIGHUP.
#[derive(Debug, Parser)]
#[command(
    name = "brummerd",
    version,
    about = "brummer process supervisor daemon",
    long_about = "brummer process supervisor daemon. Runs in the foreground; stop it with \
                  SIGTERM or SIGINT (every program is stopped first), reload its \
                  configuration with SIGHUP.",
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// Per-user daemon: config under $XDG_CONFIG_HOME/brummer/, socket under
    /// $XDG_RUNTIME_DIR/brummer/, logs under $XDG_STATE_HOME/brummer/logs/.
    #[arg(long)]
    pub user: bool,

    /// Main configuration file (drop-ins are read from processes.d/ beside it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Check the configuration, print the result and exit (0 valid, 1 invalid).
    #[arg(long)]
    pub check_config: bool,

    /// For systemd's ExecStopPost= after brummerd ended: turn off the cgroup controllers
    /// brummerd enabled in its delegated cgroup, so that systemd can place the next
    /// brummerd there while programs still run beside it; then exit 0. The programs keep
    /// running; the next brummerd turns the controllers on again and writes their limits.
    #[arg(long)]
    pub release_cgroup: bool,

    /// D-Bus control plane (system bus, or session bus with --user): auto uses the bus when
    /// it is reachable and otherwise runs without it; on fails to start without it.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub dbus: crate::dbus::DbusMode,

    /// Connect to this D-Bus address instead of the system or session bus
    /// (e.g. unix:path=/run/mybus).
    #[arg(long, value_name = "ADDRESS", env = "BRUMMER_DBUS_ADDRESS")]
    pub dbus_address: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_flags() {
        let a =
            Args::try_parse_from(["brummerd", "--user", "--socket", "/tmp/s", "--check-config"])
                .unwrap();
        assert!(a.user && a.check_config);
        assert_eq!(a.socket.as_deref(), Some(std::path::Path::new("/tmp/s")));
    }
}
