//! The command line of brummerctl, as a clap derive definition.
//!
//! Public so that a man-page / completions generator can build `Cli::command()`; nothing
//! here talks to the daemon. Process names are checked with the daemon's own rules, so a
//! name that can never exist is a usage error (exit 2) before any connection is made.

use crate::exit::EXIT_CODES_HELP;
use brummer_proto::Stream;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "brummerctl",
    version,
    about = "Control brummerd, the brummer process supervisor",
    after_help = EXIT_CODES_HELP,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Control socket of brummerd [default: $BRUMMER_SOCKET, else the user socket, else /run/brummer/brummer.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the state of processes (all when no NAME is given)
    ///
    /// CPU is the share of one CPU the process and its descendants used over the last
    /// sample interval (2 s; 200% is two CPUs busy), MEM their resident memory now; both
    /// are `-` while nothing runs or before the first sample. With --json, the `metrics`
    /// object has the raw figures (CPU time in ns, peak memory, tasks, IO bytes) and
    /// `containment` says what holds a program's processes together.
    ///
    /// A program is `starting` until it is ready (its `ready` setting), then `running`.
    /// The NOTE column says what a starting program waits for, its status text (STATUS=),
    /// when a program in backoff is started again, the last error (why the last run
    /// failed), the last readiness or health probe result, what fails on its disk log
    /// (full, unwritable, deleted) and how many of its lines never reached the disk. With
    /// --json, `ready`, `status_text` and `last_probe` are raw fields and the `logs` object
    /// of each process has the log counters (docs/logs.md).
    Status {
        #[arg(value_name = "NAME", value_parser = parse_name)]
        names: Vec<String>,
    },
    /// Show the dependency graph (requires, wants, after) as a tree
    ///
    /// Without NAME, one tree from each process that nothing depends on; with --reverse,
    /// from each process that depends on nothing, down to what depends on it. The state
    /// of each process follows its name. `start` starts what a process requires or wants
    /// first; `stop` and `restart` of a process stop (restart) the processes that require
    /// it first. With --json: every process (or those named) with its requires, wants,
    /// after and dependents.
    Deps {
        /// Processes to show the tree of (default: all)
        #[arg(value_name = "NAME", value_parser = parse_name)]
        names: Vec<String>,
        /// Show what depends on each process instead of what it depends on
        #[arg(long)]
        reverse: bool,
    },
    /// Start processes
    ///
    /// Answers once each is spawned: a program with a `ready` condition is `starting`
    /// until it holds (`brummerctl events` shows when it is `running`).
    /// What a process requires or wants (`deps`) is started too; each process is spawned
    /// once everything it requires, wants or is after is running, in parallel where the
    /// graph allows. A process whose required process fails for good is not started.
    ///
    /// The start is remembered until reboot: a brummerd restarted, re-executed or started
    /// again after a crash starts these processes again, even when they are disabled.
    Start(Targets),
    /// Stop processes
    ///
    /// The processes that require one of them (`deps`) are stopped first, and the output
    /// says so ("stopped because it requires db").
    ///
    /// The stop is remembered until reboot: a brummerd restarted, re-executed or started
    /// again after a crash leaves these processes stopped, even when they are enabled.
    Stop(Targets),
    /// Restart processes (start those that are not running)
    ///
    /// The processes that require one of them (`deps`) are restarted too: stopped first,
    /// started after it.
    Restart(Targets),
    /// Start processes whenever brummerd starts, overriding their autostart
    ///
    /// As systemctl enable: the setting is written to the state directory
    /// (/var/lib/brummer/enabled.json, or $XDG_STATE_HOME/brummer/enabled.json with
    /// --user) before the command returns, and holds across restarts of brummerd, reloads
    /// and reboots. It does not start the processes now (the output says so), unless
    /// --now. At start-up brummerd runs a process when it was started by hand since the
    /// last reboot, else when it is enabled, else when its autostart is true; a stop by
    /// hand since the last reboot wins over enable.
    Enable(EnableArgs),
    /// Do not start processes when brummerd starts, overriding their autostart
    ///
    /// As systemctl disable: the setting is written to the state directory before the
    /// command returns and holds across restarts of brummerd, reloads and reboots. It does
    /// not stop the processes now (the output says so), unless --now. A start by hand
    /// since the last reboot wins over disable.
    Disable(EnableArgs),
    /// Print captured output (all processes when no NAME is given)
    Logs(LogsArgs),
    /// Print daemon events (state changes, added and removed processes) as they happen
    Events,
    /// Reload the configuration; a bad configuration is rejected and the running one kept
    Reload,
    /// Print the versions of brummerctl and brummerd
    Version,
    /// Print every process's and brummerd's figures in the Prometheus text format
    ///
    /// Per process: up, state, restarts, CPU seconds, memory and its peak, tasks, IO
    /// bytes, pressure (with cgroups), log lines and bytes, ring evictions, lines not yet
    /// on disk; for brummerd: its resident memory, events missed by slow subscribers,
    /// event subscribers, connections, and its queue depths (events waiting for
    /// subscribers, messages waiting for clients, lines waiting for the disk). brummerd can
    /// serve the same text over HTTP for a Prometheus scrape: see metrics_listen in
    /// brummer.toml(5).
    Metrics,
    /// Re-execute brummerd (its binary on disk, e.g. after an upgrade) without stopping any process
    #[command(
        name = "daemon-reexec",
        long_about = "Re-execute brummerd in place: it hands every process over to a new image of its binary on \
disk, in the same process, so that no process is stopped or restarted and no output line is lost. \
Use it after upgrading brummerd. Waits until the new image answers; followers (logs -f, events) \
reconnect by themselves."
    )]
    DaemonReexec,
}

/// NAME... or --all, exactly one of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Targets {
    /// Processes to act on
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub names: Vec<String>,
    /// Act on every configured process
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Also start (enable) or stop (disable) the processes now
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they are captured
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show the most recent N lines (of those --since/--until/--grep/--stream keep)
    /// [default: 100, 10 with --follow, all (up to 1,000,000) with --since]
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
    /// Only lines from this stream
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<StreamArg>,
    /// Show each line's capture time (RFC 3339, UTC, microseconds)
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only lines captured since TIME: a duration ago (`10m`, `2h`, `1h30m`, `3d`) or RFC 3339
    /// (`2026-11-22T10:00:00Z`); shows every line from there (up to 1,000,000), or with -n N
    /// the most recent N of them
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Only lines captured until TIME (same forms as --since)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
    /// Only lines matching REGEX (evaluated by brummerd, Rust regex syntax)
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,
    /// Never prefix lines with the process name
    #[arg(long)]
    pub no_prefix: bool,
    /// Processes to read
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamArg {
    Stdout,
    Stderr,
}

impl From<StreamArg> for Stream {
    fn from(s: StreamArg) -> Stream {
        match s {
            StreamArg::Stdout => Stream::Stdout,
            StreamArg::Stderr => Stream::Stderr,
        }
    }
}

/// `10m` (ago), `1h30m`, `2d`, `500ms`, `now`, or RFC 3339, to µs since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    parse_time_at(s, crate::time::now_us())
}

pub fn parse_time_at(s: &str, now_us: i64) -> Result<u64, String> {
    let s = s.trim();
    if let Some(us) = crate::time::parse_rfc3339(s) {
        return u64::try_from(us).map_err(|_| format!("{s:?} is before 1970"));
    }
    let ago = if s == "now" { Some(0) } else { parse_ago(s) };
    match ago {
        Some(ago) => Ok(u64::try_from(now_us.saturating_sub(ago)).unwrap_or(0)),
        None => Err(format!(
            "{s:?} is not a time: use a duration ago like 10m, 2h, 1h30m, 3d, or RFC 3339 like 2026-11-22T10:00:00Z"
        )),
    }
}

/// `1h30m` -> microseconds.
fn parse_ago(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let mult: i64 = match unit {
            "us" => 1,
            "ms" => 1_000,
            "s" | "sec" | "secs" => 1_000_000,
            "m" | "min" | "mins" => 60_000_000,
            "h" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            "w" | "week" | "weeks" => 7 * 86_400_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

fn parse_name(s: &str) -> Result<String, String> {
    brummer_proto::validate_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("brummerctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  brummerd unreachable"), "{help}");
        assert!(help.contains("5  permission denied"));
    }

    #[test]
    fn targets_need_names_or_all_but_not_both() {
        let e = parse(&["start"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["stop", "web", "--all"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(e.exit_code(), 2);

        let cli = parse(&["restart", "--all"]).unwrap();
        assert!(
            matches!(cli.command, Command::Restart(Targets { all: true, ref names }) if names.is_empty())
        );
        let cli = parse(&["start", "web", "db"]).unwrap();
        assert!(
            matches!(cli.command, Command::Start(Targets { all: false, ref names }) if names == &["web", "db"])
        );
    }

    #[test]
    fn enable_and_disable_take_targets_and_now() {
        let cli = parse(&["enable", "--now", "web"]).unwrap();
        assert!(
            matches!(cli.command, Command::Enable(EnableArgs { now: true, targets: Targets { all: false, ref names } }) if names == &["web"])
        );
        let cli = parse(&["disable", "--all"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Disable(EnableArgs {
                now: false,
                targets: Targets { all: true, .. }
            })
        ));
        assert_eq!(parse(&["enable"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn bad_names_are_usage_errors() {
        let e = parse(&["start", "my app"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("only letters"), "{e}");
    }

    #[test]
    fn json_and_socket_are_global() {
        let cli = parse(&["status", "--json", "web"]).unwrap();
        assert!(cli.json);
        let cli = parse(&["--json", "status"]).unwrap();
        assert!(cli.json);
        let cli = parse(&["logs", "--socket", "/tmp/s", "web"]).unwrap();
        assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/tmp/s")));
        let cli = parse(&["--socket=/tmp/s", "reload"]).unwrap();
        assert!(cli.socket.is_some() && !cli.json);
    }

    #[test]
    fn logs_arguments() {
        let cli = parse(&["logs", "-f", "-n", "5", "--stream", "stderr", "web", "db"]).unwrap();
        let Command::Logs(l) = cli.command else {
            panic!("not logs")
        };
        assert!(l.follow);
        assert_eq!(l.lines, Some(5));
        assert_eq!(l.stream, Some(StreamArg::Stderr));
        assert_eq!(l.names, ["web", "db"]);
        assert!(parse(&["logs", "--stream", "stdin"]).is_err());
        let cli = parse(&[
            "logs",
            "-t",
            "--no-prefix",
            "--grep",
            "a.c",
            "--since",
            "10m",
        ])
        .unwrap();
        let Command::Logs(l) = cli.command else {
            panic!("not logs")
        };
        assert!(l.timestamps && l.no_prefix);
        assert_eq!(l.grep.as_deref(), Some("a.c"));
        assert!(l.since.is_some() && l.until.is_none());
        assert_eq!(
            parse(&["logs", "--since", "yesterday"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert!(parse(&["logs", "-n", "-1"]).is_err());
    }

    #[test]
    fn time_specs() {
        let now = 1_795_341_600_000_000;
        assert_eq!(parse_time_at("10m", now), Ok((now - 600_000_000) as u64));
        assert_eq!(
            parse_time_at("1h30m", now),
            Ok((now - 5_400_000_000) as u64)
        );
        assert_eq!(
            parse_time_at("2d", now),
            Ok((now - 2 * 86_400_000_000) as u64)
        );
        assert_eq!(parse_time_at("now", now), Ok(now as u64));
        assert_eq!(
            parse_time_at("2026-11-22T10:00:00Z", 0),
            Ok(1_795_341_600_000_000)
        );
        assert!(parse_time_at("10x", now).is_err());
        assert!(parse_time_at("m", now).is_err());
        assert!(parse_time_at("", now).is_err());
    }

    #[test]
    fn no_command_is_a_usage_error() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["stauts"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);
    }
}
