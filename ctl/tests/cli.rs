//! brummerctl as a real process, without a daemon (also makes cargo build the binary that
//! the end-to-end tests in `tests/` use).

use std::process::Command;

fn ctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brummerctl"));
    c.env_remove("BRUMMER_SOCKET");
    c
}

#[test]
fn unreachable_daemon_exits_3_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nope.sock");
    let out = ctl()
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach brummerd at {}", sock.display())),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let out = ctl().arg("start").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = ctl().args(["start", "--all", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = ctl().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["unreachable", "permission denied", "no such process"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
