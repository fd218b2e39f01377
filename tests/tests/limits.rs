//! Resource limits on this machine (issue 18): the rlimits (`nofile`, `core`, `nproc`)
//! work everywhere, set in the child before it executes; a cgroup limit (`memory_max` ...)
//! where brummerd has no cgroup containment (this build machine: hybrid cgroup v1) is a
//! config error naming file, line, key, the reason and the fix. The cgroup side itself
//! (limits enforced, OOM reported) is proved in a VM with cgroup v2: packaging/e2e-vm.sh.

use brummer_tests::{Config, Proc, T, brtest, brummerd_in, run, wait_for};

/// A line of /proc/PID/limits: (soft, hard).
fn limit(pid: u32, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in {text}"));
    let mut f = line[name.len()..].split_whitespace();
    (
        f.next().unwrap_or_default().to_owned(),
        f.next().unwrap_or_default().to_owned(),
    )
}

/// A process limit below this process's hard one (which brummerd inherits), so that no
/// privilege is needed to set it.
fn some_nproc() -> u64 {
    let hard = limit(std::process::id(), "Max processes").1;
    hard.parse::<u64>().map_or(4321, |h| h.min(4321))
}

brtest!(
    rlimits_are_set_in_the_child_soft_and_hard,
    Config::new()
        .process(
            "web",
            Proc::sleep()
                .set("nofile", 777)
                .set("core", 0)
                .set("nproc", some_nproc() as i64),
        )
        .process("plain", Proc::sleep()),
    |d| {
        d.wait_state("web", "running");
        let pid = d.pid_of("web");
        assert_eq!(limit(pid, "Max open files"), ("777".into(), "777".into()));
        assert_eq!(limit(pid, "Max core file size"), ("0".into(), "0".into()));
        let n = some_nproc().to_string();
        assert_eq!(limit(pid, "Max processes"), (n.clone(), n));
        // A program without them inherits brummerd's.
        d.wait_state("plain", "running");
        assert_eq!(
            limit(d.pid_of("plain"), "Max open files"),
            limit(d.pid(), "Max open files")
        );
    }
);

#[test]
fn a_cgroup_limit_without_cgroup_containment_is_a_config_error_with_the_reason() {
    let dir = tempfile::Builder::new()
        .prefix("brummer-e2e-limits-")
        .tempdir()
        .expect("tempdir");
    let main = dir.path().join("brummer.toml");
    std::fs::write(
        &main,
        "[process.web]\ncommand = \"sleep 1000\"\nmemory_max = \"20M\"\ncpu_max = \"20%\"\n",
    )
    .expect("write config");
    // `--check-config` from a shell cannot see the cgroup the service will get: it accepts
    // the keys, and brummerd itself refuses them at start.
    let mut check = brummerd_in(dir.path());
    check.arg("--check-config").arg("--config").arg(&main);
    let out = run(&mut check);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut cmd = brummerd_in(dir.path());
    cmd.arg("--config").arg(&main);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!dir.path().join("run/brummer/brummer.sock").exists());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (line, key) in [(3, "memory_max"), (4, "cpu_max")] {
        let want = format!(
            "{}:{line}: process.web.{key}: {key} is applied through the program's cgroup, and brummerd has no cgroup containment here: ",
            main.display()
        );
        assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    }
    assert!(
        stderr.contains(
            "remove the key, or run brummerd where it gets a delegated cgroup v2 subtree"
        ),
        "{stderr}"
    );
}

brtest!(
    this_machine_has_no_cgroup_containment_and_says_why_once,
    Config::new().process("web", Proc::sleep()),
    |d| {
        d.wait_state("web", "running");
        assert_eq!(d.state_of("web")["containment"], "process-group");
        let log = wait_for("the containment line in the log", T, || {
            let log = d.daemon_log();
            log.contains("no cgroup containment").then_some(log)
        });
        assert!(log.contains("why="), "the reason is given: {log}");
        assert_eq!(
            log.matches("no cgroup containment").count(),
            1,
            "said once: {log}"
        );
    }
);
