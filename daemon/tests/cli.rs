//! brummerd's command line, run as a real process (also makes cargo build the binary that
//! the end-to-end tests in `tests/` use).

use std::process::Command;

fn brummerd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brummerd"))
}

#[test]
fn version_and_help() {
    let out = brummerd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("brummerd {}", env!("CARGO_PKG_VERSION"))
    );
    let out = brummerd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--user",
        "--config",
        "--socket",
        "--check-config",
        "--dbus",
        "--dbus-address",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn check_config_accepts_the_example_and_rejects_a_bad_file() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/brummer.toml");
    let out = brummerd()
        .args(["--user", "--check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 process"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[process.web]\ncommand = [\"true\"]\nrestart = \"sometimes\"\n",
    )
    .unwrap();
    let out = brummerd()
        .args(["--user", "--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: process.web.restart", bad.display())),
        "error does not name file, line and key:\n{err}"
    );
}

#[test]
fn usage_error_exits_2() {
    let out = brummerd().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
