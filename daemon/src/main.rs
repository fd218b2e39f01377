//! brummerd's entry point: arguments, logging, paths, config, socket, runtime. The daemon
//! itself is `brummerd::server::run`.

use anyhow::Context;
use brummerd::cli::Args;
use brummerd::config::{self, LoadOptions};
use brummerd::dbus::DbusOptions;
use brummerd::mode::Mode;
use brummerd::paths::{Env, Paths};
use brummerd::server::{self, Options};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    // First, while no other thread exists and before anything opens a descriptor: what a
    // previous image of this process handed over (`brummerctl daemon-reexec`).
    let handed = brummerd::handover::take_from_env();
    if let Some(Err(_)) = &handed {
        // Its descriptors are unknown: close them all, so that no program inherits one.
        // SAFETY: no descriptor above 2 is owned by anything yet.
        let _ = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    }
    let args = Args::parse();
    brummerd::systemd::journal::init();
    let handed = match handed {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            tracing::error!(cause = %e, "cannot take over from the previous image of this brummerd; starting afresh, as after a crash: the programs it ran are not adopted");
            None
        }
        None => None,
    };
    match real_main(args, handed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("brummerd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(args: Args, handed: Option<brummerd::handover::Handover>) -> anyhow::Result<ExitCode> {
    if args.release_cgroup {
        if let Err(e) = brummerd::cgroup::release() {
            eprintln!("brummerd: no cgroup controllers to release: {e}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mode = if args.user { Mode::User } else { Mode::System };
    let uid = nix::unistd::getuid().as_raw();
    let get = |k: &str| std::env::var(k).ok();
    let exists = |p: &str| std::path::Path::new(p).exists();
    let paths = Paths::for_mode(
        mode,
        &Env {
            get: &get,
            uid,
            exists: &exists,
        },
    )?;
    // Before the config: a cgroup limit is valid only where the containment offers it.
    // `--check-config` only looks; the daemon moves itself into its leaf (one thread yet).
    let cgroup = if args.check_config {
        brummerd::cgroup::probe()
    } else {
        brummerd::cgroup::setup()
    };
    let support = match &cgroup {
        Ok(t) => config::CgroupSupport::Cgroup {
            controllers: t.controllers().to_vec(),
        },
        // A check from a shell cannot see the cgroup the service will get.
        Err(_) if args.check_config => config::CgroupSupport::Unchecked,
        Err(e) => config::CgroupSupport::None { why: e.to_string() },
    };
    if !args.check_config {
        brummerd::cgroup::install(cgroup);
    }
    let load = LoadOptions {
        main: args.config.clone().unwrap_or(paths.config.clone()),
        dropin_dir: None,
        main_required: args.config.is_some(),
        as_root: nix::unistd::geteuid().is_root(),
        cgroup: support,
    };
    let config = match config::load(&load) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brummerd: invalid configuration:\n{e}");
            return Ok(ExitCode::from(1));
        }
    };
    if args.check_config {
        println!("{}", config_ok(&config));
        return Ok(ExitCode::SUCCESS);
    }
    if mode == Mode::System && !nix::unistd::geteuid().is_root() {
        anyhow::bail!("system mode needs root: run `brummerd --user` for a per-user daemon");
    }
    if !load.main.exists() {
        tracing::warn!(path = %load.main.display(), "no configuration file; starting with no programs");
    }
    let log_dir = config
        .daemon
        .log_dir
        .clone()
        .unwrap_or(paths.log_dir.clone());
    create_log_dir(&log_dir, mode)?;
    let socket = match (args.socket.clone(), paths.socket.clone()) {
        (Some(s), _) | (None, Ok(s)) => s,
        (None, Err(uid)) => return Err(brummerd::paths::PathError::NoRuntimeDir(uid).into()),
    };

    raise_nofile(config.processes.len());

    // Orphaned descendants of programs are re-parented to us, so stop can find and reap them.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;

    let opts = Options {
        mode,
        load,
        socket,
        unlink_socket: true,
        log_dir,
        state_dir: paths.state_dir.clone(),
        dbus: DbusOptions {
            mode: args.dbus,
            address: args.dbus_address,
        },
        binary: std::env::current_exe()
            .context("cannot tell which binary runs (for daemon-reexec)")?,
        args: std::env::args_os().skip(1).collect(),
    };
    serve(opts, config, handed)?;
    Ok(ExitCode::SUCCESS)
}

/// `--check-config`'s report.
fn config_ok(config: &config::Config) -> String {
    let files = if config.files.is_empty() {
        "no file (none exists)".to_string()
    } else {
        config
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "brummerd: configuration OK: {} process(es) from {files}",
        config.processes.len()
    )
}

/// Starts the runtime, the signal handlers and the listener, and runs the server until
/// SIGTERM or SIGINT.
fn serve(
    mut opts: Options,
    config: config::Config,
    handed: Option<brummerd::handover::Handover>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("brummerd")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut int =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            Ok::<_, std::io::Error>(async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            })
        }
        .await
        .context("cannot install signal handlers")?;
        // Socket activation (brummerd.socket) hands us the listener; otherwise we bind it,
        // only once SIGTERM/SIGINT are handled, so an early stop request still ends in a
        // clean shutdown that removes the socket. A passed socket belongs to the socket
        // unit: we must not unlink it when we stop.
        let handed_listener = handed.as_ref().and_then(|h| h.listener.map(|fd| (fd, h.unlink_socket)));
        // After a crash under systemd, the programs' descriptors come back from its store
        // with the sockets (never after a re-exec: the handover names what this image owns).
        let mut stored = Vec::new();
        let listener = if let Some((fd, unlink)) = handed_listener {
            // SAFETY: the previous image named this descriptor as its listener and nothing
            // else in this image owns it.
            let owned = unsafe { brummerd::handover::own(fd) };
            opts.unlink_socket = unlink;
            std::os::unix::net::UnixListener::from(owned)
        } else {
            let taken = brummerd::systemd::activation::take().context("socket activation")?;
            stored = taken.stored;
            match taken.listener {
                Some((listener, path)) => {
                    if let Some(path) = path {
                        opts.socket = path;
                    }
                    opts.unlink_socket = false;
                    tracing::info!(socket = %opts.socket.display(), "using the socket passed by systemd");
                    listener
                }
                None => brummerd::control::listener::bind(&opts.socket, opts.mode)?,
            }
        };
        server::run(opts, config, listener, handed, stored, shutdown).await?;
        anyhow::Ok(())
    })
}

/// glibc gives every thread that allocates its own arena (the runtime's workers, the log
/// threads, blocking threads); each keeps its freed memory and its own top chunk, resident
/// for nothing in a daemon that mostly idles (docs/performance.md, "Memory"). Threads still
/// allocate from their own tcache without the arena lock. Must run before the first thread
/// is spawned.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Lifts the soft open-file limit to the hard one (`nofile`), and warns when even that is
/// too small for every configured program to run at once.
fn raise_nofile(programs: usize) {
    let limit = match brummerd::nofile::raise() {
        Ok(l) => {
            if l.now != l.before {
                tracing::info!(
                    from = l.before,
                    to = l.now,
                    "raised the soft open-file limit (RLIMIT_NOFILE) to the hard limit; programs inherit it"
                );
            }
            l.now
        }
        Err(e) => {
            tracing::warn!(cause = %e, "cannot raise the soft open-file limit (RLIMIT_NOFILE)");
            rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX)
        }
    };
    if let Some(needed) = brummerd::nofile::shortfall(limit, programs) {
        tracing::warn!(
            limit,
            needed,
            programs,
            "open-file limit too low to run every program (5 descriptors each): raise LimitNOFILE= or ulimit -Hn"
        );
    }
}

fn create_log_dir(dir: &std::path::Path, mode: Mode) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
        let m = if mode == Mode::System { 0o750 } else { 0o700 };
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m));
    }
    Ok(())
}
