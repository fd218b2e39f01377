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
    Status {
        #[arg(value_name = "NAME", value_parser = parse_name)]
        names: Vec<String>,
    },
    /// Start processes
    Start(Targets),
    /// Stop processes
    Stop(Targets),
    /// Restart processes (start those that are not running)
    Restart(Targets),
    /// Print captured output (all processes when no NAME is given)
    Logs(LogsArgs),
    /// Print daemon events (state changes, added and removed processes) as they happen
    Events,
    /// Reload the configuration; a bad configuration is rejected and the running one kept
    Reload,
    /// Print the versions of brummerctl and brummerd
    Version,
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
pub struct LogsArgs {
    /// Keep printing new lines as they are captured
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show first [default: 100, or 10 with --follow]
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
    /// Only lines from this stream
    #[arg(long, value_name = "STREAM")]
    pub stream: Option<StreamArg>,
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
        assert!(parse(&["logs", "-n", "-1"]).is_err());
    }

    #[test]
    fn no_command_is_a_usage_error() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["stauts"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);
    }
}
