//! Read-only callers: a uid that can reach the socket but is neither root, the daemon's
//! uid nor in group brummer may read (status) but every change is refused with exit 5 /
//! JSON-RPC -32002, and nothing changes.

use brummer_tests::{Daemon, bin};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const NOBODY: &str = "65534";

/// Root check; false (with the reason printed) when the test cannot run.
fn running_as_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run brummerctl under another uid (setpriv)");
        return false;
    }
    true
}

/// Test setup only: opens the temp dir chain and the socket (0600 in user mode) to
/// others, so that uid 65534 can connect; the daemon then decides by SO_PEERCRED.
fn open_socket_to_others(d: &Daemon) {
    let mut dirs = vec![];
    let mut p = d.socket.parent();
    while let Some(dir) = p {
        dirs.push(dir.to_path_buf());
        if dir == d.dir.path() {
            break;
        }
        p = dir.parent();
    }
    for dir in dirs {
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o011))
            .expect("chmod dir");
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
}

fn as_nobody(program: &std::path::Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program);
    c.env_remove("BRUMMER_SOCKET").env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

fn ctl_as_nobody(d: &Daemon, args: &[&str]) -> Output {
    as_nobody(&bin("brummerctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .output()
        .expect("run setpriv brummerctl")
}

const CONFIG: &str = r#"
[process.web]
command = ["sleep", "1000"]
autostart = false

[process.api]
command = ["sleep", "1000"]
"#;

#[test]
fn other_uids_may_read_but_not_change() {
    if !running_as_root() {
        return;
    }
    let d = Daemon::start(CONFIG);
    let api_pid = d.wait_state("api", "running", T)["pid"].clone();
    open_socket_to_others(&d);

    let out = ctl_as_nobody(&d, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web") && text.contains("api"), "{text}");
    let out = ctl_as_nobody(&d, &["logs", "api"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    for args in [
        &["start", "web"][..],
        &["stop", "api"],
        &["restart", "api"],
        &["stop", "--all"],
        &["reload"],
    ] {
        let out = ctl_as_nobody(&d, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {out:?}");
        assert!(
            stderr.contains("permission denied") && stderr.contains("uid 65534"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    // Nothing changed.
    let s = d.status();
    assert_eq!(s["web"]["state"], "stopped");
    assert_eq!(s["api"]["state"], "running");
    assert_eq!(s["api"]["pid"], api_pid);
    assert_eq!(s["web"]["generation"], 0);

    // The same caller as root can.
    d.ctl_ok(&["start", "web"]);
    assert_eq!(d.state_of("web")["state"], "running");
}

#[test]
fn raw_protocol_reports_permission_denied_as_32002() {
    if !running_as_root() {
        return;
    }
    let d = Daemon::start(CONFIG);
    open_socket_to_others(&d);
    let socat = std::path::Path::new("/usr/bin/socat");
    let mut child = as_nobody(socat)
        .arg("-t5")
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", d.socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setpriv socat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\"params\":{\"protocol\":1}}\n\
              {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"start\",\"params\":{\"names\":[\"web\"]}}\n\
              {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"reload\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"status\",\"params\":{\"names\":[\"web\"]}}\n",
        )
        .expect("write");
    let out = child.wait_with_output().expect("socat");
    assert!(out.status.success(), "{out:?}");
    let replies: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(replies.len(), 4, "{replies:?}");
    let by_id = |id: u64| {
        replies
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no reply {id}: {replies:?}"))
    };
    assert_eq!(by_id(1)["result"]["can_write"], false, "{replies:?}");
    for id in [2, 3] {
        let e = &by_id(id)["error"];
        assert_eq!(e["code"], -32002, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("uid 65534"),
            "{e}"
        );
    }
    assert_eq!(by_id(4)["result"]["processes"][0]["state"], "stopped");
    assert_eq!(d.state_of("web")["state"], "stopped");
}
