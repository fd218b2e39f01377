//! Configuration end to end: a bad file stops brummerd from starting (every error, with file,
//! line and key), reload applies exactly the difference, a bad reload keeps the running
//! config, SIGHUP reloads, and drop-ins in processes.d count.

use brummer_tests::{Config, Proc, T, brtest, brummerd_in, pid_alive, run, wait_for};
use serde_json::Value;

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn daemon_refuses_a_bad_config_and_reports_every_error() {
    let dir = tempfile::Builder::new()
        .prefix("brummer-e2e-cfg-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    let cfg_dir = root.join("cfg/brummer");
    std::fs::create_dir_all(cfg_dir.join("processes.d")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let main = cfg_dir.join("brummer.toml");
    std::fs::write(
        &main,
        r#"[process.web]
command = ["sleep", "1000"]
restart = "sometimes"
stop_timeout = "soon"

[process.db]
command = ["sleep", "1000"]
bogus = 1
"#,
    )
    .unwrap();
    let dropin = cfg_dir.join("processes.d/x.toml");
    std::fs::write(
        &dropin,
        r#"[process.x]
command = ["sleep", "1000"]
autostart = "yes"
"#,
    )
    .unwrap();

    let out = run(brummerd_in(root)
        .arg("--config")
        .arg(&main)
        .env("BRUMMER_TEST_TAG", "config-refused"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    let m = main.display();
    for want in [
        format!("{m}:3: process.web.restart"),
        format!("{m}:4: process.web.stop_timeout"),
        format!("{m}:8: process.db.bogus"),
        format!("{}:3: process.x.autostart", dropin.display()),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    assert!(
        !root.join("run/brummer/brummer.sock").exists(),
        "a refused config must not open the socket"
    );
}

/// Programs that run until stopped, one per name.
fn sleepers(names: &[&str]) -> Config {
    names
        .iter()
        .fold(Config::new(), |c, n| c.process(n, Proc::sleep()))
}

brtest!(
    reload_applies_exactly_the_difference,
    sleepers(&["a", "b", "c"]),
    |d| {
        for n in ["a", "b", "c"] {
            d.wait_state(n, "running");
        }
        let (a1, b1, c1) = (d.pid_of("a"), d.pid_of("b"), d.pid_of("c"));

        d.write_config(
            &sleepers(&["a"])
                .process("b", Proc::new(["sleep", "2000"]))
                .process("d", Proc::sleep().autostart(true)),
        );
        let out = d.ctl_ok(&["--json", "reload"]);
        let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(names(&r["added"]), ["d"], "{r:#}");
        assert_eq!(names(&r["removed"]), ["c"], "{r:#}");
        assert_eq!(names(&r["changed"]), ["b"], "{r:#}");
        assert_eq!(names(&r["unchanged"]), ["a"], "{r:#}");

        // The reply waits for the removal and the restart with the new definition.
        assert!(!pid_alive(c1), "removed c (pid {c1}) still alive");
        assert!(!pid_alive(b1), "changed b kept its old process {b1}");
        let st = d.status();
        assert_eq!(
            st.keys().cloned().collect::<Vec<_>>(),
            ["a", "b", "d"],
            "{st:#?}"
        );
        assert_eq!(d.pid_of("a"), a1, "unchanged a was restarted");
        assert!(pid_alive(a1));
        let b2 = d.pid_of("b");
        assert_ne!(b2, b1);
        assert!(pid_alive(b2));
        assert!(
            cmdline(b2).contains("sleep 2000"),
            "b runs {:?}",
            cmdline(b2)
        );
        let s = d.wait_state("d", "running");
        assert!(pid_alive(s["pid"].as_u64().unwrap() as u32), "{s:#}");

        // The same config again: nothing changes, said in words.
        let out = d.ctl_ok(&["reload"]);
        assert_eq!(out.trim(), "reloaded: nothing changed (3 unchanged)");
        assert_eq!(d.pid_of("a"), a1);
        assert_eq!(d.pid_of("b"), b2);
    }
);

fn good() -> Config {
    sleepers(&["a"]).process("b", Proc::sleep().autostart(false))
}

brtest!(
    a_bad_reload_is_rejected_and_the_running_config_stays,
    good(),
    |d| {
        d.wait_state("a", "running");
        let a1 = d.pid_of("a");
        let before: Vec<(String, Value, Value)> = d
            .status()
            .into_iter()
            .map(|(n, s)| (n, s["state"].clone(), s["pid"].clone()))
            .collect();

        let bad_value = "[process.a]\ncommand = [\"sleep\", \"1000\"]\nrestart = \"sometimes\"\n\n[process.n]\ncommand = [\"true\"]\n";
        let bad_toml =
            "[process.a]\ncommand = [\"sleep\", \"1000\"\n\n[process.n]\ncommand = [\"true\"]\n";
        let cfg = d.config.display().to_string();
        for (bad, want) in [
            (bad_value, format!("{cfg}:3: process.a.restart")),
            (bad_toml, format!("{cfg}:")),
        ] {
            d.write_config_text(bad);
            let out = d.ctl(&["reload"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "bad reload must fail with 1\nstdout: {}\nstderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
            let after: Vec<(String, Value, Value)> = d
                .status()
                .into_iter()
                .map(|(n, s)| (n, s["state"].clone(), s["pid"].clone()))
                .collect();
            assert_eq!(
                after, before,
                "a rejected reload changed the running config"
            );
            assert!(pid_alive(a1));
        }
        // The syntax error names its line too.
        d.write_config_text(bad_toml);
        let stderr = String::from_utf8_lossy(&d.ctl(&["reload"]).stderr).into_owned();
        let line = stderr
            .lines()
            .find(|l| l.contains(&cfg))
            .unwrap_or_else(|| panic!("no {cfg} in {stderr}"));
        let rest = &line[line.find(&cfg).unwrap() + cfg.len()..];
        assert!(
            rest.starts_with(':') && rest[1..].chars().next().is_some_and(|c| c.is_ascii_digit()),
            "syntax error without a line number: {line}"
        );

        // A fixed file reloads fine afterwards.
        d.write_config(&good());
        let out = d.ctl_ok(&["reload"]);
        assert!(out.contains("nothing changed"), "{out}");
        assert_eq!(d.pid_of("a"), a1);
    }
);

brtest!(sighup_reloads, sleepers(&["a"]), |d| {
    d.wait_state("a", "running");
    let a1 = d.pid_of("a");
    d.write_config(&sleepers(&["a", "e"]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP brummerd");
    let s = wait_for("e to appear and run after SIGHUP", T, || {
        d.status().remove("e").filter(|s| s["state"] == "running")
    });
    assert!(pid_alive(s["pid"].as_u64().unwrap() as u32), "{s:#}");
    assert_eq!(d.pid_of("a"), a1, "unchanged a was restarted by SIGHUP");
});

brtest!(
    dropins_in_processes_d_are_loaded,
    sleepers(&["main"]),
    |d| {
        d.wait_state("main", "running");
        let dir = d.config.parent().unwrap().join("processes.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x.toml"), sleepers(&["x"]).render()).unwrap();
        // Not a .toml file: ignored.
        std::fs::write(dir.join("y.toml.disabled"), sleepers(&["y"]).render()).unwrap();

        let out = d.ctl_ok(&["--json", "reload"]);
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(names(&r["added"]), ["x"], "{r:#}");
        assert_eq!(names(&r["unchanged"]), ["main"], "{r:#}");
        d.wait_state("x", "running");

        // And at start-up.
        d.restart_daemon();
        let st = d.status();
        assert_eq!(
            st.keys().cloned().collect::<Vec<_>>(),
            ["main", "x"],
            "{st:#?}"
        );
        let s = d.wait_state("x", "running");
        assert!(pid_alive(s["pid"].as_u64().unwrap() as u32), "{s:#}");
    }
);
