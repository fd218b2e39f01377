//! The brummerctl binary as a user runs it: exit codes, stderr messages, and output against
//! a canned fake daemon (a thread answering JSON-RPC lines on a temp socket). The real
//! daemon is exercised by the end-to-end tests in `tests/`.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;

fn ctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brummerctl"));
    c.env_remove("BRUMMER_SOCKET").env("NO_COLOR", "1");
    c
}

fn run(args: &[&str], socket: &std::path::Path) -> Output {
    ctl()
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("brummerctl-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves one connection: answers `hello` and hands every other request to `answer`.
fn fake_daemon(
    dir: &TempDir,
    answer: impl Fn(&str, &Value) -> Value + Send + 'static,
) -> (PathBuf, thread::JoinHandle<()>) {
    let path = dir.0.join("brummer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let h = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        for line in reader.lines() {
            let Ok(line) = line else { return };
            let req: Value = serde_json::from_str(&line).unwrap();
            let method = req["method"].as_str().unwrap();
            let reply = if method == "hello" {
                json!({"jsonrpc": "2.0", "id": req["id"], "result": {"protocol": 1,
                       "daemon": "brummerd 0.1.0", "mode": "system", "pid": 1, "can_write": true}})
            } else {
                let mut r = answer(method, &req["params"]);
                r["jsonrpc"] = "2.0".into();
                r["id"] = req["id"].clone();
                r
            };
            // The client may be gone (broken-pipe test); that ends the fake too.
            if w.write_all(format!("{reply}\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    (path, h)
}

fn status_of(name: &str, state: &str, pid: Option<u32>) -> Value {
    json!({"name": name, "state": state, "pid": pid, "restarts": 0, "generation": 1,
           "exit_code": null, "exit_signal": null, "started_at": null, "started_at_us": null,
           "uptime_secs": pid.map(|_| 45.0), "autostart": true, "restart_policy": "always",
           "logs": {"lines": 0, "bytes": 0, "ring_evicted": 0, "disk_errors": 0}})
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["start"][..], &["stop", "web", "--all"], &[], &["nope"]] {
        let out = ctl().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn help_lists_exit_codes() {
    let out = ctl().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("4  no such process"));
}

#[test]
fn unreachable_daemon_exits_3_with_the_fix() {
    let dir = TempDir::new("unreachable");
    let sock = dir.0.join("none.sock");
    let out = run(&["status"], &sock);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        format!(
            "brummerctl: cannot reach brummerd at {}: is it running? (systemctl status brummerd)\n",
            sock.display()
        )
    );
    assert!(out.stdout.is_empty());

    let out = run(&["version"], &sock);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).starts_with("brummerctl "), "{out:?}");
}

#[test]
fn status_table_without_a_tty_has_no_colour() {
    let dir = TempDir::new("status");
    let (sock, server) = fake_daemon(&dir, |method, _| {
        assert_eq!(method, "status");
        json!({"result": {"processes": [status_of("web", "running", Some(12)),
                                          status_of("worker", "stopped", None)]}})
    });
    let out = ctl()
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME    STATE    PID  UPTIME  RESTARTS  LAST EXIT\n\
         web     running  12   45s     0         -\n\
         worker  stopped  -    -       0         -\n"
    );
}

#[test]
fn daemon_errors_print_the_message_and_map_the_exit_code() {
    let dir = TempDir::new("notfound");
    let (sock, server) = fake_daemon(&dir, |_, params| {
        assert_eq!(params["names"], json!(["wbe"]));
        json!({"error": {"code": -32001, "message": "no process named \"wbe\" (did you mean \"web\"?)"}})
    });
    let out = run(&["start", "wbe"], &sock);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        text(&out.stderr),
        "brummerctl: no process named \"wbe\" (did you mean \"web\"?)\n"
    );
}

#[test]
fn failed_outcome_exits_1_and_json_prints_the_result() {
    let dir = TempDir::new("ops");
    let (sock, server) = fake_daemon(&dir, |method, params| {
        assert_eq!(method, "restart");
        assert_eq!(params, &json!({"all": true}));
        json!({"result": {"results": [
            {"name": "web", "ok": true, "status": status_of("web", "running", Some(40))},
            {"name": "db", "ok": false, "error": "stop timed out", "status": status_of("db", "failed", None)}
        ]}})
    });
    let out = run(&["restart", "--all", "--json"], &sock);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][1]["error"], "stop timed out");
}

#[test]
fn broken_pipe_on_stdout_exits_0_quietly() {
    let dir = TempDir::new("epipe");
    let (sock, server) = fake_daemon(&dir, |_, _| {
        // About 500 KiB: far more than a pipe buffer, so brummerctl is still writing.
        let lines: Vec<Value> = (0..5_000)
            .map(|i| json!({"process": "web", "seq": i, "time": "2026-11-22T10:00:00.000000Z",
                            "time_us": 1, "stream": "stdout", "pid": 1, "text": format!("line {i} {}", "x".repeat(100))}))
            .collect();
        json!({"result": {"lines": lines}})
    });
    let mut child = ctl()
        .arg("--socket")
        .arg(&sock)
        .args(["logs", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("line 0 x"), "{first}");
    drop(stdout); // like `| head -1`
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    server.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}
