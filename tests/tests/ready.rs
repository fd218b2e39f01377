//! Readiness and health end to end (issue 16): a started program is `starting` (with its
//! pid) until it is ready, by READY=1 on its NOTIFY_SOCKET (from the program or any process
//! of its tree), by a probe (exec, http, tcp, a log line), then `running`; a run not ready
//! in time, a missed watchdog ping or failing health checks stop it and the restart policy
//! applies, with the reason in status and in the state-changed events.
//!
//! The programs move on when the test creates a file (their own polling is their business);
//! the test waits on events or polls status with deadlines.

use brummer_tests::{Config, Daemon, Events, Proc, T, transitions, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A probe table (`ready = { ... }`, `health = { ... }`) from TOML `key = value` lines.
fn table(src: &str) -> toml::Value {
    toml::Value::Table(toml::from_str(src).expect("probe table"))
}

/// Fails the test when brummerd logged a panic (a task that panicked is gone, and the
/// daemon may go on looking fine).
struct NoPanic<'a>(&'a Daemon);

impl Drop for NoPanic<'_> {
    fn drop(&mut self) {
        let log = self.0.daemon_log();
        if !std::thread::panicking() {
            assert!(!log.contains("panicked"), "brummerd panicked:\n{log}");
        }
    }
}

fn touch(p: &Path) {
    std::fs::write(p, b"").expect("create the go file");
}

/// A notify program: sends each message of argv[1..] in turn, each after the file of the
/// same position in GO (`:`-separated; an empty name: at once), then runs until stopped.
/// `<NUL>` and `<FF>` in a message become those bytes (argv cannot carry a NUL).
const NOTIFY: &str = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
gates = os.environ.get("GO", "").split(":")
for i, msg in enumerate(sys.argv[1:]):
    gate = gates[i] if i < len(gates) else ""
    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    s.sendto(msg.encode().replace(b"<NUL>", b"\0").replace(b"<FF>", b"\xff"), addr)
print("sent all", flush=True)
time.sleep(100000)
"#;

fn notify_proc(messages: &[&str], gates: &[&Path]) -> Proc {
    let gates: Vec<String> = gates.iter().map(|p| p.display().to_string()).collect();
    let mut p = Proc::python(NOTIFY)
        .set("ready", "notify")
        .env("GO", &gates.join(":"));
    for m in messages {
        p = p.arg(*m);
    }
    p
}

/// The status object once `cond` holds for it.
fn wait_status(d: &Daemon, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("{name}: {what}"), T, || {
        let s = d.state_of(name);
        cond(&s).then_some(s)
    })
}

fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("environ")
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn notify_ready_sent_late_by_the_program_with_status_text_and_foreigners_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let d = Daemon::start(&Config::new().process(
        "svc",
        notify_proc(
            &[
                "STATUS=warming up",
                "STATUS=phase 2",
                "READY=1\nSTATUS=serving",
            ],
            &[Path::new(""), &a, &b],
        ),
    ));
    let _clean = NoPanic(&d);
    let s = wait_status(&d, "svc", "starting with its first status text", |s| {
        s["status_text"] == "warming up"
    });
    assert_eq!(s["state"], "starting", "{s:#}");
    assert_eq!(s["ready"], "notify", "{s:#}");
    let pid = s["pid"].as_u64().expect("a starting program has its pid") as u32;
    let env = environ(pid);
    let sock = env
        .iter()
        .find_map(|v| v.strip_prefix("NOTIFY_SOCKET="))
        .expect("NOTIFY_SOCKET in the program's environment")
        .to_owned();
    assert!(
        Path::new(&sock).starts_with(d.socket.parent().unwrap()),
        "{sock}"
    );
    let table = d.ctl_ok(&["status", "svc"]);
    assert!(
        table.contains("starting") && table.contains("warming up"),
        "{table}"
    );

    // READY=1 from a process outside the program's tree is ignored: it is queued before
    // the program's next message, so once that one shows, the foreign one was judged.
    let foreign = std::os::unix::net::UnixDatagram::unbound().unwrap();
    foreign.send_to(b"READY=1\nSTATUS=forged", &sock).unwrap();
    touch(&a);
    let s = wait_status(&d, "svc", "status text of phase 2", |s| {
        s["status_text"] == "phase 2"
    });
    assert_eq!(s["state"], "starting", "a foreign READY=1 counted: {s:#}");

    let mut events = d.events();
    touch(&b);
    let evs = events.states_until("svc", "running", T);
    assert_eq!(transitions(&evs, "svc"), ["starting->running"]);
    assert_eq!(evs[0]["pid"], pid, "{evs:?}");
    let s = wait_status(&d, "svc", "status text serving", |s| {
        s["status_text"] == "serving"
    });
    assert_eq!(s["state"], "running");
    assert!(
        d.daemon_log()
            .contains("came from a process outside the program"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn notify_ready_from_a_child_and_from_a_grandchild_in_a_session_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // systemd-notify waits until its message was read (the barrier), so the sender is
    // still there to be judged.
    let script = format!(
        "(while [ ! -e {go} ]; do sleep 0.02; done; setsid systemd-notify --ready --status='child says hi') & \
         exec sleep 1000",
        go = go.display()
    );
    let d = Daemon::start(&Config::new().process("svc", Proc::sh(&script).set("ready", "notify")));
    let _clean = NoPanic(&d);
    wait_status(&d, "svc", "starting with a pid", |s| {
        s["state"] == "starting" && s["pid"].is_u64()
    });
    let mut events = d.events();
    touch(&go);
    let evs = events.states_until("svc", "running", T);
    // The event that published the pid `status` already showed may come after the
    // subscription: a start's own "starting->starting" says nothing here.
    let changes: Vec<String> = transitions(&evs, "svc")
        .into_iter()
        .filter(|t| t != "starting->starting")
        .collect();
    assert_eq!(changes, ["starting->running"]);
    let s = wait_status(&d, "svc", "the child's status", |s| {
        s["status_text"] == "child says hi"
    });
    assert_eq!(s["state"], "running");
}

#[test]
fn extend_timeout_usec_keeps_a_slow_start_alive_past_ready_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let d = Daemon::start(
        &Config::new().process(
            "slow",
            notify_proc(
                &["EXTEND_TIMEOUT_USEC=30000000", "READY=1"],
                &[Path::new(""), &go],
            )
            .set("ready_timeout", "1s")
            .restart("never")
            .autostart(false),
        ),
    );
    let _clean = NoPanic(&d);
    let mut events = d.events();
    d.ctl_ok(&["start", "slow"]);
    // brummerd's own clock: past the configured second, still starting.
    wait_status(&d, "slow", "starting for more than 1.5s", |s| {
        assert_eq!(
            s["state"], "starting",
            "the extension was not honoured: {s:#}"
        );
        s["uptime_secs"].as_f64().unwrap_or(0.0) > 1.5
    });
    touch(&go);
    let evs = events.states_until("slow", "running", T);
    assert_eq!(
        transitions(&evs, "slow"),
        [
            "stopped->starting",
            "starting->starting",
            "starting->running"
        ]
    );
}

/// An HTTP server whose /health answers 200, or 500 while the file SICK exists, or 500
/// once when the file SICK.once exists (it removes it and creates SICK.served).
const SERVER: &str = r#"
import http.server, os, sys
sick = os.environ["SICK"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(sick) else 200
        if os.path.exists(sick + ".once"):
            os.remove(sick + ".once")
            open(sick + ".served", "w").close()
            code = 500
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_http_health_check_that_starts_failing_restarts_the_program_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sick = dir.path().join("sick");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let d = Daemon::start(
        &Config::new().process(
            "web",
            Proc::python(SERVER)
                .arg(port.to_string())
                .env("SICK", &sick.display().to_string())
                .set(
                    "ready",
                    table(&format!("http = \"{url}\"\ninterval = \"50ms\"")),
                )
                .set(
                    "health",
                    table(&format!(
                        "http = \"{url}\"\ninterval = \"100ms\"\ntimeout = \"2s\"\nfailures = 2"
                    )),
                )
                // Never a stable run: the restart goes through backoff, whose event
                // carries the reason too.
                .backoff("50ms", "100ms")
                .reset_after("1h"),
        ),
    );
    let _clean = NoPanic(&d);
    let s = d.wait_state("web", "running");
    assert_eq!(s["ready"], "http", "{s:#}");
    let s = wait_status(&d, "web", "a passing health probe", |s| {
        s["last_probe"]["phase"] == "health"
    });
    let p = &s["last_probe"];
    assert_eq!(p["ok"], true, "{s:#}");
    assert_eq!(p["probe"], "http", "{s:#}");
    assert_eq!(p["detail"], format!("HTTP 200 from {url}"), "{s:#}");
    let pid1 = s["pid"].as_u64().unwrap();

    // One failure (of the 2 it takes) and then a pass: no restart.
    let mut events = d.events();
    let once = PathBuf::from(format!("{}.once", sick.display()));
    let served = PathBuf::from(format!("{}.served", sick.display()));
    touch(&once);
    wait_for("the one 500 answer", T, || served.exists().then_some(()));
    let after_us = std::fs::metadata(&served)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let s = wait_status(&d, "web", "a passing health probe after the 500", |s| {
        s["last_probe"]["ok"] == true && s["last_probe"]["time_us"].as_u64().unwrap() > after_us
    });
    assert_eq!(s["pid"].as_u64().unwrap(), pid1, "{s:#}");
    assert_eq!(s["restarts"], 0, "{s:#}");
    assert!(s.get("last_error").is_none(), "{s:#}");

    touch(&sick);
    let reason = format!("health check failed: HTTP 500 from {url}");
    let evs = events.states_until("web", "stopping", T);
    let stopping = evs.last().unwrap();
    assert_eq!(stopping["old"], "running", "{evs:?}");
    assert_eq!(stopping["reason"], reason, "{stopping}");
    let evs = events.states_until("web", "backoff", T);
    assert_eq!(evs.last().unwrap()["reason"], reason, "{evs:?}");
    assert_eq!(evs.last().unwrap()["restarts"], 1, "{evs:?}");
    // The new run is not ready while /health fails; it becomes so once it recovers.
    let evs = events.states_until("web", "starting", T);
    assert!(evs.last().unwrap()["pid"].is_null(), "{evs:?}");
    std::fs::remove_file(&sick).unwrap();
    events.states_until("web", "running", T);
    let s = d.state_of("web");
    assert_ne!(s["pid"].as_u64().unwrap(), pid1, "{s:#}");
    assert_eq!(s["restarts"], 1, "{s:#}");
    assert_eq!(s["last_error"], reason, "{s:#}");
    let table = d.ctl_ok(&["status", "web"]);
    assert!(table.contains(&reason), "{table}");
    assert!(
        table.contains("HTTP 200"),
        "the last probe is shown: {table}"
    );
}

#[test]
fn a_log_line_makes_the_program_ready_and_an_exec_probe_too() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let flag = dir.path().join("flag");
    let d = Daemon::start(
        &Config::new()
            .process(
                "db",
                Proc::sh(&format!(
                    "echo booting; echo 'ready to accept connections?'; \
                     while [ ! -e {go} ]; do sleep 0.02; done; \
                     echo 'database system is ready to accept connections'; exec sleep 1000",
                    go = go.display()
                ))
                .set(
                    "ready",
                    table("log = \"system is ready to accept connections$\""),
                )
                .set("health", table("exec = [\"true\"]\ninterval = \"50ms\"")),
            )
            .process(
                "job",
                Proc::sleep().set(
                    "ready",
                    table(&format!(
                        "exec = [\"test\", \"-e\", \"{}\"]\ninterval = \"50ms\"",
                        flag.display()
                    )),
                ),
            ),
    );
    let _clean = NoPanic(&d);
    d.wait_logged("db", "ready to accept connections?");
    let s = wait_status(&d, "db", "a failed look at the log", |s| {
        s["last_probe"]["ok"] == false
    });
    assert_eq!(s["state"], "starting", "{s:#}");
    assert_eq!(s["ready"], "log", "{s:#}");
    let s = wait_status(&d, "job", "a failed exec probe", |s| {
        s["last_probe"]["ok"] == false
    });
    assert_eq!(s["state"], "starting", "{s:#}");
    assert!(
        s["last_probe"]["detail"]
            .as_str()
            .unwrap()
            .contains("exit code 1"),
        "{s:#}"
    );

    let mut events = d.events();
    touch(&go);
    events.states_until("db", "running", T);
    let s = d.state_of("db");
    let detail = s["last_probe"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("database system is ready to accept connections"),
        "{s:#}"
    );
    // Then its health probe (another kind) runs.
    let s = wait_status(&d, "db", "a health probe", |s| {
        s["last_probe"]["phase"] == "health"
    });
    assert_eq!(s["last_probe"]["probe"], "exec", "{s:#}");
    assert_eq!(s["last_probe"]["ok"], true, "{s:#}");
    touch(&flag);
    events.states_until("job", "running", T);
    assert_eq!(d.state_of("job")["last_probe"]["ok"], true);
}

const PINGER: &str = r#"
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
hang = os.environ["HANG"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", addr)
while True:
    if not os.path.exists(hang):
        s.sendto(b"WATCHDOG=1", addr)
    time.sleep(0.05)
"#;

#[test]
fn a_missed_watchdog_ping_restarts_the_program_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang");
    let d = Daemon::start(
        &Config::new().process(
            "dog",
            Proc::python(PINGER)
                .env("HANG", &hang.display().to_string())
                .set("ready", "notify")
                .set("watchdog", "500ms")
                .backoff("50ms", "100ms")
                .reset_after("1h"),
        ),
    );
    let _clean = NoPanic(&d);
    let s = d.wait_state("dog", "running");
    let pid1 = s["pid"].as_u64().unwrap() as u32;
    assert!(
        environ(pid1).iter().any(|v| v == "WATCHDOG_USEC=500000"),
        "{:?}",
        environ(pid1)
    );
    // Pinging every 50 ms keeps it running past several watchdog intervals.
    wait_status(&d, "dog", "running for 1.6s", |s| {
        assert_eq!(s["state"], "running", "{s:#}");
        s["uptime_secs"].as_f64().unwrap_or(0.0) > 1.6
    });

    let mut events = d.events();
    touch(&hang);
    let reason = "watchdog timeout: no WATCHDOG=1 within 500ms";
    let evs = events.states_until("dog", "stopping", T);
    assert_eq!(evs.last().unwrap()["reason"], reason, "{evs:?}");
    std::fs::remove_file(&hang).unwrap();
    let evs = events.states_until("dog", "running", T);
    assert_eq!(
        transitions(&evs, "dog"),
        [
            "stopping->backoff",
            "backoff->starting",
            "starting->starting",
            "starting->running"
        ]
    );
    let s = d.state_of("dog");
    assert_eq!(s["restarts"], 1, "{s:#}");
    assert_eq!(s["last_error"], reason, "{s:#}");
    assert_ne!(s["pid"].as_u64().unwrap() as u32, pid1);
}

#[test]
fn not_ready_within_ready_timeout_backs_off_restarts_then_fails_at_the_start_limit() {
    let port = free_port();
    let d = Daemon::start(
        &Config::new().process(
            "never",
            Proc::sleep()
                .set(
                    "ready",
                    table(&format!(
                        "tcp = \"127.0.0.1:{port}\"\ninterval = \"50ms\"\ntimeout = \"1s\""
                    )),
                )
                .set("ready_timeout", "300ms")
                .backoff("50ms", "100ms")
                .start_limit(2, "1m")
                .autostart(false),
        ),
    );
    let _clean = NoPanic(&d);
    let mut events: Events = d.events();
    d.ctl_ok(&["start", "never"]);
    let evs = events.states_until("never", "failed", T);
    let tr = transitions(&evs, "never");
    assert_eq!(
        tr,
        [
            "stopped->starting",
            "starting->starting",
            "starting->stopping",
            "stopping->backoff",
            "backoff->starting",
            "starting->starting",
            "starting->stopping",
            "stopping->backoff",
            "backoff->starting",
            "starting->starting",
            "starting->stopping",
            "stopping->failed",
        ]
    );
    for e in evs.iter().filter(|e| e["new"] == "stopping") {
        let r = e["reason"].as_str().unwrap_or_default();
        assert!(
            r.starts_with("not ready within 300ms (cannot connect to 127.0.0.1:"),
            "{e}"
        );
    }
    let failed = evs.last().unwrap();
    let why = failed["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("restarted 2 times") && why.contains("; the last run: not ready within 300ms"),
        "{failed}"
    );
    let s = d.state_of("never");
    assert_eq!(s["restarts"], 2, "{s:#}");
    assert!(s["pid"].is_null());
    assert!(d.program_processes("never").is_empty());
    // The time between the spawn and the stop is the ready timeout, by brummerd's clock.
    let starts: Vec<u64> = evs
        .iter()
        .filter(|e| e["new"] == "starting" && e["pid"].is_u64())
        .map(|e| e["time_us"].as_u64().unwrap())
        .collect();
    let stops: Vec<u64> = evs
        .iter()
        .filter(|e| e["new"] == "stopping")
        .map(|e| e["time_us"].as_u64().unwrap())
        .collect();
    for (a, b) in starts.iter().zip(&stops) {
        let waited = Duration::from_micros(b - a);
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
    }
}

#[test]
fn an_exec_probe_that_hangs_is_killed_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("probe-ran");
    let d = Daemon::start(
        &Config::new().process(
            "svc",
            Proc::sleep()
                .set(
                    "ready",
                    table(&format!(
                        "exec = [\"sh\", \"-c\", \"echo $$ >> {}; exec sleep 1000\"]\ntimeout = \"200ms\"\ninterval = \"50ms\"",
                        marker.display()
                    )),
                )
                .restart("never"),
        ),
    );
    let _clean = NoPanic(&d);
    let s = wait_status(&d, "svc", "a timed-out exec probe", |s| {
        s["last_probe"]["ok"] == false
    });
    assert!(
        s["last_probe"]["detail"]
            .as_str()
            .unwrap()
            .contains("no answer within 200ms"),
        "{s:#}"
    );
    assert_eq!(s["state"], "starting");
    let pids: Vec<i32> = std::fs::read_to_string(&marker)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let first = pids[0];
    // The first try ended (its result is in status), so its process is gone.
    assert!(
        !brummer_tests::pid_alive(first as u32),
        "probe process {first} survived its timeout"
    );
    d.ctl_ok(&["stop", "svc"]);
}

/// examples/stack.toml as shipped (on a free port): every program becomes ready, each its
/// own way, and the worker's STATUS= shows.
#[test]
fn the_example_stack_comes_up() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/stack.toml");
    let port = free_port().to_string();
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("8080", &port);
    let config: toml::Table = toml::from_str(&text).expect("the example is TOML");
    let mut c = Config::new();
    for (name, table) in config["process"].as_table().unwrap() {
        let mut p = Proc::new(["true"]);
        for (k, v) in table.as_table().unwrap() {
            p = p.set(k, v.clone());
        }
        c = c.process(name, p);
    }
    let d = Daemon::start(&c);
    let _clean = NoPanic(&d);
    for name in ["db", "worker", "web"] {
        let s = d.wait_state(name, "running");
        assert!(s["pid"].is_u64(), "{s:#}");
    }
    let s = wait_status(&d, "worker", "its status text", |s| {
        s["status_text"]
            .as_str()
            .is_some_and(|t| t.starts_with("idle, "))
    });
    assert_eq!(s["ready"], "notify");
    assert_eq!(d.state_of("db")["last_probe"]["ok"], true);
    assert_eq!(d.state_of("web")["last_probe"]["ok"], true);
}

/// Pings the watchdog every 50 ms with STATUS=before, or STATUS=after once AFTER exists.
const PING_STATUS: &str = r#"
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
after = os.environ["AFTER"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", addr)
while True:
    word = b"after" if os.path.exists(after) else b"before"
    s.sendto(b"WATCHDOG=1\nSTATUS=" + word, addr)
    time.sleep(0.05)
"#;

/// A re-exec hands each notify socket over: a program with a watchdog keeps running (its
/// pings reach the new image), its STATUS= still arrives, and a program still starting
/// becomes running by its READY=1 sent after the re-exec.
#[test]
fn notify_sockets_survive_a_reexec() {
    let dir = tempfile::tempdir().unwrap();
    let (after, go) = (dir.path().join("after"), dir.path().join("go"));
    let d = Daemon::start(
        &Config::new()
            .process(
                "dog",
                Proc::python(PING_STATUS)
                    .env("AFTER", &after.display().to_string())
                    .set("ready", "notify")
                    .set("watchdog", "500ms")
                    .restart("never"),
            )
            .process("late", notify_proc(&["READY=1"], &[&go]).restart("never")),
    );
    let _clean = NoPanic(&d);
    let dog = d.wait_state("dog", "running")["pid"].as_u64().unwrap();
    let late = wait_status(&d, "late", "starting with a pid", |s| {
        s["state"] == "starting" && s["pid"].is_u64()
    })["pid"]
        .as_u64()
        .unwrap();
    d.ctl_ok(&["daemon-reexec"]);
    let before = d.state_of("dog")["uptime_secs"].as_f64().unwrap();
    // Several watchdog intervals of the new image: still the same run.
    wait_status(&d, "dog", "running 1.5s past the re-exec", |s| {
        assert_eq!(s["state"], "running", "{s:#}");
        assert_eq!(s["pid"], dog, "{s:#}");
        s["uptime_secs"].as_f64().unwrap_or(0.0) > before + 1.5
    });
    assert_eq!(d.state_of("dog")["status_text"], "before");
    touch(&after);
    wait_status(
        &d,
        "dog",
        "STATUS=after through the handed-over socket",
        |s| s["status_text"] == "after",
    );
    assert_eq!(d.state_of("late")["state"], "starting");
    touch(&go);
    let s = d.wait_state("late", "running");
    assert_eq!(s["pid"], late, "{s:#}");
    assert!(
        !d.daemon_log()
            .contains("cannot hand the notify socket over"),
        "{}",
        d.daemon_log()
    );
}

/// A program run as another user reaches its notify socket (made its own), and its exec
/// probe runs as that user too.
#[test]
#[ignore = "needs root"]
fn a_program_of_another_user_notifies_and_is_probed_as_itself() {
    brummer_tests::require_root();
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start(
        &Config::new()
            .process(
                "svc",
                notify_proc(&["READY=1"], &[])
                    .user("nobody")
                    .autostart(false),
            )
            .process(
                "probed",
                Proc::sleep()
                    .user("nobody")
                    .set(
                        "ready",
                        table(
                            "exec = [\"sh\", \"-c\", \"test \\\"$(id -u)\\\" = 65534\"]\ninterval = \"50ms\"",
                        ),
                    )
                    .autostart(false),
            ),
    );
    let _clean = NoPanic(&d);
    // The test's own folders are private; /run/brummer is 0755 in a real system.
    for dir in [
        d.dir.path().to_path_buf(),
        d.dir.path().join("run"),
        d.socket.parent().unwrap().to_path_buf(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.ctl_ok(&["start", "svc", "probed"]);
    let s = d.wait_state("svc", "running");
    assert!(s["pid"].is_u64(), "{s:#}");
    let s = d.wait_state("probed", "running");
    assert_eq!(s["last_probe"]["ok"], true, "{s:#}");
}

/// A message with a NUL, one over 4096 bytes and one that is not UTF-8 are ignored (and
/// logged), even when they say READY=1; the program's next good message still counts.
#[test]
fn garbage_on_the_notify_socket_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let big = format!("READY=1\nSTATUS={}", "x".repeat(5000));
    let d = Daemon::start(&Config::new().process(
        "svc",
        notify_proc(
            &[
                "READY=1<NUL>",
                &big,
                "READY=1\nSTATUS=<FF>",
                "STATUS=after garbage",
                "READY=1",
            ],
            &[
                Path::new(""),
                Path::new(""),
                Path::new(""),
                Path::new(""),
                &go,
            ],
        ),
    ));
    let _clean = NoPanic(&d);
    let s = wait_status(&d, "svc", "the good message after the garbage", |s| {
        s["status_text"] == "after garbage"
    });
    assert_eq!(s["state"], "starting", "garbage counted: {s:#}");
    let log = d.daemon_log();
    assert!(log.contains("it contains a NUL byte"), "{log}");
    assert!(log.contains("it is longer than 4096 bytes"), "{log}");
    assert!(log.contains("it is not UTF-8"), "{log}");
    touch(&go);
    d.wait_state("svc", "running");
}

const CHATTY: &str = r#"
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", addr)
for i in range(3000):
    s.sendto(b"STATUS=%d" % i, addr)
s.sendto(b"STATUS=final", addr)
time.sleep(100000)
"#;

/// STATUS= in a tight loop reaches the event stream at most every 100 ms (by brummerd's
/// time stamps), and the latest text always arrives.
#[test]
fn a_status_flood_is_coalesced_and_the_last_text_wins() {
    let d = Daemon::start(&Config::new().process(
        "chatty",
        Proc::python(CHATTY).set("ready", "notify").autostart(false),
    ));
    let _clean = NoPanic(&d);
    let mut events = d.events();
    d.ctl_ok(&["start", "chatty"]);
    let evs = events.until(T, |e| e["type"] == "status-text" && e["text"] == "final");
    let times: Vec<u64> = evs
        .iter()
        .filter(|e| e["type"] == "status-text")
        .map(|e| e["time_us"].as_u64().unwrap())
        .collect();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= 50_000,
            "status-text events {} µs apart: {times:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(d.state_of("chatty")["status_text"], "final");
}
