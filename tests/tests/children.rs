//! What a child sees and what happens to what it leaves behind: its environment, orphans
//! re-parented to brummerd, and the system-mode socket's permissions.

use brummer_tests::{Daemon, bin, pid_alive, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// The lines `brummerctl logs NAME` prints.
fn log_lines(d: &Daemon, name: &str) -> Vec<String> {
    d.ctl_ok(&["logs", "-n", "1000", name])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn child_environment_has_no_systemd_service_variables_and_stdin_is_null() {
    let d = Daemon::start_full(
        r#"
[process.envdump]
command = ["sh", "-c", "env; echo stdin=$(readlink /proc/self/fd/0); echo END; exec sleep 1000"]
env = { FROM_CONFIG = "yes" }
"#,
        &[],
        &[
            ("NOTIFY_SOCKET", "/nonexistent/notify"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDS", "3"),
            ("LISTEN_FDNAMES", "control"),
            ("WATCHDOG_PID", "1"),
            ("WATCHDOG_USEC", "1000000"),
            ("KEPT_FROM_DAEMON", "kept"),
        ],
    );
    let lines = wait_for("the env dump", T, || {
        let l = log_lines(&d, "envdump");
        l.iter().any(|x| x == "END").then_some(l)
    });
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

#[test]
fn orphans_reparented_to_brummerd_are_reaped() {
    // The subshell prints the pid of a grandchild, then exits: the grandchild is
    // re-parented to brummerd (a child subreaper) and must be reaped when it ends.
    let d = Daemon::start(
        r#"
[process.orphaner]
command = ["sh", "-c", "sh -c 'sleep 0.3 & echo orphan=$!' ; exec sleep 1000"]
"#,
    );
    let orphan: u32 = wait_for("the orphan's pid", T, || {
        log_lines(&d, "orphaner")
            .iter()
            .find_map(|l| l.strip_prefix("orphan=").and_then(|p| p.parse().ok()))
    });
    // While it runs, its parent is brummerd, once the subshell that printed the line has
    // exited (it may still be running right after the echo).
    let ppid_of = |pid: u32| -> u32 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
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
}

#[test]
fn system_mode_socket_is_0660() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: system mode needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("brummer.toml");
    let logs = dir.path().join("logs");
    std::fs::write(
        &config,
        format!("[daemon]\nlog_dir = \"{}\"\n", logs.display()),
    )
    .expect("config");
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

/// (process group, session) of `pid`, from /proc/PID/stat.
fn pgrp_and_session(pid: u64) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, r)| {
            r.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // After "(comm)": state (not a number, skipped by the parse), ppid, pgrp, session.
    (
        f.get(1).copied().unwrap_or(0),
        f.get(2).copied().unwrap_or(0),
    )
}

/// The child setup is the same whichever way brummerd starts a program: `posix_spawn` for
/// plain programs, fork + exec for those with `user` (root only).
#[test]
fn child_leads_its_own_session_with_no_ignored_or_blocked_signal() {
    let root = nix::unistd::geteuid().is_root();
    let probe = r#"command = ["sh", "-c", "grep -E '^(Sig(Ign|Blk)|Uid)' /proc/self/status; echo USER=$USER; echo END; exec sleep 1000"]"#;
    let mut config = format!("[process.plain]\n{probe}\n");
    if root {
        config.push_str(&format!(
            "\n[process.dropped]\n{probe}\nuser = \"nobody\"\n"
        ));
    } else {
        eprintln!("the fork path (user = ...) is skipped: it needs root");
    }
    let d = Daemon::start(&config);
    let names: &[&str] = if root {
        &["plain", "dropped"]
    } else {
        &["plain"]
    };
    for name in names {
        let lines = wait_for(&format!("{name}'s signal masks"), T, || {
            let l = log_lines(&d, name);
            l.iter().any(|x| x == "END").then_some(l)
        });
        for mask in ["SigIgn:", "SigBlk:"] {
            let line = lines.iter().find(|l| l.starts_with(mask));
            assert_eq!(
                line.map(|l| l.split_whitespace().nth(1).unwrap_or_default()),
                Some("0000000000000000"),
                "{name}: {mask} must be empty: {lines:?}"
            );
        }
        let pid = d.state_of(name)["pid"].as_u64().unwrap_or(0);
        assert!(pid > 0, "{name} has no pid");
        assert_eq!(
            pgrp_and_session(pid),
            (pid, pid),
            "{name} must lead its own process group and session"
        );
        if *name == "dropped" {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("Uid:") && l.contains("65534")),
                "{lines:?}"
            );
            assert!(lines.contains(&"USER=nobody".to_string()), "{lines:?}");
        }
    }
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
    let d = Daemon::start(&format!(
        r#"
[process.onpath]
command = ["brummer-tool", "one"]
cwd = "{work}"
env = {{ PATH = "/nonexistent:{dir}/noexec:{dir}/bin" }}
restart = "never"

[process.relative]
command = ["./rel-tool", "two"]
cwd = "{work}"
restart = "never"

[process.denied]
command = ["{work}/not-executable"]
autostart = false
"#,
        dir = dir.display(),
        work = dir.join("work").display(),
    ));
    let want = [
        (
            "onpath",
            format!("tool one in {}", dir.join("work").display()),
        ),
        ("relative", "rel two".to_string()),
    ];
    for (name, line) in want {
        wait_for(&format!("{name}'s output"), T, || {
            log_lines(&d, name).contains(&line).then_some(())
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
