//! Starting a program: a new session (so the whole tree can be signalled as a group),
//! stdin from /dev/null, stdout and stderr to pipes, systemd's per-service variables
//! removed, signal mask and dispositions reset, credentials dropped when configured, and a
//! pidfd opened before anyone could reap the child (see `children`).
//!
//! Two ways to get there. A program without `user`/`group`, rlimits or a cgroup is started with glibc's
//! `posix_spawn`, which uses `clone(CLONE_VM|CLONE_VFORK)`: no copy of brummerd's page
//! tables in the parent and no teardown of that copy at exec in the child (the bulk of the
//! cost of starting many programs with `fork`; docs/architecture.md), and the exec error
//! comes back without a pipe round trip. `posix_spawn` cannot call `setgroups`/`setgid`/`setuid`,
//! `setrlimit`, or enter a cgroup (glibc 2.39's `posix_spawnattr_setcgroup_np` is newer than
//! the glibc brummerd is built for), so such a program is forked (`std::process::Command`
//! with a `pre_exec` hook). Both set up the same child. A forked child enters its cgroup
//! before it execs, so nothing it starts can be outside it.

use super::children::Children;
use crate::config::ProcessDef;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use thiserror::Error;

/// Variables that describe brummerd's own relation to systemd; a child that saw them would
/// try to notify or take over sockets meant for us.
const SCRUBBED_ENV: [&str; 8] = [
    "NOTIFY_SOCKET",
    "FDSTORE",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "JOURNAL_STREAM",
];

/// Pipe buffer asked for each output pipe: fewer wake-ups per megabyte for chatty programs.
/// The kernel may refuse (pipe-max-size, per-user limits); the default 64 KiB then stays.
const PIPE_SIZE: usize = 1024 * 1024;

/// execvp's search path when the child's environment has no PATH (glibc's `_CS_PATH`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The shell execvp hands a file to when the kernel cannot execute it (ENOEXEC: a script
/// without `#!`).
const SHELL: &CStr = c"/bin/sh";

// `spawn_direct` sets bits of the first word of a sigset_t by hand.
const _: () = assert!(std::mem::size_of::<libc::sigset_t>() >= 8);

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("command {program:?} not found (check the path or PATH)")]
    NotFound { program: String },
    #[error("permission denied running {program:?} (is it executable? is cwd accessible?)")]
    PermissionDenied { program: String },
    #[error("cannot start {program:?}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start {program:?}: brummerd is out of file descriptors ({source}; its limit is {limit}, of which it keeps the last 32 for its clients): raise LimitNOFILE= in brummerd.service (or ulimit -n), or run fewer programs"
    )]
    OutOfFds {
        program: String,
        limit: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start {program:?}: the system refused a new process ({source}): the process limit of brummerd's user (RLIMIT_NPROC {limit}, LimitNPROC=) or of its cgroup (pids.max, TasksMax=) is reached; raise it, or look for a program that forks without end"
    )]
    ProcessLimit {
        program: String,
        limit: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open a pidfd for pid {pid}: {source}")]
    Pidfd {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot start {program:?}: {key} = {value} is above brummerd's own hard limit ({hard}), and raising it needs CAP_SYS_RESOURCE, which brummerd lacks: lower {key}, or raise the limit for brummerd (LimitNOFILE=, LimitCORE=, LimitNPROC= in its unit)"
    )]
    Rlimit {
        program: String,
        key: &'static str,
        value: String,
        hard: String,
    },
    #[error("cannot resolve supplementary groups of user {user:?}: {source}")]
    Groups { user: String, source: nix::Error },
}

/// A freshly started child.
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The environment every child starts from: brummerd's own, less systemd's per-service
/// variables.
pub fn base_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| !SCRUBBED_ENV.iter().any(|s| k == s))
        .collect()
}

/// Spawns the program; `extra` (its NOTIFY_SOCKET, WATCHDOG_USEC) goes on top of its
/// environment; `cgroup` is the `cgroup.procs` of the leaf it is to run in, open for
/// writing.
pub fn spawn(
    def: &ProcessDef,
    base_env: &[(OsString, OsString)],
    extra: &[(OsString, OsString)],
    children: &Children,
    cgroup: Option<&OwnedFd>,
) -> Result<Spawned, SpawnError> {
    let argv = def.command.argv();
    let program = argv.first().cloned().unwrap_or_default();
    let creds = credentials(def)?;
    check_rlimits(def, &program)?;
    let setup = ChildSetup {
        creds: creds.clone(),
        cgroup_procs: cgroup.map(AsRawFd::as_raw_fd),
        rlimits: def.rlimits,
    };
    let env = child_env(base_env, def, creds.as_ref(), extra);

    let map_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound {
            program: program.clone(),
        },
        std::io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
            program: program.clone(),
        },
        _ => match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => SpawnError::OutOfFds {
                program: program.clone(),
                limit: rlimit(rustix::process::Resource::Nofile),
                source: e,
            },
            Some(libc::EAGAIN) => SpawnError::ProcessLimit {
                program: program.clone(),
                limit: rlimit(rustix::process::Resource::Nproc),
                source: e,
            },
            _ => SpawnError::Io {
                program: program.clone(),
                source: e,
            },
        },
    };

    let (stdout, out_w) = output_pipe().map_err(map_err)?;
    let (stderr, err_w) = output_pipe().map_err(map_err)?;
    keep_reserve(&err_w).map_err(map_err)?;
    let (pid, pidfd) = children
        .spawn_tracked(|| {
            // The write ends move in here and are closed when this returns: the child has
            // its own copies, and a copy left in brummerd would keep EOF from ever coming.
            let pid = if setup.is_plain() {
                spawn_direct(&argv, &env, def.cwd.as_deref(), out_w, err_w)?
            } else {
                spawn_forked(&argv, &env, def.cwd.as_deref(), out_w, err_w, &setup)?
            };
            // Opened while the spawn gate is held: the child cannot be reaped (so its pid
            // cannot be reused) before the pidfd pins it.
            let pidfd = rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidData)?,
                rustix::process::PidfdFlags::empty(),
            )
            .map_err(std::io::Error::from);
            Ok((pid, pidfd))
        })
        .map_err(map_err)?;
    let pidfd = match pidfd {
        Ok(fd) => fd,
        Err(source) => {
            // Without a pidfd nobody would ever wait for the child: it would run
            // unsupervised and stay a zombie. It has only just started, so end it now.
            discard(pid);
            children.untrack(pid);
            return Err(SpawnError::Pidfd { pid, source });
        }
    };
    Ok(Spawned {
        pid,
        pidfd,
        stdout,
        stderr,
    })
}

/// The soft limit of `resource`, for an error message.
fn rlimit(resource: rustix::process::Resource) -> String {
    match rustix::process::getrlimit(resource).current {
        Some(n) => n.to_string(),
        None => "unlimited".into(),
    }
}

/// Kills a child that cannot be supervised, with anything it started (it leads its own
/// process group), and reaps it. It has only just been spawned and SIGKILL cannot be
/// caught, so the wait is short.
fn discard(pid: i32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
}

/// One output pipe: (our read end, non-blocking; the child's write end). Both close on
/// exec, so a child spawned at the same moment by another thread inherits neither.
/// Descriptors a spawn must leave free under brummerd's open-file limit, for its clients
/// (two per connection), D-Bus and log files: without them, programs that took every
/// descriptor made brummerd unreachable, so nobody could even stop them.
const FD_RESERVE: u64 = 32;

/// Fails with EMFILE when `newest` (the last descriptor this spawn opened) lies within the
/// reserve. The kernel hands out the lowest free number, so every descriptor below it is in
/// use, without a count of /proc/self/fd on every spawn; descriptors open above it (a
/// program stopped, leaving a hole that this spawn filled) are not seen, so the reserve is
/// a floor kept in most cases, not a guarantee.
fn keep_reserve(newest: &OwnedFd) -> io::Result<()> {
    let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current else {
        return Ok(());
    };
    if newest.as_raw_fd() as u64 + FD_RESERVE >= limit {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    Ok(())
}

fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let _ = rustix::pipe::fcntl_setpipe_size(r.as_fd(), PIPE_SIZE);
    set_nonblocking(&r);
    Ok((r, w))
}

/// brummerd's environment (less systemd's variables), the program's `env` on top, then
/// USER/LOGNAME/HOME of the user it runs as, then `extra`.
fn child_env(
    base: &[(OsString, OsString)],
    def: &ProcessDef,
    creds: Option<&ChildCreds>,
    extra: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = base.iter().cloned().collect();
    env.extend(def.env.iter().map(|(k, v)| (k.into(), v.into())));
    // After the program's own env, which cannot override them.
    super::leftover::mark(&mut env, base, &def.name);
    if let Some(c) = creds {
        if let Some(name) = &c.name {
            env.insert("USER".into(), name.into());
            env.insert("LOGNAME".into(), name.into());
        }
        if let Some(home) = &c.home {
            env.insert("HOME".into(), home.into());
        }
    }
    env.extend(extra.iter().cloned());
    env.into_iter().collect()
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte in an argument, variable or path",
        )
    })
}

/// A posix_spawn* return value (an error number, not -1 + errno) as a `Result`.
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// File actions, initialised in place and destroyed on drop (std keeps them in place too:
/// POSIX does not promise they survive a move).
struct FileActions<'a>(&'a mut MaybeUninit<libc::posix_spawn_file_actions_t>);

impl FileActions<'_> {
    fn ptr(&mut self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.as_mut_ptr()
    }
}

impl Drop for FileActions<'_> {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful posix_spawn_file_actions_init.
        unsafe {
            libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr());
        }
    }
}

struct SpawnAttr<'a>(&'a mut MaybeUninit<libc::posix_spawnattr_t>);

impl SpawnAttr<'_> {
    fn ptr(&mut self) -> *mut libc::posix_spawnattr_t {
        self.0.as_mut_ptr()
    }
}

impl Drop for SpawnAttr<'_> {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful posix_spawnattr_init.
        unsafe {
            libc::posix_spawnattr_destroy(self.0.as_mut_ptr());
        }
    }
}

/// Starts the program with `posix_spawn` (vfork + exec): returns once the child has
/// exec'd, or with the exec's error (the failed child is then already reaped by glibc).
fn spawn_direct(
    argv: &[String],
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
    out_w: OwnedFd,
    err_w: OwnedFd,
) -> io::Result<i32> {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let path = resolve(program, env, cwd)?;
    let path = cstring(path.as_os_str().as_bytes())?;
    let args = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = env_block(env)?;
    let cwd = cwd.map(|c| cstring(c.as_os_str().as_bytes())).transpose()?;

    let mut fa_mem = MaybeUninit::uninit();
    // SAFETY: initialises the memory `FileActions` then owns.
    check(unsafe { libc::posix_spawn_file_actions_init(fa_mem.as_mut_ptr()) })?;
    let mut fa = FileActions(&mut fa_mem);
    let mut attr_mem = MaybeUninit::uninit();
    // SAFETY: as above.
    check(unsafe { libc::posix_spawnattr_init(attr_mem.as_mut_ptr()) })?;
    let mut attr = SpawnAttr(&mut attr_mem);
    child_files(&mut fa, &out_w, &err_w, cwd.as_deref())?;
    child_signals_and_session(&mut attr)?;
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|s| s.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    let run = |path: &CStr, args: &[&CStr], fa: &mut FileActions, attr: &mut SpawnAttr| {
        let mut argv_ptrs: Vec<*mut libc::c_char> =
            args.iter().map(|s| s.as_ptr().cast_mut()).collect();
        argv_ptrs.push(std::ptr::null_mut());
        let mut pid: libc::pid_t = 0;
        // SAFETY: path, argv and envp are NUL-terminated arrays of live C strings; the
        // file actions and attributes are initialised.
        check(unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                fa.ptr(),
                attr.ptr(),
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            )
        })?;
        Ok::<_, io::Error>(pid)
    };
    let arg_refs: Vec<&CStr> = args.iter().map(CString::as_c_str).collect();
    let pid = match run(&path, &arg_refs, &mut fa, &mut attr) {
        // What execvp does with a file the kernel cannot run (a script without `#!`).
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            let mut sh_args = vec![SHELL, path.as_c_str()];
            sh_args.extend(arg_refs.iter().skip(1));
            run(SHELL, &sh_args, &mut fa, &mut attr)?
        }
        r => r?,
    };
    Ok(pid)
}

/// `KEY=VALUE` strings for the child's environment.
fn env_block(env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    env.iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect()
}

/// The child's descriptors and directory: stdin from /dev/null, stdout and stderr to the
/// capture pipes, `cwd` when given.
fn child_files(
    fa: &mut FileActions,
    out_w: &OwnedFd,
    err_w: &OwnedFd,
    cwd: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is to a live, initialised object or NUL-terminated string that
    // outlives the calls; the fds stay open until the spawn returned (glibc copies the
    // strings it keeps).
    unsafe {
        check(libc::posix_spawn_file_actions_addopen(
            fa.ptr(),
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        ))?;
        // dup2 clears close-on-exec on the copy; brummerd's own fds 0-2 are always open
        // (Rust's runtime opens /dev/null on closed ones), so a pipe is never one of them.
        check(libc::posix_spawn_file_actions_adddup2(
            fa.ptr(),
            out_w.as_raw_fd(),
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            fa.ptr(),
            err_w.as_raw_fd(),
            2,
        ))?;
        if let Some(cwd) = cwd {
            check(libc::posix_spawn_file_actions_addchdir_np(
                fa.ptr(),
                cwd.as_ptr(),
            ))?;
        }
    }
    Ok(())
}

/// A new session, no signal blocked, every signal at its default action.
fn child_signals_and_session(attr: &mut SpawnAttr) -> io::Result<()> {
    // SAFETY: the sets are initialised by sigemptyset/sigfillset before use, and the
    // attributes object is initialised.
    unsafe {
        let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        check(libc::posix_spawnattr_setsigmask(attr.ptr(), empty.as_ptr()))?;
        // Every signal to its default action, as systemd does for a service: an ignored
        // SIGPIPE (Rust's runtime ignores it) or a disposition inherited by brummerd
        // would otherwise survive the exec.
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        // glibc's sigfillset (and sigaddset) leave out its two internal signals, 32 and
        // 33, and its posix_spawn sets those to SIG_IGN in the child unless they are in
        // this set; an ignored signal survives the exec (seen with glibc 2.36:
        // SigIgn 0x180000000). Their bits are set directly: a sigset_t is the kernel's
        // bitmap, signal n at bit n-1 of an array of u64 words.
        let words = all.as_mut_ptr().cast::<u64>();
        *words |= (1 << 31) | (1 << 32);
        check(libc::posix_spawnattr_setsigdefault(
            attr.ptr(),
            all.as_ptr(),
        ))?;
        let flags = libc::POSIX_SPAWN_SETSID
            | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short
            | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short;
        check(libc::posix_spawnattr_setflags(attr.ptr(), flags))?;
    }
    Ok(())
}

/// execvp's PATH search, done before the spawn: `posix_spawnp` would search brummerd's own
/// PATH, not the child's. A name with a slash is used as it is (relative to `cwd` at exec).
/// The first executable regular file wins; if none does, a candidate that exists but may
/// not be executed makes it "permission denied", as with execvp.
fn resolve(program: &str, env: &[(OsString, OsString)], cwd: Option<&Path>) -> io::Result<PathBuf> {
    if program.is_empty() {
        return Err(io::ErrorKind::NotFound.into());
    }
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(OsStr::new(DEFAULT_PATH), |(_, v)| v.as_os_str());
    let mut denied = false;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        // An empty entry is the current directory, as in execvp.
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        // A relative candidate is looked up where the child will run.
        let on_disk = match cwd {
            Some(c) if candidate.is_relative() => c.join(&candidate),
            _ => candidate.clone(),
        };
        match rustix::fs::access(&on_disk, rustix::fs::Access::EXEC_OK) {
            Ok(()) if on_disk.is_file() => return Ok(candidate),
            Ok(()) => denied = true,
            Err(rustix::io::Errno::ACCESS) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::NotFound
    }
    .into())
}

/// What a forked child does between fork and exec besides what every child gets.
#[derive(Debug, Clone)]
struct ChildSetup {
    creds: Option<ChildCreds>,
    /// `cgroup.procs` of its leaf, open for writing (closed on exec).
    cgroup_procs: Option<std::os::fd::RawFd>,
    rlimits: crate::config::Rlimits,
}

impl ChildSetup {
    /// Nothing `posix_spawn` cannot do.
    fn is_plain(&self) -> bool {
        self.creds.is_none() && self.cgroup_procs.is_none() && self.rlimits.is_empty()
    }
}

/// Refuses, with the reason, an rlimit the child could not set: one above brummerd's hard
/// limit without CAP_SYS_RESOURCE (the child's setrlimit would fail with a bare EPERM).
fn check_rlimits(def: &ProcessDef, program: &str) -> Result<(), SpawnError> {
    use rustix::process::Resource;
    let r = &def.rlimits;
    let show = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    for (key, resource, want) in [
        ("nofile", Resource::Nofile, r.nofile),
        ("core", Resource::Core, r.core),
        ("nproc", Resource::Nproc, r.nproc),
    ] {
        let Some(want) = want else { continue };
        let hard = rustix::process::getrlimit(resource)
            .maximum
            .unwrap_or(u64::MAX);
        if want > hard && !has_cap_sys_resource() {
            return Err(SpawnError::Rlimit {
                program: program.to_owned(),
                key,
                value: show(want),
                hard: show(hard),
            });
        }
    }
    Ok(())
}

/// Whether brummerd's effective capabilities include CAP_SYS_RESOURCE (bit 24).
fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// setrlimit with soft and hard limit alike (async-signal-safe).
fn set_rlimit(resource: libc::__rlimit_resource_t, value: Option<u64>) -> io::Result<()> {
    let Some(v) = value else { return Ok(()) };
    let v = if v == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        v
    };
    let lim = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit reads one initialised rlimit.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the program with fork + exec: the cgroup, rlimits and credentials in between.
fn spawn_forked(
    argv: &[String],
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
    out_w: OwnedFd,
    err_w: OwnedFd,
    setup: &ChildSetup,
) -> io::Result<i32> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let setup = setup.clone();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setsid, write, setrlimit, rt_sigaction, setgroups,
    // setgid, setuid) on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some(fd) = setup.cgroup_procs {
                // "0" moves the writer: this child, before it can start anything.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            set_rlimit(libc::RLIMIT_NOFILE, setup.rlimits.nofile)?;
            set_rlimit(libc::RLIMIT_CORE, setup.rlimits.core)?;
            set_rlimit(libc::RLIMIT_NPROC, setup.rlimits.nproc)?;
            // Same dispositions as the posix_spawn path (std only resets SIGPIPE).
            for sig in 1..=64 {
                default_disposition(sig);
            }
            if let Some(creds) = &setup.creds {
                // Order matters: groups and gid while still privileged, uid last.
                nix::unistd::setgroups(&creds.groups)?;
                nix::unistd::setgid(creds.gid)?;
                nix::unistd::setuid(creds.uid)?;
            }
            Ok(())
        });
    }
    // `cmd` (and with it the parent's copies of the write ends) is dropped on return.
    let child = cmd.spawn()?;
    Ok(child.id() as i32)
}

/// Sets `sig` to SIG_DFL with the raw system call (async-signal-safe): glibc's sigaction
/// refuses its two internal signals (32, 33), which brummerd may have inherited ignored
/// (a parent that started it with glibc's posix_spawn leaves them so). Errors (SIGKILL,
/// SIGSTOP, numbers past the last signal) change nothing and are ignored.
fn default_disposition(sig: libc::c_int) {
    // All zero is SIG_DFL without flags in every architecture's kernel `struct sigaction`;
    // 64 bytes is more than the largest of them, so the kernel reads only zeros.
    let act = [0u64; 8];
    // SAFETY: rt_sigaction reads a sigaction from `act` and writes nothing (old = NULL);
    // 8 is the kernel's signal set size on the 64-bit targets brummerd is built for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            act.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// uid, gid, user name and home directory to run as, resolved in the parent (name lookups
/// are not async-signal-safe).
fn credentials(def: &ProcessDef) -> Result<Option<ChildCreds>, SpawnError> {
    let Some(user) = &def.user else {
        // group only: keep our uid, switch gid, no supplementary groups.
        return Ok(def.group.as_ref().map(|g| ChildCreds {
            uid: nix::unistd::getuid(),
            gid: nix::unistd::Gid::from_raw(g.gid),
            groups: vec![nix::unistd::Gid::from_raw(g.gid)],
            name: None,
            home: None,
        }));
    };
    let gid = def.group.as_ref().map_or(user.gid, |g| g.gid);
    let cname = std::ffi::CString::new(user.name.clone()).map_err(|_| SpawnError::Groups {
        user: user.name.clone(),
        source: nix::Error::EINVAL,
    })?;
    let groups =
        nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid)).map_err(|source| {
            SpawnError::Groups {
                user: user.name.clone(),
                source,
            }
        })?;
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(user.uid))
        .ok()
        .flatten()
        .map(|u| u.dir);
    Ok(Some(ChildCreds {
        uid: nix::unistd::Uid::from_raw(user.uid),
        gid: nix::unistd::Gid::from_raw(gid),
        groups,
        name: Some(user.name.clone()),
        home,
    }))
}

#[derive(Debug, Clone)]
struct ChildCreds {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
    name: Option<String>,
    home: Option<std::path::PathBuf>,
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    /// Gone or a zombie (an orphan's reaper may be a PID 1 that never reaps).
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => s
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_discarded_child_is_killed_with_its_group_and_reaped() {
        #[expect(clippy::zombie_processes, reason = "`discard` reaps it with waitpid")]
        let mut child = Command::new("sh")
            .args(["-c", "sleep 1000 & echo $!; exec sleep 1000"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("grandchild pid");
        let grandchild: i32 = line.trim().parse().expect("pid");
        let pid = child.id() as i32;

        discard(pid);

        // Reaped by `discard`: nothing left to wait for.
        assert_eq!(
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ECHILD)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dead(grandchild) {
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
