//! Harness for the end-to-end tests: the real `brummerd` and `brummerctl` binaries, real
//! child processes, the real socket, in a private temporary directory per test.
//!
//! `Daemon::start(config)` writes the config, starts `brummerd --user` with XDG paths
//! inside the temp dir and waits until the socket answers. `Daemon`'s Drop sends SIGTERM,
//! waits for a clean exit and then checks that no process started under it survives (every
//! process inherits a unique `BRUMMER_TEST_TAG` in its environment, which is how survivors
//! are found, even ones that left the process group). Failures print argv, status, output
//! and the daemon's log.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Polls `f` every few milliseconds until it returns `Some`, or panics naming `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log_dir: PathBuf,
    pub tag: String,
    child: Option<Child>,
    stderr: PathBuf,
    extra_env: Vec<(String, String)>,
    /// Arguments given to `start_with`, used again by `restart_daemon`.
    args: Vec<String>,
    /// Soft RLIMIT_NOFILE brummerd is started with (`start_with_nofile`); None: ours.
    nofile_soft: Option<u64>,
}

impl Daemon {
    /// Starts a daemon on `config` (TOML text) and waits for its socket.
    pub fn start(config: &str) -> Daemon {
        Daemon::start_with(config, &[])
    }

    /// Like `start`, with extra arguments for brummerd.
    pub fn start_with(config: &str, args: &[&str]) -> Daemon {
        Daemon::start_full(config, args, &[])
    }

    /// Like `start`, with extra arguments and extra environment for brummerd.
    pub fn start_full(config: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_inner(config, args, env, None)
    }

    /// Like `start`, with brummerd's soft open-file limit set to `soft` (the hard limit
    /// stays ours), as a shell's `ulimit -Sn` or systemd's default 1,024 would.
    pub fn start_with_nofile(config: &str, soft: u64) -> Daemon {
        Daemon::start_inner(config, &[], &[], Some(soft))
    }

    fn start_inner(
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        nofile_soft: Option<u64>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("brummer-e2e-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        for sub in ["run", "state", "cfg/brummer"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        let config_path = root.join("cfg/brummer/brummer.toml");
        std::fs::write(&config_path, config).expect("write config");
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
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            nofile_soft,
        };
        d.spawn();
        d
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
        v.extend(self.extra_env.iter().cloned());
        v
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .expect("daemon log");
        let mut cmd = Command::new(bin("brummerd"));
        cmd.arg("--user")
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .envs(self.env())
            // Tests never touch a real session bus: D-Bus tests pass --dbus-address.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("BRUMMER_DBUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        if let Some(soft) = self.nofile_soft {
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
        let child = cmd.spawn().expect("spawn brummerd");
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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `brummerctl --socket SOCKET ARGS...` (no assertion).
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_cmd(args).output().expect("run brummerctl")
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
    pub fn status(&self) -> std::collections::BTreeMap<String, Value> {
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

    /// Waits until `name` is in `state`; returns its status object.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("{name} to be {state}"), timeout, || {
            let s = self.state_of(name);
            (s["state"] == state).then_some(s)
        })
    }

    /// A raw JSON-RPC connection to the socket.
    pub fn rpc(&self) -> Rpc {
        Rpc::connect(&self.socket)
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("not running".into());
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("brummerd did not exit within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Pids of live processes carrying this daemon's tag, other than the daemon itself.
    pub fn tagged_processes(&self) -> Vec<i32> {
        tagged(&self.tag, self.pid() as i32)
    }
}

/// Live (non-zombie) processes whose environment holds BRUMMER_TEST_TAG=tag.
pub fn tagged(tag: &str, except: i32) -> Vec<i32> {
    let needle = format!("BRUMMER_TEST_TAG={tag}");
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == except || pid == std::process::id() as i32 {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if zombie {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// True when `pid` names a live process (it exists in /proc and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let result = self.terminate();
        let survivors = self.tagged_processes();
        for &p in &survivors {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
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

/// A raw JSON-RPC client over the socket, for protocol-level tests.
pub struct Rpc {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Rpc {
    pub fn connect(path: &Path) -> Rpc {
        let stream = UnixStream::connect(path).expect("connect to brummerd");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Rpc {
            stream,
            reader,
            next_id: 1,
        }
    }

    /// Sends raw bytes (a line, or garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one line and parses it as JSON.
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read from brummerd");
        assert!(n > 0, "brummerd closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Calls `subscribe` and returns the subscription's `result` (subscription, seq).
    pub fn subscribe(&mut self) -> Value {
        let r = self.call("subscribe", serde_json::json!({}));
        assert!(
            r["result"]["subscription"].is_u64(),
            "subscribe failed: {r}"
        );
        r["result"].clone()
    }

    /// Reads the next notification (a line without `id`), waiting at most `timeout`;
    /// None when nothing arrived in time.
    pub fn next_notification(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("brummerd closed the connection"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read from brummerd: {e}"),
            }
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            if v.get("id").is_none() {
                return Some(v);
            }
        }
    }

    /// Sends a request and returns the response with its id (skipping notifications).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        self.send_raw(&line);
        loop {
            let v = self.read();
            if v.get("id") == Some(&Value::from(id)) {
                return v;
            }
        }
    }
}

/// A private `dbus-daemon` on a unix socket in its own temp dir, killed on Drop.
///
/// `session()` is permissive (any uid may connect, own and call); `system_with_policy`
/// mimics Debian's system bus (method calls denied by default) and includes the given
/// policy file, the way /usr/share/dbus-1/system.d/ files are included.
pub struct DbusDaemon {
    pub dir: tempfile::TempDir,
    /// The bus address, for `--dbus-address` and `busctl --address=`.
    pub address: String,
    child: Child,
}

impl DbusDaemon {
    pub fn session() -> DbusDaemon {
        DbusDaemon::start(
            "session",
            r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>"#,
        )
    }

    pub fn system_with_policy(policy: &Path) -> DbusDaemon {
        let body = format!(
            r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{}</include>"#,
            policy.display()
        );
        DbusDaemon::start("system", &body)
    }

    fn start(kind: &str, policy: &str) -> DbusDaemon {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("brummer-bus-")
            .tempdir()
            .expect("tempdir");
        // Other uids (the setpriv tests) must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod bus dir");
        let sock = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        let text = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
            sock.display()
        );
        std::fs::write(&conf, text).expect("write bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--print-address", "--nofork", "--nopidfile", "--nosyslog"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon (apt-get install dbus)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        // dbus-daemon prints the address once it listens.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the bus address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        DbusDaemon {
            dir,
            address,
            child,
        }
    }

    /// `--dbus=on --dbus-address=ADDRESS`, for `Daemon::start_with`.
    pub fn daemon_args(&self) -> Vec<String> {
        vec![
            "--dbus=on".into(),
            format!("--dbus-address={}", self.address),
        ]
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
