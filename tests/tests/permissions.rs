//! Read-only callers: a uid that can reach the socket but is neither root, the daemon's
//! uid nor in group brummer may read (status) but every change is refused with exit 5 /
//! JSON-RPC -32002, and nothing changes. Calling as another uid needs root: these tests are
//! ignored unless asked for (`.ci/run` runs them as root).

use brummer_tests::{Config, Daemon, Proc, as_nobody, bin, require_root, socat};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

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

fn ctl_as_nobody(d: &Daemon, args: &[&str]) -> Output {
    brummer_tests::run(
        as_nobody(bin("brummerctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(args),
    )
}

/// `web` waits to be started, `api` runs.
fn two() -> Config {
    Config::new()
        .process("web", Proc::sleep().autostart(false))
        .process("api", Proc::sleep())
}

#[test]
#[ignore = "needs root"]
fn other_uids_may_read_but_not_change() {
    require_root();
    let d = Daemon::start(&two());
    let api_pid = d.wait_state("api", "running")["pid"].clone();
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
        &["enable", "web"],
        &["disable", "--now", "api"],
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
    assert_eq!(s["api"]["enabled"], true);
    assert!(
        !d.enabled_file().exists(),
        "a refused enable wrote its file"
    );

    // The same caller as root can.
    d.ctl_ok(&["start", "web"]);
    assert_eq!(d.state_of("web")["state"], "running");
}

#[test]
#[ignore = "needs root"]
fn raw_protocol_reports_permission_denied_as_32002() {
    require_root();
    let d = Daemon::start(&two());
    open_socket_to_others(&d);
    let out = socat(
        as_nobody("/usr/bin/socat"),
        &d.socket,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\"params\":{\"protocol\":1}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"start\",\"params\":{\"names\":[\"web\"]}}\n\
          {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"reload\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"status\",\"params\":{\"names\":[\"web\"]}}\n",
    );
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
