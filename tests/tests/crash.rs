//! A brummerd that dies by SIGKILL leaves its programs running, re-parented away, with
//! their pipes gone. The next brummerd on the same socket finds them (runtime state:
//! pid + start time; environment: BRUMMER_DAEMON) and stops them, with their stop signal
//! and timeout, before it starts anything: no second copy, no orphan, and its log says
//! what it stopped. A torn or newer runtime state is reported and ignored.

use brummer_tests::{
    Config, Daemon, FdStore, Proc, T, brtest, pgrp_and_session, pid_alive, wait_for,
};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The first line of an HTTP answer from 127.0.0.1:port, if one comes.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(T)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_owned)
}

/// The daemon log's lines that contain every one of `words`.
fn log_lines_with(d: &Daemon, words: &[&str]) -> Vec<String> {
    d.daemon_log()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_owned)
        .collect()
}

/// The user's story: `python3 -m http.server` under brummerd, brummerd killed with
/// SIGKILL, brummerd started again. Before, the server ran on as an orphan and the new
/// brummerd's copy crash-looped on "Address already in use".
#[test]
fn a_server_left_by_a_killed_brummerd_is_stopped_before_its_second_copy_starts() {
    let port = free_port();
    let config = Config::new().process(
        "web",
        Proc::new([
            "/usr/bin/python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .restart("on-failure")
        .backoff("10ms", "100ms"),
    );
    let mut d = Daemon::start(&config);
    let old = d.wait_state("web", "running")["pid"].as_u64().expect("pid") as u32;
    wait_for("the first server to answer", T, || http_get(port));

    d.kill_daemon();
    // What the story starts from: the server outlives brummerd.
    assert!(pid_alive(old), "the server died with brummerd");
    // It still holds the port (its answers would go to stderr, a pipe nobody reads now).
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the orphan no longer listens"
    );

    d.start_again();
    let s = d.wait_state("web", "running");
    let new = s["pid"].as_u64().expect("pid") as u32;
    assert_ne!(new, old);
    assert!(!pid_alive(old), "the orphan {old} still runs beside {new}");
    // Only the new copy can answer now; it answered, so it bound the port.
    let first = wait_for("the new server to answer", T, || http_get(port));
    assert!(first.contains(" 200 "), "{first}");
    let s = d.state_of("web");
    assert_eq!(s["restarts"], 0, "the new copy crash-looped: {s:#}");
    assert_eq!(s["pid"], new);
    assert_eq!(d.program_processes("web"), vec![new]);
    let log = d.daemon_log();
    assert!(!log.contains("Address already in use"), "{log}");
    let stopped = log_lines_with(
        &d,
        &[
            "stopped a leftover of the previous brummerd",
            "web",
            &old.to_string(),
        ],
    );
    assert_eq!(stopped.len(), 1, "{log}");
}

brtest!(
    starts_and_stops_by_hand_hold_across_a_crash_and_a_restart,
    Config::new()
        .process("auto", Proc::sleep())
        .process("manual", Proc::sleep().autostart(false)),
    |d| {
        d.wait_state("auto", "running");
        d.ctl_ok(&["stop", "auto"]);
        d.ctl_ok(&["start", "manual"]);
        let mut manual = d.pid_of("manual");
        // The requests are on disk before brummerctl returns.
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.runtime_state()).expect("runtime state"))
                .expect("runtime state is JSON");
        assert_eq!(doc["format"], 1);
        assert_eq!(doc["programs"]["auto"]["desired"], "stopped", "{doc:#}");
        assert_eq!(doc["programs"]["manual"]["desired"], "started", "{doc:#}");
        assert_eq!(doc["programs"]["manual"]["run"]["pid"], manual, "{doc:#}");

        for how in ["SIGKILL", "SIGTERM"] {
            if how == "SIGKILL" {
                d.kill_daemon();
                d.start_again();
            } else {
                d.restart_daemon();
            }
            let now = d.wait_state("manual", "running")["pid"].as_u64().unwrap() as u32;
            assert_ne!(now, manual, "after {how}");
            assert!(
                !pid_alive(manual),
                "after {how}: the old copy {manual} runs on"
            );
            assert_eq!(d.program_processes("manual"), vec![now], "after {how}");
            assert_eq!(d.state_of("auto")["state"], "stopped", "after {how}");
            assert_eq!(
                d.program_processes("auto"),
                Vec::<u32>::new(),
                "after {how}"
            );
            manual = now;
        }
    }
);

/// SIGKILL of brummerd 20 times in a row while programs write output and two crash-loop:
/// each new brummerd stops what the last one left before starting anything, so at no
/// time does a program have processes in two sessions (every child is a session of its
/// own), and a steady program's processes are exactly its current child's session. After
/// a clean stop, nothing remains.
#[test]
fn twenty_kills_in_a_row_under_load_leave_no_duplicate_and_no_orphan() {
    let steady = [("writer1", 1), ("writer2", 1), ("tree", 3)];
    let looping = ["crash1", "crash2"];
    let writer = || Proc::sh("while :; do seq 1 200; sleep 0.05; done");
    let crasher = || {
        Proc::sh("echo boom; sleep 0.5; exit 3")
            .restart("always")
            .backoff("10ms", "20ms")
            .start_limit(1_000_000, "1s")
    };
    let config = Config::new()
        .process("writer1", writer())
        .process("writer2", writer())
        .process("tree", Proc::sh("sleep 1000 & sleep 1000 & wait"))
        .process("crash1", crasher())
        .process("crash2", crasher());
    let mut d = Daemon::start(&config);
    let mut stopped_before = 0;
    for round in 0..20 {
        // One status and one pass over /proc per look: the machine may be loaded.
        wait_for(
            &format!("round {round}: every steady program running alone"),
            T,
            || {
                let status = d.status();
                let procs = d.programs_processes();
                for (name, want) in steady {
                    let pid = status[name]["pid"].as_u64()? as u32;
                    let mine = procs.get(name)?;
                    // Every process of it is in its child's session (sh's `seq` come and go).
                    if status[name]["state"] != "running"
                        || sessions(mine) != BTreeSet::from([pid])
                        || mine.len() < want
                    {
                        return None;
                    }
                }
                Some(())
            },
        );
        let procs = d.programs_processes();
        for name in looping {
            let mine = procs.get(name).cloned().unwrap_or_default();
            assert!(
                sessions(&mine).len() <= 1,
                "round {round}: {name} runs twice: {mine:?}\n{}",
                d.daemon_log()
            );
        }
        let stopped = log_lines_with(&d, &["stopped a leftover of the previous brummerd"]).len();
        if round > 0 {
            assert!(
                stopped > stopped_before,
                "round {round}: nothing was stopped\n{}",
                d.daemon_log()
            );
        }
        stopped_before = stopped;
        d.kill_daemon();
        d.start_again();
    }
    assert!(
        log_lines_with(&d, &["cannot stop a leftover"]).is_empty(),
        "{}",
        d.daemon_log()
    );
    d.ctl_ok(&["stop", "--all"]);
    d.assert_no_program_process(&[], "stop --all after 20 kills");
}

/// The sessions of the live processes among `pids` (a process gone meanwhile is skipped).
fn sessions(pids: &[u32]) -> BTreeSet<u32> {
    pids.iter()
        .filter_map(|&p| pgrp_and_session(p).map(|(_, sid)| sid))
        .collect()
}

brtest!(
    a_torn_runtime_state_is_reported_and_leftovers_are_still_found_by_their_environment,
    Config::new().process("web", Proc::sleep().stop_signal("SIGINT")),
    |d| {
        let old = d.wait_state("web", "running")["pid"].as_u64().unwrap() as u32;
        d.kill_daemon();
        let path = d.runtime_state();
        std::fs::write(&path, br#"{"format":1,"programs":{"web":{"ru"#).expect("tear it");
        d.start_again();
        let new = d.wait_state("web", "running")["pid"].as_u64().unwrap() as u32;
        assert!(!pid_alive(old), "the leftover {old} runs on");
        assert_eq!(d.program_processes("web"), vec![new]);
        let p = path.display().to_string();
        let ignored = log_lines_with(&d, &["ignoring runtime state", &p, "not valid state"]);
        assert_eq!(ignored.len(), 1, "{}", d.daemon_log());
        let found = log_lines_with(&d, &["stopping a leftover", "web", "environment"]);
        assert_eq!(found.len(), 1, "{}", d.daemon_log());
        // The file describes the new brummerd again.
        let me = d.pid();
        wait_for("the runtime state to name the new brummerd", T, || {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            (doc["daemon"]["pid"] == me).then_some(())
        });
    }
);

brtest!(
    a_runtime_state_of_a_newer_brummerd_is_reported_and_ignored,
    Config::new()
        .process("web", Proc::sleep())
        .process("idle", Proc::sleep().autostart(false)),
    |d| {
        d.stop_daemon();
        let path = d.runtime_state();
        // A newer format, asking for "idle" to run: not understood, so not obeyed.
        std::fs::write(
            &path,
            br#"{"format":7,"programs":{"idle":{"desired":"started","extra":[1]}}}"#,
        )
        .expect("write");
        d.start_again();
        d.wait_state("web", "running");
        assert_eq!(d.state_of("idle")["state"], "stopped");
        let line = format!(
            "ignoring runtime state {}: format 7 is newer than this brummerd reads (1)",
            path.display()
        );
        assert_eq!(log_lines_with(&d, &[&line]).len(), 1, "{}", d.daemon_log());
    }
);

/// Sends READY=1, then WATCHDOG=1 every 50 ms while the file named by argv[1] exists; then
/// nothing. Never blocks on a full socket (no brummerd reads it while none runs).
const PINGER: &str = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setblocking(False)
def send(m):
    try:
        s.sendto(m, addr)
    except OSError:
        pass
send(b"READY=1")
while os.path.exists(sys.argv[1]):
    send(b"WATCHDOG=1")
    time.sleep(0.05)
time.sleep(100000)
"#;

/// After a crash, a program with `ready = "notify"` and a watchdog is re-adopted with its
/// notify socket, which the store kept beside its pipes and pidfd (`NAME.notify`): the new
/// brummerd watches its watchdog again, so when it stops pinging it is restarted. (Here a
/// stand-in keeps the descriptors as systemd's store does, and passes them to the next
/// brummerd as systemd would.)
#[test]
fn a_notify_program_readopted_after_a_crash_is_watched_for_its_watchdog_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FdStore::new(dir.path());
    let alive = dir.path().join("alive");
    std::fs::write(&alive, "").expect("alive");
    let mut b = Daemon::builder(
        &Config::new().process(
            "dog",
            Proc::python(PINGER)
                .arg(alive.display().to_string())
                .set("ready", "notify")
                .set("watchdog", "500ms"),
        ),
    );
    for (k, v) in store.env() {
        b = b.env(&k, &v);
    }
    let mut d = b.start();
    let pid = d.wait_state("dog", "running")["pid"].clone();
    wait_for("dog's four descriptors in the store", T, || {
        let names = store.names();
        ["dog.out", "dog.err", "dog.pid", "dog.notify"]
            .iter()
            .all(|n| names.iter().any(|x| x == n))
            .then_some(())
    });

    d.kill_daemon();
    d.start_again_passing(store.passed());
    let s = d.wait_state("dog", "running");
    assert_eq!(s["pid"], pid, "re-adopted, not started again: {s:#}");
    assert_eq!(
        log_lines_with(
            &d,
            &["re-adopting a program the previous brummerd left running"]
        )
        .len(),
        1,
        "{}",
        d.daemon_log()
    );
    // Still pinging: still the same run, several watchdog intervals on.
    let up = s["uptime_secs"].as_f64().unwrap_or(0.0);
    wait_for("1.5 s of pings to the new brummerd", T, || {
        let s = d.state_of("dog");
        assert_eq!(s["pid"], pid, "restarted while it pinged: {s:#}");
        (s["uptime_secs"].as_f64().unwrap_or(0.0) > up + 1.5).then_some(())
    });
    // It stops pinging: the new brummerd notices and restarts it.
    std::fs::remove_file(&alive).expect("rm alive");
    let s = wait_for("dog restarted for its watchdog", T, || {
        let s = d.state_of("dog");
        (s["restarts"] == 1).then_some(s)
    });
    let err = s["last_error"].as_str().unwrap_or_default();
    assert!(err.starts_with("watchdog timeout"), "{s:#}");
}
