//! One try of a probe: an exec, an HTTP GET, a TCP connect, or a look at the program's new
//! output lines. Each try ends within its timeout (an exec probe's process group is killed
//! then), and holds a permit of the shared semaphore while it runs, so that a thousand
//! programs probing at once cannot start a thousand processes or sockets together. Called
//! by the watcher (`watch/mod.rs`), never by a supervisor task.

use super::super::{Child, Children, ExitKind};
use crate::config::{HttpUrl, ProcessDef};
use crate::logs::ProcessLog;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probes (exec, http, tcp) running at once across all programs.
pub const CONCURRENT_PROBES: usize = 16;
/// Largest HTTP response head read; a longer one fails the probe.
const HTTP_HEAD_MAX: usize = 16 << 10;
/// Headers parsed in an HTTP response head.
const HTTP_HEADERS_MAX: usize = 64;
/// Lines read from the ring per look by a log probe (it looks again at once when it got
/// this many).
const LOG_BATCH: usize = 1024;

/// What one try found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// In words, naming what was probed: "HTTP 500 from http://...".
    pub detail: String,
}

impl Outcome {
    fn ok(detail: String) -> Outcome {
        Outcome { ok: true, detail }
    }
    fn fail(detail: String) -> Outcome {
        Outcome { ok: false, detail }
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Runs `argv` with the program's environment, working directory and user, in a process
/// group of its own; exit 0 is success. On timeout the group is killed and reaped.
pub async fn exec(
    argv: &[String],
    def: &ProcessDef,
    base_env: &[(OsString, OsString)],
    children: &Children,
    timeout: Duration,
) -> Outcome {
    let shown = argv.join(" ");
    let spawned = children.spawn_tracked(|| {
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..])
            .env_clear()
            .envs(base_env.iter().map(|(k, v)| (k, v)))
            .envs(&def.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(cwd) = &def.cwd {
            c.current_dir(cwd);
        }
        if let Some(u) = &def.user {
            c.uid(u.uid)
                .gid(def.group.as_ref().map_or(u.gid, |g| g.gid));
        } else if let Some(g) = &def.group {
            c.gid(g.gid);
        }
        let child = c.spawn()?;
        Ok((child.id() as i32, ()))
    });
    let pid = match spawned {
        Ok((pid, ())) => pid,
        Err(e) => return Outcome::fail(format!("cannot run {shown}: {e}")),
    };
    // Dropped with the try (its run ended meanwhile): the probe must not outlive it.
    let mut guard = KillOnDrop {
        pid,
        children,
        armed: true,
    };
    let child = match rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::other(format!("spawn returned pid {pid}")))
        .and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                .map_err(std::io::Error::from)
        })
        .and_then(crate::fd::watch_readable)
    {
        Ok(pidfd) => Child {
            pid,
            pidfd,
            started: Instant::now(),
            // A probe runs in brummerd's own cgroup, not in the program's.
            leaf: None,
        },
        // Cannot wait for it: the guard kills it, and the orphan reaper collects it.
        Err(e) => return Outcome::fail(format!("cannot watch {shown}: {e}")),
    };
    let out = match tokio::time::timeout(timeout, child.wait_exit()).await {
        Ok(ExitKind::Code(0)) => Outcome::ok(format!("{shown}: exit code 0")),
        Ok(ExitKind::Code(c)) => Outcome::fail(format!("{shown}: exit code {c}")),
        Ok(ExitKind::Signal(s)) => Outcome::fail(format!("{shown}: killed by signal {s}")),
        Ok(ExitKind::Unknown) => Outcome::fail(format!("{shown}: exit status unknown")),
        Err(_) => {
            kill_group(pid);
            let _ = child.wait_exit().await;
            Outcome::fail(format!("{shown}: no answer within {}", secs(timeout)))
        }
    };
    // Reaped: nothing left to kill.
    guard.armed = false;
    children.untrack(pid);
    out
}

/// Kills an exec probe's process group and hands its reaping to the orphan reaper, unless
/// disarmed after the probe was reaped.
struct KillOnDrop<'a> {
    pid: i32,
    children: &'a Children,
    armed: bool,
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pid);
            self.children.untrack(self.pid);
        }
    }
}

fn kill_group(pid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// GET `url` over HTTP/1.1; a 2xx status is success.
pub async fn http(url: &HttpUrl, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(code)) if (200..300).contains(&code) => {
            Outcome::ok(format!("HTTP {code} from {url}"))
        }
        Ok(Ok(code)) => Outcome::fail(format!("HTTP {code} from {url}")),
        Ok(Err(e)) => Outcome::fail(format!("{e} ({url})")),
        Err(_) => Outcome::fail(format!("no answer within {} from {url}", secs(timeout))),
    }
}

async fn get(url: &HttpUrl) -> Result<u16, String> {
    let mut s = TcpStream::connect(&url.authority)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", url.authority))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: brummerd-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target, url.authority
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before a complete answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return resp.code.ok_or_else(|| "an answer without a status".into());
            }
            Ok(httparse::Status::Partial) if buf.len() > HTTP_HEAD_MAX => {
                return Err("the answer's head is larger than 16 KiB".into());
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("not an HTTP answer: {e}")),
        }
    }
}

/// Connects to `addr` (`host:port`); a connection is success.
pub async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Outcome::ok(format!("connected to {addr}")),
        Ok(Err(e)) => Outcome::fail(format!("cannot connect to {addr}: {e}")),
        Err(_) => Outcome::fail(format!("no connection to {addr} within {}", secs(timeout))),
    }
}

/// A log probe's place in the program's output: the lines of one run after a point.
pub struct LogCursor {
    log: Arc<ProcessLog>,
    next: u64,
    generation: u32,
    re: regex::Regex,
    /// Lines the ring dropped before they were looked at.
    pub missed: u64,
}

impl LogCursor {
    /// Looks at lines of run `generation` from sequence number `from` on.
    pub fn new(log: Arc<ProcessLog>, from: u64, generation: u32, re: regex::Regex) -> LogCursor {
        LogCursor {
            log,
            next: from,
            generation,
            re,
            missed: 0,
        }
    }

    /// Reads the lines written since the last look; success names the first that matched.
    pub fn look(&mut self) -> Outcome {
        let mut lines = Vec::new();
        loop {
            lines.clear();
            let r = self
                .log
                .ring
                .read_from(self.next, LOG_BATCH, None, &mut lines);
            self.missed += r.missed;
            self.next = r.next_seq;
            for l in &lines {
                if l.meta.generation != self.generation {
                    continue;
                }
                let text = String::from_utf8_lossy(&l.bytes);
                if self.re.is_match(&text) {
                    let shown: String = text.chars().take(200).collect();
                    return Outcome::ok(format!("line {} matched: {shown}", l.meta.seq));
                }
            }
            if lines.len() < LOG_BATCH {
                break;
            }
        }
        Outcome::fail(format!("no line matched /{}/ yet", self.re.as_str()))
    }
}
