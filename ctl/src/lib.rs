//! brummerctl: the command-line client of brummerd.
//!
//! `main.rs` only calls [`main_entry`]. The clap definition lives in [`cli`] (public for the
//! man-page and completions generator); [`client`] speaks JSON-RPC over the blocking Unix
//! socket, [`socket`] finds it, `commands/` holds one module per verb, [`output`] renders,
//! [`exit`] owns the exit codes. No async runtime: one round trip, then exit.

pub mod cli;
pub mod client;
pub mod commands;
pub mod exit;
pub mod output;
pub mod socket;
pub mod time;

use clap::Parser;
use cli::{Cli, Command};
use commands::Ctx;
use commands::lifecycle::Verb;
use output::Printer;
use socket::SocketEnv;

/// Parses the command line, runs the command, prints any error; returns the exit status.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let socket = socket::discover(cli.socket.as_deref(), &SocketEnv::from_process(), |p| {
        p.exists()
    });
    let mut ctx = Ctx {
        socket,
        json: cli.json,
        color: !cli.json && output::color_for_stdout(),
        out: Printer::stdout(),
    };
    let result = run(&mut ctx, cli.command);
    // Also after an error: lines printed before it (a follow cut short, say) still count.
    let flushed = ctx.out.flush();
    let result = result.and_then(|code| flushed.map(|()| code));
    exit::finish(result, &mut std::io::stderr())
}

fn run(ctx: &mut Ctx, command: Command) -> Result<i32, exit::CtlError> {
    match command {
        Command::Status { names } => commands::status::run(ctx, names),
        Command::Deps { names, reverse } => commands::deps::run(ctx, names, reverse),
        Command::Start(t) => commands::lifecycle::run(ctx, Verb::Start, t),
        Command::Stop(t) => commands::lifecycle::run(ctx, Verb::Stop, t),
        Command::Restart(t) => commands::lifecycle::run(ctx, Verb::Restart, t),
        Command::Enable(a) => commands::enable::run(ctx, true, a),
        Command::Disable(a) => commands::enable::run(ctx, false, a),
        Command::Logs(args) => commands::logs::run(ctx, args),
        Command::Events => commands::events::run(ctx),
        Command::Reload => commands::reload::run(ctx),
        Command::Version => commands::version::run(ctx),
        Command::DaemonReexec => commands::reexec::run(ctx),
        Command::Metrics => commands::metrics::run(ctx),
    }
}
