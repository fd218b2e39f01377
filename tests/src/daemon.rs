//! A real `brummerd --user` in a private temporary directory, and brummerctl against it.
//!
//! `Daemon::start(&config)` writes the config, starts brummerd with XDG paths inside the temp
//! dir and waits until the socket answers. Drop sends SIGTERM, waits for a clean exit and
//! then checks that no process started under it survives: every process inherits a unique
//! `BRUMMER_TEST_TAG` in its environment, which is how survivors are found, even ones that
//! left the process group. Failures print argv, status, output and the daemon's log.

use crate::cmd::output_within;
use crate::events::Events;
use crate::procfs::tagged;
use crate::rpc::Rpc;
use crate::{Config, T, wait_for};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one brummerctl call may take before it counts as hung (the largest read a test
/// makes is a few hundred thousand lines).
const CTL_DEADLINE: Duration = Duration::from_secs(120);

/// How long brummerd may take to exit on SIGTERM.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Folder holding the built `brummerd` and `brummerctl`: `$BRUMMER_BIN_DIR`, else the cargo
/// target folder this test binary runs from (target/<profile>/deps/.. ).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BRUMMER_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    dir.to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the workspace first (cargo build --workspace) or set BRUMMER_BIN_DIR",
        p.display()
    );
    p
}

/// `brummerd --user` with its XDG folders under `root` (run/, state/, cfg/) and no bus
/// address from our environment: for tests that run brummerd themselves (a refused config,
/// a missing bus), not through `Daemon`.
pub fn brummerd_in(root: &Path) -> Command {
    let mut c = Command::new(bin("brummerd"));
    c.arg("--user")
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env("XDG_STATE_HOME", root.join("state"))
        .env("XDG_CONFIG_HOME", root.join("cfg"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("BRUMMER_DBUS_ADDRESS")
        .stdin(Stdio::null());
    c
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How to start a daemon: its config, and extra arguments, environment and open-file limit.
pub struct DaemonBuilder {
    config: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    nofile_soft: Option<u64>,
    /// Both limits of RLIMIT_NOFILE, which brummerd then cannot raise.
    nofile: Option<u64>,
    /// RLIMIT_NPROC (with `as_nobody`: root is exempt from it).
    nproc: Option<u64>,
    as_nobody: bool,
}

impl DaemonBuilder {
    /// One more argument for brummerd.
    pub fn arg(mut self, a: impl Into<String>) -> DaemonBuilder {
        self.args.push(a.into());
        self
    }

    pub fn args<S: Into<String>>(self, args: impl IntoIterator<Item = S>) -> DaemonBuilder {
        args.into_iter().fold(self, |b, a| b.arg(a))
    }

    /// One more variable in brummerd's environment (and so its programs').
    pub fn env(mut self, key: &str, value: &str) -> DaemonBuilder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts brummerd with its soft open-file limit set to `soft` (the hard limit stays
    /// ours), as a shell's `ulimit -Sn` or systemd's default 1,024 would.
    pub fn nofile_soft(mut self, soft: u64) -> DaemonBuilder {
        self.nofile_soft = Some(soft);
        self
    }

    /// Starts brummerd with both its open-file limits at `limit`: it cannot raise them.
    pub fn nofile(mut self, limit: u64) -> DaemonBuilder {
        self.nofile = Some(limit);
        self
    }

    /// Starts brummerd with RLIMIT_NPROC at `limit` (tasks of its uid, threads included);
    /// only binding for an unprivileged uid, so use it with `as_nobody`.
    pub fn nproc(mut self, limit: u64) -> DaemonBuilder {
        self.nproc = Some(limit);
        self
    }

    /// Runs brummerd (in user mode) as uid and gid `nobody`, its temp dir handed to nobody.
    pub fn as_nobody(mut self) -> DaemonBuilder {
        self.as_nobody = true;
        self
    }

    /// Starts brummerd and waits for its socket.
    pub fn start(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("brummer-e2e-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        for sub in ["run", "state", "cfg/brummer"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let config_path = root.join("cfg/brummer/brummer.toml");
        std::fs::write(&config_path, &self.config).expect("write config");
        if self.as_nobody {
            chown_tree(&root, crate::NOBODY);
        }
        let tag = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            root.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        let mut d = Daemon {
            socket: root.join("run/brummer/brummer.sock"),
            log_dir: root.join("state/brummer/logs"),
            config: config_path,
            stderr: root.join("daemon.log"),
            dir,
            tag,
            child: None,
            how: self,
            passing: Vec::new(),
        };
        d.spawn();
        d
    }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log_dir: PathBuf,
    pub tag: String,
    child: Option<Child>,
    stderr: PathBuf,
    /// Arguments, environment and limit, used again by `restart_daemon`.
    how: DaemonBuilder,
    /// Descriptors being passed to the brummerd being spawned.
    passing: Vec<std::os::fd::OwnedFd>,
}

impl Daemon {
    /// Starts a daemon on `config` and waits for its socket.
    pub fn start(config: &Config) -> Daemon {
        Daemon::builder(config).start()
    }

    /// A daemon on `config` with more arguments, environment or limits.
    pub fn builder(config: &Config) -> DaemonBuilder {
        DaemonBuilder {
            config: config.render(),
            args: vec![],
            env: vec![],
            nofile_soft: None,
            nofile: None,
            nproc: None,
            as_nobody: false,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let root = self.dir.path();
        let mut v = vec![
            (
                "XDG_RUNTIME_DIR".into(),
                root.join("run").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                root.join("state").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".into(),
                root.join("cfg").display().to_string(),
            ),
            ("BRUMMER_TEST_TAG".into(), self.tag.clone()),
            ("BRUMMER_LOG".into(), "debug".into()),
        ];
        v.extend(self.how.env.iter().cloned());
        v
    }

    fn spawn(&mut self) {
        self.spawn_passing(Vec::new());
    }

    /// Starts brummerd; `passed` are given to it as systemd passes its store's descriptors
    /// (at 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID).
    fn spawn_passing(&mut self, passed: Vec<(String, std::os::fd::OwnedFd)>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .expect("daemon log");
        let mut cmd = if passed.is_empty() {
            Command::new(bin("brummerd"))
        } else {
            // LISTEN_PID must be brummerd's own pid: the shell's, which exec keeps.
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(r#"export LISTEN_PID=$$; exec "$0" "$@""#)
                .arg(bin("brummerd"))
                .env("LISTEN_FDS", passed.len().to_string())
                .env(
                    "LISTEN_FDNAMES",
                    passed
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            c
        };
        if !passed.is_empty() {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            // Moved above the range they go to first, so that none is overwritten before
            // it is placed.
            let high: Vec<std::os::fd::OwnedFd> = passed
                .iter()
                .map(|(_, fd)| {
                    use std::os::fd::FromRawFd;
                    let min = 64 + passed.len() as i32;
                    let n = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))
                        .expect("dup a passed descriptor");
                    // SAFETY: fcntl just made this descriptor for us.
                    unsafe { std::os::fd::OwnedFd::from_raw_fd(n) }
                })
                .collect();
            let raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
            // SAFETY: dup2 is async-signal-safe and the closure allocates nothing; each
            // target number is free to take (the child owns nothing there it still needs).
            unsafe {
                cmd.pre_exec(move || {
                    use std::os::fd::{BorrowedFd, IntoRawFd};
                    for (i, fd) in raw.iter().enumerate() {
                        let placed =
                            nix::unistd::dup2_raw(BorrowedFd::borrow_raw(*fd), 3 + i as i32)?;
                        // Stays open into brummerd.
                        let _ = placed.into_raw_fd();
                    }
                    Ok(())
                });
            }
            // Kept open until the spawn below.
            self.passing = high;
        }
        cmd.arg("--user")
            .arg("--config")
            .arg(&self.config)
            .args(&self.how.args)
            .envs(self.env())
            // Tests never touch a real session bus: D-Bus tests pass --dbus-address.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("BRUMMER_DBUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        if let Some(soft) = self.how.nofile_soft {
            use nix::sys::resource::{Resource, getrlimit, setrlimit};
            use std::os::unix::process::CommandExt;
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
            // SAFETY: setrlimit is async-signal-safe and the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
                });
            }
        }
        let (nofile, nproc, nobody) = (self.how.nofile, self.how.nproc, self.how.as_nobody);
        if nofile.is_some() || nproc.is_some() || nobody {
            use nix::sys::resource::{Resource, setrlimit};
            use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
            use std::os::unix::process::CommandExt;
            let id = crate::NOBODY;
            // SAFETY: setrlimit, setgroups, setgid and setuid are async-signal-safe system
            // calls and the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(n) = nofile {
                        setrlimit(Resource::RLIMIT_NOFILE, n, n)?;
                    }
                    if let Some(n) = nproc {
                        setrlimit(Resource::RLIMIT_NPROC, n, n)?;
                    }
                    if nobody {
                        setgroups(&[])?;
                        setgid(Gid::from_raw(id))?;
                        setuid(Uid::from_raw(id))?;
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn brummerd");
        self.passing.clear();
        self.child = Some(child);
        let sock = self.socket.clone();
        let pid = self.pid();
        wait_for("brummerd socket", Duration::from_secs(20), || {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "brummerd (pid {pid}) exited early with {st}\n{}",
                    self.daemon_log()
                );
            }
            UnixStream::connect(&sock).ok().map(|_| ())
        });
    }

    /// Restarts the daemon process (same dir, config and socket).
    pub fn restart_daemon(&mut self) {
        self.terminate().expect("clean shutdown before restart");
        self.spawn();
    }

    /// SIGKILL to brummerd, as a crash: its programs are left running (re-parented away),
    /// nothing is cleaned up. Waits until it is gone and reaped.
    pub fn kill_daemon(&mut self) {
        let mut child = self.child.take().expect("brummerd is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops brummerd cleanly (SIGTERM) without starting it again; [`start_again`] does.
    pub fn stop_daemon(&mut self) {
        self.terminate().expect("clean shutdown");
    }

    /// Starts brummerd again on the same dir, config and socket after [`kill_daemon`] or
    /// [`stop_daemon`], and waits for its socket.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "brummerd is still running");
        self.spawn();
    }

    /// [`start_again`](Self::start_again) as systemd starts a service that kept
    /// descriptors in its store: `passed` (from [`crate::FdStore::passed`]) are given to
    /// the new brummerd.
    pub fn start_again_passing(&mut self, passed: Vec<(String, std::os::fd::OwnedFd)>) {
        assert!(self.child.is_none(), "brummerd is still running");
        self.spawn_passing(passed);
    }

    /// Live processes of program `name` of this daemon: those whose environment carries
    /// this daemon's test tag and `BRUMMER_PROCESS=name` (what brummerd puts there).
    pub fn program_processes(&self, name: &str) -> Vec<u32> {
        crate::procfs::tagged_with(&self.tag, self.pid(), &format!("BRUMMER_PROCESS={name}"))
    }

    /// Live processes of every program of this daemon, by `BRUMMER_PROCESS`, in one pass
    /// over /proc.
    pub fn programs_processes(&self) -> BTreeMap<String, Vec<u32>> {
        crate::procfs::tagged_by_program(&self.tag, self.pid())
    }

    /// The runtime state file (beside the socket).
    pub fn runtime_state(&self) -> PathBuf {
        self.socket.with_file_name("brummer.state.json")
    }

    /// The enable overrides (in the state directory).
    pub fn enabled_file(&self) -> PathBuf {
        self.dir.path().join("state/brummer/enabled.json")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Replaces the config file (for a reload or a daemon restart).
    pub fn write_config(&self, config: &Config) {
        self.write_config_text(&config.render());
    }

    /// Replaces the config file with raw text: for broken TOML only.
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `brummerctl --socket SOCKET ARGS...` (no assertion on its status; a hung call fails).
    pub fn ctl(&self, args: &[&str]) -> Output {
        output_within(&mut self.ctl_cmd(args), CTL_DEADLINE)
    }

    pub fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("brummerctl"));
        c.arg("--socket").arg(&self.socket).args(args);
        c.env_remove("BRUMMER_SOCKET").env("NO_COLOR", "1");
        c.stdin(Stdio::null());
        c
    }

    /// Runs brummerctl and asserts exit 0; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        if !out.status.success() {
            panic!(
                "brummerctl {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.daemon_log()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `status --json`, parsed: name -> process object.
    pub fn status(&self) -> BTreeMap<String, Value> {
        let out = self.ctl_ok(&["--json", "status"]);
        let v: Value = serde_json::from_str(&out).expect("status --json is JSON");
        v["processes"]
            .as_array()
            .expect("processes array")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p.clone(),
                )
            })
            .collect()
    }

    pub fn state_of(&self, name: &str) -> Value {
        self.status()
            .remove(name)
            .unwrap_or_else(|| panic!("no process {name} in status"))
    }

    /// The pid status gives for `name`; panics when it has none.
    pub fn pid_of(&self, name: &str) -> u32 {
        let s = self.state_of(name);
        s["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} has no pid: {s:#}")) as u32
    }

    /// Waits until `name` is in `state`; returns its status object.
    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        wait_for(&format!("{name} to be {state}"), T, || {
            let s = self.state_of(name);
            (s["state"] == state).then_some(s)
        })
    }

    /// The lines `brummerctl logs -n 1000 NAME` prints.
    pub fn log_lines(&self, name: &str) -> Vec<String> {
        self.ctl_ok(&["logs", "-n", "1000", name])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `name` has logged the line `line`; returns all its lines so far.
    pub fn wait_logged(&self, name: &str, line: &str) -> Vec<String> {
        wait_for(&format!("{name} to log {line:?}"), T, || {
            let l = self.log_lines(name);
            l.iter().any(|x| x == line).then_some(l)
        })
    }

    /// A raw JSON-RPC connection to the socket.
    pub fn rpc(&self) -> Rpc {
        Rpc::connect(&self.socket)
    }

    /// A new connection subscribed to the event stream.
    pub fn events(&self) -> Events<'_> {
        Events::subscribe(self)
    }

    /// SIGTERM and wait for exit; returns the exit status, or an error when brummerd was
    /// not running or did not exit within 30 s (then it is killed).
    pub fn terminate(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".into());
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "brummerd did not exit within {SHUTDOWN_DEADLINE:?} of SIGTERM"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asserts that none of `pids` is alive and that no process of any program is left, e.g.
    /// right after a stop returned (it returns only once nothing of its program is left).
    pub fn assert_no_program_process(&self, pids: &[u32], after: &str) {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| crate::pid_alive(p))
            .collect();
        let tagged = self.tagged_processes();
        assert!(
            alive.is_empty() && tagged.is_empty(),
            "alive right after {after}: {alive:?}, all of the programs': {tagged:?}\n{}",
            self.daemon_log()
        );
    }

    /// Pids of live processes carrying this daemon's tag, other than the daemon itself.
    pub fn tagged_processes(&self) -> Vec<u32> {
        tagged(&self.tag, self.pid())
    }
}

/// Hands `dir` and everything under it to `uid` (same gid), for a brummerd run as nobody.
fn chown_tree(dir: &Path, uid: u32) {
    let id = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(dir, id, gid).unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            chown_tree(&p, uid);
        } else {
            nix::unistd::chown(&p, id, gid)
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let running = self.child.is_some();
        let result = self.terminate();
        // Whatever the test did with the daemon, nothing it started outlives the test.
        let survivors = self.tagged_processes();
        for &p in &survivors {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !running {
            // The test stopped brummerd itself and checked what it wanted of that.
            return;
        }
        if std::thread::panicking() {
            eprintln!("--- brummerd log ---\n{}", self.daemon_log());
            return;
        }
        match result {
            Ok(st) if st.success() => {}
            Ok(st) => panic!(
                "brummerd exited with {st} on SIGTERM\n{}",
                self.daemon_log()
            ),
            Err(e) => panic!("{e}\n{}", self.daemon_log()),
        }
        assert!(
            survivors.is_empty(),
            "processes survived brummerd's shutdown: {survivors:?}\n{}",
            self.daemon_log()
        );
    }
}
