//! Restart policy end to end: backoff and the start limit, immediate restarts after a
//! stable run, and the `never` / `on-failure` policies, observed through status and the
//! event stream of the real daemon.

use brummer_tests::{Config, Proc, T, brtest, pid_alive, transitions, wait_for};
use serde_json::Value;

/// `false` restarted always, quickly, until 3 restarts within 30 s.
fn crash() -> Config {
    Config::new().process(
        "crash",
        Proc::new(["false"])
            .autostart(false)
            .restart("always")
            .backoff("20ms", "100ms")
            .reset_after("30s")
            .start_limit(3, "30s"),
    )
}

brtest!(
    crash_loop_backs_off_then_fails_at_the_start_limit_and_explicit_start_resets,
    crash(),
    |d| {
        let mut events = d.events();
        d.ctl_ok(&["start", "crash"]);
        let evs = events.states_until("crash", "failed", T);
        let tr = transitions(&evs, "crash");
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
        let evs = events.states_until("crash", "failed", T);
        let tr = transitions(&evs, "crash");
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
);

brtest!(
    sigkill_after_a_stable_run_restarts_at_once_with_a_new_pid,
    // A backoff of an hour: a restart that waited for it would never come.
    Config::new().process(
        "svc",
        Proc::sleep()
            .restart("always")
            .backoff("1h", "1h")
            .reset_after("100ms"),
    ),
    |d| {
        let s = d.wait_state("svc", "running");
        let pid1 = s["pid"].as_u64().expect("pid") as u32;
        assert_eq!(s["restarts"], 0);
        // Let the run become stable (uptime >= reset_after): the restart must then be immediate.
        wait_for("svc uptime > 150ms", T, || {
            let s = d.state_of("svc");
            (s["uptime_secs"].as_f64().unwrap_or(0.0) > 0.15).then_some(())
        });

        let mut events = d.events();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid1 as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL svc");

        let evs = events.states_until("svc", "running", T);
        let tr = transitions(&evs, "svc");
        assert_eq!(
            tr,
            ["running->starting", "starting->running"],
            "a stable run must restart without backoff: {evs:#?}"
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
);

brtest!(
    never_and_on_failure_with_exit_0_end_in_exited_and_on_failure_restarts_failures,
    Config::new()
        .process("never", Proc::sh("exit 5").restart("never"))
        .process("clean", Proc::new(["true"]).restart("on-failure"))
        .process(
            "flaky",
            Proc::sh("exit 3")
                .restart("on-failure")
                .backoff("10ms", "20ms")
                .start_limit(2, "30s"),
        ),
    |d| {
        let s = d.wait_state("never", "exited");
        assert_eq!(s["exit_code"], 5, "{s:#}");
        assert!(s["exit_signal"].is_null(), "{s:#}");
        assert_eq!(s["restarts"], 0, "{s:#}");
        assert!(s["pid"].is_null(), "{s:#}");

        let s = d.wait_state("clean", "exited");
        assert_eq!(s["exit_code"], 0, "{s:#}");
        assert_eq!(s["restarts"], 0, "{s:#}");

        let s = d.wait_state("flaky", "failed");
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
);

brtest!(
    /// Issue 17: a program stopped by hand while in backoff has no next attempt, and
    /// `status` shows no countdown to one.
    issue17_stop_in_backoff_cancels_the_next_attempt,
    Config::new().process(
        "api",
        Proc::new(["false"])
            .autostart(false)
            .restart("always")
            .backoff("1h", "1h"),
    ),
    |d| {
        d.ctl_ok(&["start", "api"]);
        let s = d.wait_state("api", "backoff");
        assert!(s["next_attempt"].is_string(), "{s:#}");
        assert!(d.ctl_ok(&["status", "api"]).contains("next in"));

        d.ctl_ok(&["stop", "api"]);
        let s = d.wait_state("api", "stopped");
        assert!(s["next_attempt"].is_null(), "{s:#}");
        let text = d.ctl_ok(&["status", "api"]);
        assert!(!text.contains("next"), "{text}");
    }
);
