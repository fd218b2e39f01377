//! The event stream: state changes of start and stop in order with increasing seq, the
//! subscribe reply's seq, added/removed events on reload, and `brummerctl events` in text
//! and JSON form.

use brummer_tests::{Daemon, Rpc};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[process.web]
command = ["sleep", "1000"]
autostart = false

[process.api]
command = ["sleep", "1000"]
"#;

/// Reads `event` notifications until `stop` says so; returns them all (params objects).
fn events_until(rpc: &mut Rpc, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + T;
    let mut out = vec![];
    loop {
        assert!(Instant::now() < deadline, "events so far: {out:?}");
        let v = rpc.read();
        assert_ne!(v["method"], "missed", "{v}");
        if v["method"] != "event" {
            continue;
        }
        let p = v["params"].clone();
        let done = stop(&p);
        out.push(p);
        if done {
            return out;
        }
    }
}

fn transitions(events: &[Value], process: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "state-changed" && e["process"] == process)
        .map(|e| {
            (
                e["old"].as_str().unwrap_or("?").to_owned(),
                e["new"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn assert_seq_increasing(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not strictly increasing: {seqs:?}"
    );
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn subscribe_sees_start_and_stop_in_order() {
    let d = Daemon::start(CONFIG);
    d.wait_state("api", "running", T);
    let mut a = d.rpc();
    let r = a.call("subscribe", json!({}));
    let sub_a = r["result"]["subscription"].as_u64().expect("subscription");
    assert!(r["result"]["seq"].is_u64(), "{r}");

    d.ctl_ok(&["start", "web"]);
    let started = events_until(&mut a, |e| e["process"] == "web" && e["new"] == "running");
    assert_eq!(
        transitions(&started, "web"),
        [pair("stopped", "starting"), pair("starting", "running")]
    );
    assert_seq_increasing(&started);
    let running = started.last().unwrap();
    let pid = d.state_of("web")["pid"].clone();
    assert_eq!(running["pid"], pid);
    assert_eq!(running["subscription"], sub_a);
    assert!(running["time_us"].as_u64().unwrap() > 0);
    let last_seq = running["seq"].as_u64().unwrap();

    // A second subscriber now: its reply names the last event published before it.
    let mut b = d.rpc();
    let r = b.call("subscribe", json!({}));
    assert_eq!(r["result"]["seq"], last_seq, "{r}");

    d.ctl_ok(&["stop", "web"]);
    let stopped_a = events_until(&mut a, |e| e["process"] == "web" && e["new"] == "stopped");
    let stopped_b = events_until(&mut b, |e| e["process"] == "web" && e["new"] == "stopped");
    for stopped in [&stopped_a, &stopped_b] {
        assert_eq!(
            transitions(stopped, "web"),
            [pair("running", "stopping"), pair("stopping", "stopped")]
        );
        assert_seq_increasing(stopped);
        assert_eq!(stopped[0]["seq"], last_seq + 1, "{stopped:?}");
    }
    let seqs = |v: &[Value]| v.iter().map(|e| e["seq"].clone()).collect::<Vec<_>>();
    assert_eq!(seqs(&stopped_a), seqs(&stopped_b));

    // After unsubscribe, no more events on that subscription.
    let sub_b = stopped_b[0]["subscription"].as_u64().unwrap();
    let r = b.call("unsubscribe", json!({"subscription": sub_b}));
    assert_eq!(r["result"]["ok"], true, "{r}");
    let r = b.call("unsubscribe", json!({"subscription": sub_b}));
    assert_eq!(r["error"]["code"], -32007, "{r}");
}

#[test]
fn reload_publishes_added_and_removed() {
    let d = Daemon::start(CONFIG);
    d.wait_state("api", "running", T);
    let mut rpc = d.rpc();
    rpc.call("subscribe", json!({}));
    d.write_config(
        r#"
[process.api]
command = ["sleep", "1000"]

[process.extra]
command = ["sleep", "1000"]
autostart = false
"#,
    );
    let out = d.ctl_ok(&["reload"]);
    assert!(out.contains("1 added (extra)"), "{out}");
    assert!(out.contains("1 removed (web)"), "{out}");
    let mut seen_added = false;
    let mut seen_removed = false;
    let events = events_until(&mut rpc, |e| {
        seen_added |= e["type"] == "process-added" && e["process"] == "extra";
        seen_removed |= e["type"] == "process-removed" && e["process"] == "web";
        seen_added && seen_removed
    });
    assert_seq_increasing(&events);
    // Nothing about api: it did not change.
    assert!(events.iter().all(|e| e["process"] != "api"), "{events:?}");
    let s = d.status();
    assert!(s.contains_key("extra") && !s.contains_key("web"), "{s:?}");
}

/// `brummerctl [--json] events` with stdout read line by line in a thread.
struct EventsCli {
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl EventsCli {
    fn spawn(d: &Daemon, json: bool) -> EventsCli {
        let args: &[&str] = if json {
            &["--json", "events"]
        } else {
            &["events"]
        };
        let mut child = d
            .ctl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn brummerctl events");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        EventsCli { child, rx }
    }

    fn next(&self) -> String {
        self.rx
            .recv_timeout(T)
            .expect("brummerctl events printed nothing in time")
    }

    /// Lines up to and including the first one `stop` accepts.
    fn until(&self, mut stop: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut out = vec![];
        loop {
            let l = self.next();
            let done = stop(&l);
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

impl Drop for EventsCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program that keeps exiting and being restarted: a steady source of events, so a
/// fresh `brummerctl events` proves it is attached by printing one.
const PULSE: &str = r#"
[process.pulse]
command = ["sleep", "0.1"]
restart = "always"

[process.pulse.backoff]
initial = "50ms"
max = "50ms"

[process.pulse.start_limit]
burst = 1000
interval = "1s"
"#;

#[test]
fn brummerctl_events_prints_state_changes() {
    let d = Daemon::start(&format!("{CONFIG}{PULSE}"));
    let cli = EventsCli::spawn(&d, false);
    cli.until(|l| l.contains(" pulse "));

    d.ctl_ok(&["start", "web"]);
    d.ctl_ok(&["stop", "web"]);
    let lines = cli.until(|l| l.contains(" web stopping -> stopped"));
    let web: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.get(1) == Some(&"web"))
        .collect();
    let changes: Vec<(String, String)> = web
        .iter()
        .map(|w| {
            assert!(w.len() >= 5 && w[3] == "->", "{w:?}");
            assert!(w[0].ends_with('Z') && w[0].contains('T'), "time: {w:?}");
            pair(w[2], w[4])
        })
        .collect();
    assert_eq!(
        changes,
        [
            pair("stopped", "starting"),
            pair("starting", "running"),
            pair("running", "stopping"),
            pair("stopping", "stopped"),
        ],
        "{lines:?}"
    );
    let running = lines
        .iter()
        .find(|l| l.contains(" web starting -> running"))
        .unwrap();
    assert!(running.contains("(pid "), "{running}");
}

#[test]
fn brummerctl_json_events_prints_one_object_per_line() {
    let d = Daemon::start(&format!("{CONFIG}{PULSE}"));
    let cli = EventsCli::spawn(&d, true);
    cli.until(|l| l.contains("\"pulse\""));
    d.write_config(&format!(
        r#"
[process.extra]
command = ["sleep", "1000"]
autostart = false
{PULSE}"#
    ));
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
    assert_seq_increasing(&events);
    for e in &events {
        for k in ["subscription", "seq", "time_us", "type", "process"] {
            assert!(e.get(k).is_some(), "{k} missing: {e}");
        }
    }
    // api was running when removed: it is stopped too. (The daemon publishes the removal
    // first and the stop's state changes after it.)
    let api: Vec<(String, String)> = transitions(&events, "api");
    assert!(
        api.contains(&pair("running", "stopping")) && api.contains(&pair("stopping", "stopped")),
        "{api:?}"
    );
    assert!(!d.status().contains_key("api"));
}
