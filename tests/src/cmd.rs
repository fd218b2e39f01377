//! Running other programs from a test: with a deadline that only a hang reaches, line by line
//! from a long-running one, as another uid, and socat as a raw client.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// uid and gid of the unprivileged caller (`nobody`).
pub const NOBODY: u32 = 65534;

/// Runs `cmd` to its end with stdout and stderr captured; panics (after killing it) when it
/// is still running after `timeout`, so a hung command fails the test instead of hanging it.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    // wait_with_output drains both pipes while it waits, so a chatty command cannot block.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            // Not reaped yet (the waiter thread has not returned), so the pid is still ours.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = rx.recv().ok().and_then(Result::ok);
            panic!(
                "{cmd:?} still running after {timeout:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                out.as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default(),
                out.as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default(),
            );
        }
    }
}

/// Runs `cmd` (deadline [`crate::T`] x 4) and returns its output, whatever its status.
pub fn run(cmd: &mut Command) -> Output {
    output_within(cmd, crate::T * 4)
}

/// Runs `cmd`, asserts exit 0 and returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `setpriv` to uid/gid 65534 with no supplementary groups, running `program`; stdin null,
/// no BRUMMER_SOCKET, no colour. Needs root.
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program)
        .env("HOME", "/")
        .env_remove("BRUMMER_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Writes `input` to brummerd's socket through `socat` (`socat` is `Command::new("socat")`
/// or `as_nobody("/usr/bin/socat")`), closes its stdin and returns what came back.
pub fn socat(mut socat: Command, socket: &Path, input: &[u8]) -> Output {
    let mut child = socat
        .arg("-t5")
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socat (apt-get install socat)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to socat");
    // stdin is closed here: socat half-closes, the daemon answers and closes.
    let out = child.wait_with_output().expect("socat");
    assert!(out.status.success(), "socat: {out:?}");
    out
}

/// A long-running child whose stdout is read line by line in a thread; killed on Drop.
pub struct LineChild {
    pub child: Child,
    rx: mpsc::Receiver<String>,
}

impl LineChild {
    /// Spawns `cmd` with stdout piped (stderr as the caller set it).
    pub fn spawn(cmd: &mut Command) -> LineChild {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        Self::reading(child, stdout)
    }

    /// Spawns `cmd` with stderr piped and read line by line (stdout as the caller set it):
    /// for a daemon that logs to stderr.
    pub fn spawn_stderr(cmd: &mut Command) -> LineChild {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        Self::reading(child, stderr)
    }

    fn reading(child: Child, stdout: impl std::io::Read + Send + 'static) -> LineChild {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineChild { child, rx }
    }

    /// The next line, or None when none came within `timeout` (or stdout closed).
    pub fn next_within(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next line; panics when none comes within [`crate::T`].
    pub fn next_line(&self) -> String {
        self.next_within(crate::T)
            .unwrap_or_else(|| panic!("{:?} printed no line in time", self.child))
    }

    /// Lines up to and including the first one `stop` accepts.
    pub fn until(&self, mut stop: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut out = vec![];
        loop {
            let l = self.next_within(crate::T).unwrap_or_else(|| {
                panic!(
                    "{:?} printed no awaited line within {:?}; so far:\n{}",
                    self.child,
                    crate::T,
                    out.join("\n")
                )
            });
            let done = stop(&l);
            out.push(l);
            if done {
                return out;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
