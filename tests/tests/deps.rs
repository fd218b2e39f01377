//! Dependencies (`requires`, `wants`, `after`) end to end: the order of starts and stops
//! from brummerd's own event stamps, a required program that fails for good keeping its
//! dependents from ever starting, `stop db` taking its dependents down first and saying
//! so, a stop ending a start that waits, a crash handled by the restart policy leaving
//! dependents alone, cycles, unknown names and self-references refused, and a reload that
//! adds a dependency to a running program.

use brummer_tests::{Config, Proc, T, brtest, brummerd_in, run, transitions};
use serde_json::Value;

fn names(v: &[&str]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect())
}

/// db <- worker <- web, and a sibling `side` that requires db too; none starts by itself.
fn stack() -> Config {
    Config::new()
        .process("db", Proc::sleep().autostart(false))
        .process(
            "worker",
            Proc::sleep()
                .autostart(false)
                .set("requires", names(&["db"])),
        )
        .process(
            "side",
            Proc::sleep().autostart(false).set("after", names(&["db"])),
        )
        .process(
            "web",
            Proc::sleep()
                .autostart(false)
                .set("requires", names(&["worker"]))
                .set("wants", names(&["side"])),
        )
}

/// The seq of `name`'s first state change to `new` among `evs`.
fn seq_of(evs: &[Value], name: &str, new: &str) -> u64 {
    evs.iter()
        .find(|e| e["type"] == "state-changed" && e["process"] == name && e["new"] == new)
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no {name} -> {new} among {evs:#?}"))
}

fn time_of(evs: &[Value], name: &str, new: &str) -> u64 {
    evs.iter()
        .find(|e| e["type"] == "state-changed" && e["process"] == name && e["new"] == new)
        .and_then(|e| e["time_us"].as_u64())
        .unwrap_or_else(|| panic!("no {name} -> {new} among {evs:#?}"))
}

/// The events up to the moment every program of `names` reached `new`.
fn until_all(events: &mut brummer_tests::Events<'_>, names: &[&str], new: &str) -> Vec<Value> {
    let mut left: Vec<&str> = names.to_vec();
    events.until(T, |e| {
        if e["type"] == "state-changed" && e["new"] == new {
            left.retain(|n| e["process"] != *n);
        }
        left.is_empty()
    })
}

brtest!(
    start_pulls_in_what_is_required_and_starts_it_first,
    stack(),
    |d| {
        let mut events = d.events();
        let out = d.ctl_ok(&["start", "web"]);
        // web, asked for, first; then what it pulled in, each saying why.
        assert!(out.starts_with("web: started"), "{out}");
        assert!(
            out.contains("worker: started because web requires it"),
            "{out}"
        );
        assert!(
            out.contains("db: started because worker requires it"),
            "{out}"
        );
        assert!(out.contains("side: started because web wants it"), "{out}");
        let evs = until_all(&mut events, &["db", "worker", "side", "web"], "running");
        // brummerd's own order and stamps: each program runs only after what it depends on.
        for (first, then) in [
            ("db", "worker"),
            ("worker", "web"),
            ("db", "side"),
            ("side", "web"),
        ] {
            assert!(
                seq_of(&evs, first, "running") < seq_of(&evs, then, "running"),
                "{then} running before {first}: {evs:#?}"
            );
            assert!(time_of(&evs, first, "running") <= time_of(&evs, then, "running"));
        }
        // A start waiting at its gate is `starting` without a pid: web's first change says so.
        let web_first = evs
            .iter()
            .find(|e| e["type"] == "state-changed" && e["process"] == "web")
            .unwrap();
        assert_eq!(web_first["new"], "starting", "{web_first}");
        assert!(web_first["pid"].is_null(), "{web_first}");
    }
);

brtest!(
    stop_takes_the_dependents_down_first_and_says_which,
    stack(),
    |d| {
        d.ctl_ok(&["start", "--all"]);
        for n in ["db", "worker", "side", "web"] {
            d.wait_state(n, "running");
        }
        let mut events = d.events();
        let out = d.ctl_ok(&["stop", "db"]);
        assert!(out.starts_with("db: stopped\n"), "{out}");
        assert!(
            out.contains("worker: stopped because it requires db"),
            "{out}"
        );
        assert!(
            out.contains("web: stopped because it requires worker"),
            "{out}"
        );
        // side is only after db: it keeps running.
        assert!(!out.contains("side"), "{out}");
        let evs = until_all(&mut events, &["db", "worker", "web"], "stopped");
        // Each stop begins once what requires it is stopped.
        assert!(
            seq_of(&evs, "web", "stopped") < seq_of(&evs, "worker", "stopping"),
            "{evs:#?}"
        );
        assert!(
            seq_of(&evs, "worker", "stopped") < seq_of(&evs, "db", "stopping"),
            "{evs:#?}"
        );
        assert_eq!(d.state_of("side")["state"], "running");
        // `restart db` with its dependents down restarts db alone.
        d.ctl_ok(&["start", "web"]);
        d.wait_state("web", "running");
        let web_pid = d.pid_of("web");
        let out = d.ctl_ok(&["restart", "db"]);
        assert!(
            out.contains("worker: restarted because it requires db"),
            "{out}"
        );
        assert!(
            out.contains("web: restarted because it requires worker"),
            "{out}"
        );
        let s = d.wait_state("web", "running");
        assert_ne!(
            s["pid"].as_u64(),
            Some(web_pid as u64),
            "web was restarted: {s:#}"
        );
    }
);

brtest!(
    a_required_program_that_fails_for_good_keeps_its_dependents_from_starting,
    // db never runs (its program does not exist), so nothing can see it running.
    Config::new()
        .process("db", Proc::new(["/nonexistent/brummer-test-db"]))
        .process("web", Proc::sleep().set("requires", names(&["db"])))
        .process("tail", Proc::sleep().set("wants", names(&["db"]))),
    |d| {
        let s = d.wait_state("web", "failed");
        assert_eq!(s["last_error"], "requires db, which failed", "{s:#}");
        assert!(s["pid"].is_null() && s["started_at"].is_null(), "{s:#}");
        assert_eq!(d.state_of("db")["state"], "failed");
        // `wants` only: the failure released it.
        d.wait_state("tail", "running");
        // An explicit start of web tries db again (pulled in), which fails again, and so
        // does web, with the reason in the reply and in its state-changed event.
        let mut events = d.events();
        let out = d.ctl(&["start", "web"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("web: failed: requires db, which failed"),
            "{text}"
        );
        assert!(text.contains("db: failed: "), "{text}");
        let evs = events.until(T, |e| e["process"] == "web" && e["new"] == "failed");
        let web: Vec<&Value> = evs
            .iter()
            .filter(|e| e["type"] == "state-changed" && e["process"] == "web")
            .collect();
        assert_eq!(
            transitions(&evs, "web"),
            ["failed->starting", "starting->failed"]
        );
        assert!(web.iter().all(|e| e["pid"].is_null()), "{web:#?}");
        assert_eq!(web[1]["reason"], "requires db, which failed");
        let s = d.state_of("web");
        assert!(s["pid"].is_null() && s["started_at"].is_null(), "{s:#}");
    }
);

brtest!(
    a_stop_ends_a_start_that_waits_and_status_says_for_what,
    // x is in backoff for an hour once killed: on its way up, and not running.
    Config::new()
        .process("x", Proc::sleep().restart("always").backoff("1h", "1h"))
        .process(
            "web",
            Proc::sleep().autostart(false).set("after", names(&["x"])),
        ),
    |d| {
        let x = d.wait_state("x", "running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(x["pid"].as_u64().unwrap() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        d.wait_state("x", "backoff");
        // The start waits (without end) for x: its reply comes when the wait ends.
        let mut cmd = d.ctl_cmd(&["start", "web"]);
        let mut start = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn brummerctl");
        let s = brummer_tests::wait_for("web to wait for x", T, || {
            let s = d.state_of("web");
            (s["waiting_for"] == serde_json::json!(["x"])).then_some(s)
        });
        assert_eq!(s["state"], "starting", "{s:#}");
        assert!(s["pid"].is_null(), "{s:#}");
        let text = d.ctl_ok(&["status", "web"]);
        assert!(text.contains("waiting for x"), "{text}");
        // A stop is taken at once, and ends the start.
        let out = d.ctl_ok(&["stop", "web"]);
        assert_eq!(out, "web: stopped\n");
        let s = d.state_of("web");
        assert_eq!(s["state"], "stopped", "{s:#}");
        assert!(s.get("waiting_for").is_none(), "{s:#}");
        let out = brummer_tests::wait_for("the waiting start to answer", T, || {
            start.try_wait().ok().flatten()
        });
        assert_eq!(out.code(), Some(1));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut start.stdout.take().unwrap(), &mut text).unwrap();
        assert!(
            text.contains("web: failed: the start was cancelled while it waited for x"),
            "{text}"
        );
        assert_eq!(d.state_of("x")["state"], "backoff");
    }
);

brtest!(
    a_crash_of_a_required_program_leaves_its_dependents_alone,
    Config::new()
        .process(
            "db",
            Proc::sleep().restart("always").backoff("10ms", "10ms")
        )
        .process("web", Proc::sleep().set("requires", names(&["db"]))),
    |d| {
        d.wait_state("db", "running");
        let web = d.wait_state("web", "running");
        let db_pid = d.pid_of("db");
        let mut events = d.events();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(db_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let evs = events.until(T, |e| {
            e["process"] == "db" && e["new"] == "running" && e["pid"] != db_pid
        });
        assert!(transitions(&evs, "web").is_empty(), "{evs:#?}");
        assert_eq!(d.state_of("web")["pid"], web["pid"]);
    }
);

brtest!(
    a_reload_that_adds_a_dependency_keeps_the_program_running_and_orders_its_next_start,
    Config::new()
        .process("db", Proc::sleep())
        .process("web", Proc::sleep()),
    |d| {
        d.wait_state("db", "running");
        let web_pid = d.wait_state("web", "running")["pid"].clone();
        d.write_config(
            &Config::new()
                .process("db", Proc::sleep())
                .process("web", Proc::sleep().set("requires", names(&["db"]))),
        );
        let out = d.ctl_ok(&["--json", "reload"]);
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["changed"], serde_json::json!(["web"]), "{r:#}");
        // Not restarted for it.
        let s = d.state_of("web");
        assert_eq!(s["pid"], web_pid, "{s:#}");
        assert_eq!(s["requires"], serde_json::json!(["db"]), "{s:#}");
        // In force: stopping db takes web along, starting web brings db first.
        let out = d.ctl_ok(&["stop", "db"]);
        assert!(out.contains("web: stopped because it requires db"), "{out}");
        let mut events = d.events();
        let out = d.ctl_ok(&["start", "web"]);
        assert!(out.contains("db: started because web requires it"), "{out}");
        let evs = until_all(&mut events, &["db", "web"], "running");
        assert!(seq_of(&evs, "db", "running") < seq_of(&evs, "web", "running"));
    }
);

fn refused(config: &str, extra: &[(&str, &str)]) -> (std::path::PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix("brummer-e2e-deps-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    let cfg = root.join("cfg/brummer");
    std::fs::create_dir_all(cfg.join("processes.d")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let main = cfg.join("brummer.toml");
    std::fs::write(&main, config).unwrap();
    for (name, text) in extra {
        std::fs::write(cfg.join("processes.d").join(name), text).unwrap();
    }
    for check in [true, false] {
        let mut cmd = brummerd_in(root);
        cmd.arg("--config").arg(&main);
        if check {
            cmd.arg("--check-config");
        }
        let out = run(cmd.env("BRUMMER_TEST_TAG", "deps-refused"));
        assert_eq!(out.status.code(), Some(1), "check {check}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !check {
            assert!(!root.join("run/brummer/brummer.sock").exists());
            return (main, stderr);
        }
    }
    unreachable!()
}

#[test]
fn a_cycle_is_refused_with_the_cycle_spelled_out() {
    let (main, stderr) = refused(
        "[process.web]\ncommand = \"sleep 1000\"\nrequires = [\"worker\"]\n",
        &[(
            "stack.toml",
            "[process.worker]\ncommand = \"sleep 1000\"\nwants = [\"db\"]\n\n[process.db]\ncommand = \"sleep 1000\"\nafter = [\"web\"]\n",
        )],
    );
    let dropin = main.parent().unwrap().join("processes.d/stack.toml");
    let want = format!(
        "{}:7: process.db.after[0]: cycle: db -> web -> worker -> db",
        dropin.display()
    );
    assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
}

#[test]
fn unknown_names_and_self_references_are_refused() {
    let (main, stderr) = refused(
        "[process.web]\ncommand = \"sleep 1000\"\nrequires = [\"dbb\"]\n\n[process.db]\ncommand = \"sleep 1000\"\nafter = [\"db\"]\n",
        &[],
    );
    let m = main.display();
    for want in [
        format!("{m}:3: process.web.requires[0]: unknown program \"dbb\": did you mean \"db\"?"),
        format!("{m}:7: process.db.after[0]: db cannot depend on itself"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
}

brtest!(
    a_reload_with_a_cycle_is_refused_and_changes_nothing,
    stack(),
    |d| {
        let text = std::fs::read_to_string(&d.config).unwrap();
        d.write_config_text(&format!("{text}\n[process.extra]\ncommand = \"sleep 1000\"\nrequires = [\"extra2\"]\n[process.extra2]\ncommand = \"sleep 1000\"\nrequires = [\"extra\"]\n"));
        let out = d.ctl(&["reload"]);
        assert_ne!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cycle: extra -> extra2 -> extra"),
            "{stderr}"
        );
        assert!(!d.status().contains_key("extra"));
    }
);

brtest!(deps_prints_the_graph, stack(), |d| {
    let tree = d.ctl_ok(&["deps"]);
    assert_eq!(
        tree,
        "web (stopped)\n├─ requires worker (stopped)\n│  └─ requires db (stopped)\n└─ wants side (stopped)\n   └─ after db (stopped)\n"
    );
    let rev = d.ctl_ok(&["deps", "--reverse", "db"]);
    assert_eq!(
        rev,
        "db (stopped)\n├─ before side (stopped)\n│  └─ wanted by web (stopped)\n└─ required by worker (stopped)\n   └─ required by web (stopped)\n"
    );
    let v: Value = serde_json::from_str(&d.ctl_ok(&["--json", "deps", "db"])).unwrap();
    assert_eq!(v["programs"][0]["name"], "db");
    assert_eq!(
        v["programs"][0]["dependents"],
        serde_json::json!(["side", "worker"])
    );
    let out = d.ctl(&["deps", "dbb"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean"));
});

brtest!(daemon_shutdown_stops_dependents_first, stack(), |d| {
    d.ctl_ok(&["start", "--all"]);
    for n in ["db", "worker", "side", "web"] {
        d.wait_state(n, "running");
    }
    let mut events = d.events();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // db goes last: everything else is ordered after it.
    let evs = until_all(&mut events, &["db", "worker", "side", "web"], "stopped");
    assert!(
        seq_of(&evs, "web", "stopped") < seq_of(&evs, "worker", "stopping"),
        "{evs:#?}"
    );
    assert!(
        seq_of(&evs, "web", "stopped") < seq_of(&evs, "side", "stopping"),
        "{evs:#?}"
    );
    assert!(
        seq_of(&evs, "worker", "stopped") < seq_of(&evs, "db", "stopping"),
        "{evs:#?}"
    );
    assert!(
        seq_of(&evs, "side", "stopped") < seq_of(&evs, "db", "stopping"),
        "{evs:#?}"
    );
    let st = d.terminate().expect("brummerd exits");
    assert!(st.success(), "{st}");
});

brtest!(
    start_up_starts_what_an_autostarted_program_requires,
    Config::new()
        .process("db", Proc::sleep().autostart(false))
        .process("idle", Proc::sleep().autostart(false))
        .process("web", Proc::sleep().set("requires", names(&["db"]))),
    |d| {
        d.wait_state("web", "running");
        assert_eq!(d.state_of("db")["state"], "running");
        assert_eq!(d.state_of("idle")["state"], "stopped");
    }
);

brtest!(
    a_start_that_joins_a_waiting_start_is_not_left_on_its_way,
    // x is in backoff for an hour once killed; web waits for it; app is only after web.
    Config::new()
        .process("x", Proc::sleep().restart("always").backoff("1h", "1h"))
        .process(
            "web",
            Proc::sleep().autostart(false).set("after", names(&["x"])),
        )
        .process(
            "app",
            Proc::sleep().autostart(false).set("after", names(&["web"])),
        ),
    |d| {
        let x = d.wait_state("x", "running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(x["pid"].as_u64().unwrap() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        d.wait_state("x", "backoff");
        // Two starts of web: the second joins the first's wait.
        let mut starts: Vec<std::process::Child> = (0..2)
            .map(|_| {
                d.ctl_cmd(&["start", "web"])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn brummerctl")
            })
            .collect();
        brummer_tests::wait_for("web to wait for x", T, || {
            (d.state_of("web")["waiting_for"] == serde_json::json!(["x"])).then_some(())
        });
        // The second start may come after the stop and wait anew: stopped again then.
        for s in &mut starts {
            let st = brummer_tests::wait_for("a waiting start to answer", T, || {
                if d.state_of("web")["state"] == "starting" {
                    d.ctl_ok(&["stop", "web"]);
                }
                s.try_wait().ok().flatten()
            });
            assert_eq!(st.code(), Some(1));
        }
        // web is stopped with no start on its way: app, only after it, starts at once
        // (a start counted but never taken would keep app waiting for web).
        let out = d.ctl_ok(&["start", "app"]);
        assert!(out.starts_with("app: started"), "{out}");
        assert_eq!(d.state_of("web")["state"], "stopped");
    }
);

brtest!(
    a_dependent_is_never_started_while_its_required_program_runs_but_is_not_ready,
    // db runs but never prints the line its readiness waits for: it stays `starting` (with
    // a pid) until ready_timeout fails its start, and, with restart = "never", for good.
    // web, which requires it, must never get a pid meanwhile, and then fails with why.
    Config::new()
        .process(
            "db",
            Proc::sh("echo warming up; exec sleep 1000")
                .set(
                    "ready",
                    toml::Value::Table(toml::toml! { log = "ready to accept" })
                )
                .set("ready_timeout", "1500ms")
                .restart("never"),
        )
        .process("web", Proc::sleep().set("requires", names(&["db"]))),
    |d| {
        let mut events = d.events();
        let db = d.wait_state("db", "starting");
        let evs = events.until(T, |e| e["process"] == "web" && e["new"] == "failed");
        assert!(
            evs.iter()
                .filter(|e| e["process"] == "web")
                .all(|e| e["pid"].is_null()),
            "web got a pid while db was not ready: {evs:#?}"
        );
        let db_failed = evs
            .iter()
            .find(|e| e["process"] == "db" && e["new"] == "failed")
            .unwrap_or_else(|| panic!("db did not fail before web: {evs:#?} (db was {db:#})"));
        assert!(
            db_failed["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("not ready within")),
            "{db_failed:#}"
        );
        let s = d.state_of("web");
        assert_eq!(s["last_error"], "requires db, which failed", "{s:#}");
        assert!(s["pid"].is_null() && s["started_at"].is_null(), "{s:#}");
    }
);
