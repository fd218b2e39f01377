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
    // While it runs, its parent is brummerd.
    if pid_alive(orphan) {
        let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
        let ppid: u32 = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        assert!(
            ppid == d.pid() || ppid == 0,
            "orphan {orphan} has parent {ppid}, not brummerd {}",
            d.pid()
        );
    }
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
