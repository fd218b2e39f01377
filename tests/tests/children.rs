//! What a child sees and what happens to what it leaves behind: its environment, orphans
//! re-parented to brummerd, and the system-mode socket's permissions.

use brummer_tests::{
    Config, Daemon, Proc, T, bin, brtest, pgrp_and_session, pid_alive, ppid, require_root, wait_for,
};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

#[test]
fn child_environment_has_no_systemd_service_variables_and_stdin_is_null() {
    let config = Config::new().process(
        "envdump",
        Proc::sh("env; echo stdin=$(readlink /proc/self/fd/0); echo END; exec sleep 1000")
            .env("FROM_CONFIG", "yes"),
    );
    let d = Daemon::builder(&config)
        .env("NOTIFY_SOCKET", "/nonexistent/notify")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "3")
        .env("LISTEN_FDNAMES", "control")
        .env("WATCHDOG_PID", "1")
        .env("WATCHDOG_USEC", "1000000")
        .env("KEPT_FROM_DAEMON", "kept")
        .start();
    let lines = d.wait_logged("envdump", "END");
    for gone in [
        "NOTIFY_SOCKET",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{gone}="))),
            "{gone} leaked into the child: {lines:?}"
        );
    }
    assert!(
        lines.contains(&"KEPT_FROM_DAEMON=kept".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"FROM_CONFIG=yes".to_string()), "{lines:?}");
    assert!(lines.contains(&"stdin=/dev/null".to_string()), "{lines:?}");
}

brtest!(
    /// The subshell prints the pid of a grandchild, then exits: the grandchild is
    /// re-parented to brummerd (a child subreaper) and must be reaped when it ends.
    orphans_reparented_to_brummerd_are_reaped,
    Config::new().process(
        "orphaner",
        Proc::sh("sh -c 'sleep 0.3 & echo orphan=$!' ; exec sleep 1000"),
    ),
    |d| {
    let orphan: u32 = wait_for("the orphan's pid", T, || {
        d.log_lines("orphaner")
            .iter()
            .find_map(|l| l.strip_prefix("orphan=").and_then(|p| p.parse().ok()))
    });
    // While it runs, its parent is brummerd, once the subshell that printed the line has
    // exited (it may still be running right after the echo).
    let ppid_of = |pid: u32| ppid(pid).unwrap_or(0);
    let first_parent = ppid_of(orphan);
    wait_for("the orphan to be re-parented to brummerd", T, || {
        let ppid = ppid_of(orphan);
        assert!(
            ppid == d.pid() || ppid == 0 || ppid == first_parent,
            "orphan {orphan} has parent {ppid}, not brummerd {} nor its subshell {first_parent}",
            d.pid()
        );
        (ppid == d.pid() || ppid == 0 || !pid_alive(orphan)).then_some(())
    });
    // Reaped means gone from /proc altogether, not left as a zombie of brummerd.
    wait_for("the orphan to be reaped", T, || {
        (!std::path::Path::new(&format!("/proc/{orphan}")).exists()).then_some(())
    });
});

#[test]
#[ignore = "needs root"]
fn system_mode_socket_is_0660() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("brummer.toml");
    let logs = dir.path().join("logs");
    std::fs::write(&config, Config::new().log_dir(&logs).render()).expect("config");
    let socket = dir.path().join("run/brummer.sock");
    let mut child = Command::new(bin("brummerd"))
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn brummerd");
    wait_for("the system socket", T, || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    });
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait");
    assert_eq!(mode, 0o660, "system socket mode {mode:o}");
    assert!(status.success(), "brummerd exited with {status}");
    assert!(!socket.exists(), "socket left behind after shutdown");
    assert!(logs.is_dir(), "log dir not created");
}

/// A program that prints its signal masks, uid and $USER, then `END`.
fn probe() -> Proc {
    Proc::sh(
        "grep -E '^(Sig(Ign|Blk)|Uid)' /proc/self/status; echo USER=$USER; echo END; exec sleep 1000",
    )
}

/// `name` has empty signal masks and leads its own process group and session; returns the
/// lines it printed.
fn check_child_setup(d: &Daemon, name: &str) -> Vec<String> {
    let lines = d.wait_logged(name, "END");
    for mask in ["SigIgn:", "SigBlk:"] {
        let line = lines.iter().find(|l| l.starts_with(mask));
        assert_eq!(
            line.map(|l| l.split_whitespace().nth(1).unwrap_or_default()),
            Some("0000000000000000"),
            "{name}: {mask} must be empty: {lines:?}"
        );
    }
    let pid = d.pid_of(name);
    assert_eq!(
        pgrp_and_session(pid),
        Some((pid, pid)),
        "{name} must lead its own process group and session"
    );
    lines
}

brtest!(
    /// A plain program is started by `posix_spawn`.
    spawned_child_leads_its_own_session_with_no_ignored_or_blocked_signal,
    Config::new().process("plain", probe()),
    |d| {
        check_child_setup(&d, "plain");
    }
);

/// A program with `user` is started by fork + exec (dropping privileges needs root): the
/// same setup as the spawn path, under the other uid.
#[test]
#[ignore = "needs root"]
fn forked_child_with_user_leads_its_own_session_with_no_ignored_or_blocked_signal() {
    require_root();
    let d = Daemon::start(&Config::new().process("dropped", probe().user("nobody")));
    let lines = check_child_setup(&d, "dropped");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{lines:?}"
    );
    assert!(lines.contains(&"USER=nobody".to_string()), "{lines:?}");
}

/// The program is looked up on the PATH the child gets (the program's `env`), relative
/// paths resolve in its `cwd`, a file without `#!` runs through /bin/sh, and a candidate
/// that may not be executed is passed over, as execvp does.
#[test]
fn program_lookup_follows_the_child_path_and_cwd() {
    use std::fs::{create_dir_all, set_permissions, write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for sub in ["noexec", "bin", "work"] {
        create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let mode = |p: &std::path::Path, m: u32| {
        set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    // Same name, not executable, earlier on PATH: skipped.
    write(dir.join("noexec/brummer-tool"), "echo wrong tool\n").expect("write");
    mode(&dir.join("noexec/brummer-tool"), 0o644);
    // No `#!`: the kernel says ENOEXEC, and it runs as a shell script.
    write(dir.join("bin/brummer-tool"), "echo \"tool $1 in $(pwd)\"\n").expect("write");
    mode(&dir.join("bin/brummer-tool"), 0o755);
    write(dir.join("work/rel-tool"), "#!/bin/sh\necho \"rel $1\"\n").expect("write");
    mode(&dir.join("work/rel-tool"), 0o755);
    write(dir.join("work/not-executable"), "echo no\n").expect("write");
    mode(&dir.join("work/not-executable"), 0o644);
    let work = dir.join("work");
    let path = format!("/nonexistent:{d}/noexec:{d}/bin", d = dir.display());
    let d = Daemon::start(
        &Config::new()
            .process(
                "onpath",
                Proc::new(["brummer-tool", "one"])
                    .cwd(&work)
                    .env("PATH", &path)
                    .restart("never"),
            )
            .process(
                "relative",
                Proc::new(["./rel-tool", "two"]).cwd(&work).restart("never"),
            )
            .process(
                "denied",
                Proc::new([work.join("not-executable").display().to_string()]).autostart(false),
            ),
    );
    let want = [
        (
            "onpath",
            format!("tool one in {}", dir.join("work").display()),
        ),
        ("relative", "rel two".to_string()),
    ];
    for (name, line) in want {
        wait_for(&format!("{name}'s output"), T, || {
            d.log_lines(name).contains(&line).then_some(())
        });
    }
    let out = d.ctl(&["start", "denied"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = d.state_of("denied")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("permission denied running"), "{err}");
}
