//! The event stream: state changes of start and stop in order with increasing seq, the
//! subscribe reply's seq, added/removed events on reload, and `brummerctl events` in text
//! and JSON form.

use brummer_tests::{Config, Daemon, LineChild, Proc, T, brtest, transitions};
use serde_json::{Value, json};

/// `web` waits to be started, `api` runs.
fn two() -> Config {
    Config::new()
        .process("web", Proc::sleep().autostart(false))
        .process("api", Proc::sleep())
}

brtest!(subscribe_sees_start_and_stop_in_order, two(), |d| {
    d.wait_state("api", "running");
    let mut a = d.events();

    d.ctl_ok(&["start", "web"]);
    let started = a.states_until("web", "running", T);
    assert_eq!(
        transitions(&started, "web"),
        ["stopped->starting", "starting->running"]
    );
    let running = started.last().unwrap();
    let pid = d.state_of("web")["pid"].clone();
    assert_eq!(running["pid"], pid);
    assert!(running["time_us"].as_u64().unwrap() > 0);
    let last_seq = running["seq"].as_u64().unwrap();

    // A second subscriber now: its reply names the last event published before it.
    let mut b = d.events();
    assert_eq!(b.last_seq, last_seq);

    d.ctl_ok(&["stop", "web"]);
    let stopped_a = a.states_until("web", "stopped", T);
    let stopped_b = b.states_until("web", "stopped", T);
    for stopped in [&stopped_a, &stopped_b] {
        assert_eq!(
            transitions(stopped, "web"),
            ["running->stopping", "stopping->stopped"]
        );
        assert_eq!(stopped[0]["seq"], last_seq + 1, "{stopped:?}");
    }
    let seqs = |v: &[Value]| v.iter().map(|e| e["seq"].clone()).collect::<Vec<_>>();
    assert_eq!(seqs(&stopped_a), seqs(&stopped_b));

    // After unsubscribe, no more events on that subscription: a start publishes to `a`
    // only, and `b`'s connection, still open, carries nothing.
    let r = b
        .rpc
        .call("unsubscribe", json!({"subscription": b.subscription}));
    assert_eq!(r["result"]["ok"], true, "{r}");
    let r = b
        .rpc
        .call("unsubscribe", json!({"subscription": b.subscription}));
    assert_eq!(r["error"]["code"], -32007, "{r}");
    d.ctl_ok(&["start", "web"]);
    a.states_until("web", "running", T);
    // The next line on `b` is the reply to this request, not an event of that start.
    b.rpc
        .send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"version\"}\n");
    let next = b.rpc.read();
    assert_eq!(next["id"], 99, "an event after unsubscribe: {next}");
});

brtest!(reload_publishes_added_and_removed, two(), |d| {
    d.wait_state("api", "running");
    let mut events = d.events();
    d.write_config(
        &two()
            .without("web")
            .process("extra", Proc::sleep().autostart(false)),
    );
    let out = d.ctl_ok(&["reload"]);
    assert!(out.contains("1 added (extra)"), "{out}");
    assert!(out.contains("1 removed (web)"), "{out}");
    let mut seen_added = false;
    let mut seen_removed = false;
    let events = events.until(T, |e| {
        seen_added |= e["type"] == "process-added" && e["process"] == "extra";
        seen_removed |= e["type"] == "process-removed" && e["process"] == "web";
        seen_added && seen_removed
    });
    // Nothing about api: it did not change.
    assert!(events.iter().all(|e| e["process"] != "api"), "{events:?}");
    let s = d.status();
    assert!(s.contains_key("extra") && !s.contains_key("web"), "{s:?}");
});

/// `brummerctl [--json] events`, read line by line.
fn events_cli(d: &Daemon, json: bool) -> LineChild {
    let args: &[&str] = if json {
        &["--json", "events"]
    } else {
        &["events"]
    };
    LineChild::spawn(&mut d.ctl_cmd(args))
}

/// A program that keeps exiting and being restarted: a steady source of events, so a
/// fresh `brummerctl events` proves it is attached by printing one.
fn pulse() -> Proc {
    Proc::new(["sleep", "0.1"])
        .restart("always")
        .backoff("50ms", "50ms")
        .start_limit(1000, "1s")
}

brtest!(
    brummerctl_events_prints_state_changes,
    two().process("pulse", pulse()),
    |d| {
        let cli = events_cli(&d, false);
        cli.until(|l| l.contains(" pulse "));

        let started = d.ctl_ok(&["start", "web"]);
        d.ctl_ok(&["stop", "web"]);
        let lines = cli.until(|l| l.contains(" web stopping -> stopped"));
        let web: Vec<Vec<&str>> = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.get(1) == Some(&"web"))
            .collect();
        let changes: Vec<String> = web
            .iter()
            .map(|w| {
                assert!(w.len() >= 5 && w[3] == "->", "{w:?}");
                assert!(w[0].ends_with('Z') && w[0].contains('T'), "time: {w:?}");
                format!("{}->{}", w[2], w[4])
            })
            .collect();
        assert_eq!(
            changes,
            [
                "stopped->starting",
                "starting->running",
                "running->stopping",
                "stopping->stopped",
            ],
            "{lines:?}"
        );
        let running = lines
            .iter()
            .find(|l| l.contains(" web starting -> running"))
            .unwrap();
        // `web: started (pid N)` and the event line name the same pid.
        let pid = started
            .trim()
            .strip_prefix("web: started ")
            .unwrap_or_else(|| panic!("{started}"));
        assert!(running.ends_with(pid), "{running} vs {started}");
    }
);

brtest!(
    brummerctl_json_events_prints_one_object_per_line,
    two().process("pulse", pulse()),
    |d| {
        let cli = events_cli(&d, true);
        cli.until(|l| l.contains("\"pulse\""));
        d.write_config(
            &Config::new()
                .process("extra", Proc::sleep().autostart(false))
                .process("pulse", pulse()),
        );
        d.ctl_ok(&["reload"]);
        d.ctl_ok(&["start", "extra"]);
        let (mut added, mut removed_web, mut removed_api) = (false, false, false);
        let (mut extra_running, mut api_stopped) = (false, false);
        let lines = cli.until(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            assert!(v.is_object(), "{l}");
            added |= v["type"] == "process-added" && v["process"] == "extra";
            removed_web |= v["type"] == "process-removed" && v["process"] == "web";
            removed_api |= v["type"] == "process-removed" && v["process"] == "api";
            extra_running |= v["process"] == "extra" && v["new"] == "running";
            api_stopped |= v["process"] == "api" && v["new"] == "stopped";
            extra_running && api_stopped
        });
        assert!(added && removed_web && removed_api, "{lines:?}");
        let events: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seq not strictly increasing: {seqs:?}"
        );
        for e in &events {
            for k in ["subscription", "seq", "time_us", "type", "process"] {
                assert!(e.get(k).is_some(), "{k} missing: {e}");
            }
        }
        // api was running when removed: it is stopped too. (The daemon publishes the removal
        // first and the stop's state changes after it.)
        let api = transitions(&events, "api");
        assert!(
            api.contains(&"running->stopping".to_owned())
                && api.contains(&"stopping->stopped".to_owned()),
            "{api:?}"
        );
        assert!(!d.status().contains_key("api"));
    }
);
