//! Restart policy end to end: backoff and the start limit, immediate restarts after a
//! stable run, and the `never` / `on-failure` policies, observed through status and the
//! event stream of the real daemon.

use brummer_tests::{Daemon, Rpc, pid_alive, wait_for};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Reads `state-changed` events of `name` until one satisfies `stop`, checking on the way
/// that every event's `seq` is strictly greater than the one before. Returns them all.
fn events_until(
    d: &Daemon,
    rpc: &mut Rpc,
    last_seq: &mut u64,
    name: &str,
    timeout: Duration,
    mut stop: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut seen = vec![];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(n) = rpc.next_notification(left) else {
            panic!(
                "timed out after {timeout:?} waiting for an event of {name}; got so far:\n{}\nstatus: {:#?}\n{}",
                seen.iter()
                    .map(|e: &Value| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                d.status().get(name),
                d.daemon_log()
            );
        };
        assert_eq!(n["method"], "event", "unexpected notification {n}");
        let p = n["params"].clone();
        let seq = p["seq"].as_u64().expect("seq");
        assert!(
            seq > *last_seq,
            "seq not increasing: {seq} after {last_seq}: {p}"
        );
        *last_seq = seq;
        if p["type"] != "state-changed" || p["process"] != name {
            continue;
        }
        seen.push(p.clone());
        if stop(&p) {
            return seen;
        }
    }
}

fn transitions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{}->{}",
                e["old"].as_str().unwrap(),
                e["new"].as_str().unwrap()
            )
        })
        .collect()
}

const CRASH: &str = r#"
[process.crash]
command = ["false"]
autostart = false
restart = "always"

[process.crash.backoff]
initial = "20ms"
max = "100ms"
reset_after = "30s"

[process.crash.start_limit]
burst = 3
interval = "30s"
"#;

#[test]
fn crash_loop_backs_off_then_fails_at_the_start_limit_and_explicit_start_resets() {
    let d = Daemon::start(CRASH);
    let mut rpc = d.rpc();
    let sub = rpc.subscribe();
    let mut last_seq = sub["seq"].as_u64().expect("subscribe seq");

    d.ctl_ok(&["start", "crash"]);
    let evs = events_until(&d, &mut rpc, &mut last_seq, "crash", T, |e| {
        e["new"] == "failed"
    });
    let tr = transitions(&evs);
    let backoffs: Vec<&Value> = evs.iter().filter(|e| e["new"] == "backoff").collect();
    assert_eq!(backoffs.len(), 3, "expected 3 backoffs: {tr:?}");
    // Each backoff carries the exit and the restart count so far.
    for (i, b) in backoffs.iter().enumerate() {
        assert_eq!(b["exit_code"], 1, "{b}");
        assert_eq!(b["restarts"], i as u64 + 1, "{b}");
    }
    assert_eq!(
        tr.last().map(String::as_str),
        Some("running->failed"),
        "{tr:?}"
    );
    assert_eq!(evs.last().unwrap()["restarts"], 3);
    // Every backoff is followed by a new start.
    for w in evs.windows(2) {
        if w[0]["new"] == "backoff" {
            assert_eq!(w[1]["new"], "starting", "{tr:?}");
        }
    }

    let s = d.state_of("crash");
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["restarts"], 3, "{s:#}");
    assert!(s["pid"].is_null(), "{s:#}");
    assert_eq!(s["exit_code"], 1, "{s:#}");
    let err = s["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("restarted 3 times within 30s") && err.contains("brummerctl start crash"),
        "last_error should name the start limit: {s:#}"
    );
    let table = d.ctl_ok(&["status", "crash"]);
    assert!(
        table.contains("failed") && table.contains("restarted 3 times"),
        "{table}"
    );

    // An explicit start forgives the past: the loop runs again from zero (without the
    // reset, the first exit would be over the limit and go straight to failed).
    d.ctl_ok(&["start", "crash"]);
    let evs = events_until(&d, &mut rpc, &mut last_seq, "crash", T, |e| {
        e["new"] == "failed"
    });
    let tr = transitions(&evs);
    assert_eq!(
        tr.first().map(String::as_str),
        Some("failed->starting"),
        "{tr:?}"
    );
    let restarts: Vec<u64> = evs
        .iter()
        .filter(|e| e["new"] == "backoff")
        .map(|e| e["restarts"].as_u64().unwrap())
        .collect();
    assert_eq!(restarts, [1, 2, 3], "{tr:?}");
    assert_eq!(d.state_of("crash")["restarts"], 3);
}

#[test]
fn sigkill_after_a_stable_run_restarts_at_once_with_a_new_pid() {
    let d = Daemon::start(
        r#"
[process.svc]
command = ["sleep", "1000"]
restart = "always"

[process.svc.backoff]
initial = "5s"
max = "10s"
reset_after = "100ms"
"#,
    );
    let s = d.wait_state("svc", "running", T);
    let pid1 = s["pid"].as_u64().expect("pid") as u32;
    assert_eq!(s["restarts"], 0);
    // Let the run become stable (uptime >= reset_after): the restart must then be immediate.
    wait_for("svc uptime > 150ms", T, || {
        let s = d.state_of("svc");
        (s["uptime_secs"].as_f64().unwrap_or(0.0) > 0.15).then_some(())
    });

    let mut rpc = d.rpc();
    let mut last_seq = rpc.subscribe()["seq"].as_u64().unwrap();
    let killed_at = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid1.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());

    let evs = events_until(&d, &mut rpc, &mut last_seq, "svc", T, |e| {
        e["new"] == "running"
    });
    let tr = transitions(&evs);
    assert!(
        evs.iter().all(|e| e["new"] != "backoff"),
        "a stable run must restart without backoff: {tr:?}"
    );
    assert_eq!(tr, ["running->starting", "starting->running"], "{evs:#?}");
    // The backoff would have been >= 4.5 s; an immediate restart is far quicker.
    assert!(
        killed_at.elapsed() < Duration::from_secs(4),
        "restart took {:?}",
        killed_at.elapsed()
    );

    let s = d.state_of("svc");
    let pid2 = s["pid"].as_u64().expect("pid after restart") as u32;
    assert_eq!(s["state"], "running", "{s:#}");
    assert_ne!(pid1, pid2, "{s:#}");
    assert!(pid_alive(pid2), "new pid {pid2} not alive: {s:#}");
    assert!(!pid_alive(pid1), "killed pid {pid1} still alive");
    assert_eq!(s["restarts"], 1, "{s:#}");
    assert_eq!(evs.last().unwrap()["pid"], pid2);
    // The last run ended with SIGKILL; status says so while the new run is up.
    assert_eq!(s["exit_signal"], 9, "{s:#}");
    assert!(s["exit_code"].is_null(), "{s:#}");
}

#[test]
fn never_and_on_failure_with_exit_0_end_in_exited_and_on_failure_restarts_failures() {
    let d = Daemon::start(
        r#"
[process.never]
command = ["sh", "-c", "exit 5"]
restart = "never"

[process.clean]
command = ["true"]
restart = "on-failure"

[process.flaky]
command = ["sh", "-c", "exit 3"]
restart = "on-failure"

[process.flaky.backoff]
initial = "10ms"
max = "20ms"

[process.flaky.start_limit]
burst = 2
interval = "30s"
"#,
    );
    let s = d.wait_state("never", "exited", T);
    assert_eq!(s["exit_code"], 5, "{s:#}");
    assert!(s["exit_signal"].is_null(), "{s:#}");
    assert_eq!(s["restarts"], 0, "{s:#}");
    assert!(s["pid"].is_null(), "{s:#}");

    let s = d.wait_state("clean", "exited", T);
    assert_eq!(s["exit_code"], 0, "{s:#}");
    assert_eq!(s["restarts"], 0, "{s:#}");

    let s = d.wait_state("flaky", "failed", T);
    assert_eq!(s["exit_code"], 3, "{s:#}");
    assert_eq!(s["restarts"], 2, "on-failure must restart exit 3: {s:#}");

    let table = d.ctl_ok(&["status"]);
    let line = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("no {n} in\n{table}"))
            .to_string()
    };
    assert!(
        line("never").contains("exited") && line("never").contains("code 5"),
        "{table}"
    );
    assert!(
        line("clean").contains("exited") && line("clean").contains("code 0"),
        "{table}"
    );
    assert!(
        line("flaky").contains("failed") && line("flaky").contains("code 3"),
        "{table}"
    );
}
