//! Start, stop, restart and status round trips through the real CLI.

use brummer_tests::Daemon;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[test]
fn start_status_restart_stop_round_trip() {
    let d = Daemon::start(
        r#"
[process.web]
command = ["sleep", "1000"]
autostart = false
"#,
    );
    assert_eq!(d.state_of("web")["state"], "stopped");
    let out = d.ctl_ok(&["start", "web"]);
    assert!(out.contains("web: started (pid"), "{out}");
    let s = d.state_of("web");
    assert_eq!(s["state"], "running");
    let pid1 = s["pid"].as_u64().expect("pid");
    assert!(std::path::Path::new(&format!("/proc/{pid1}")).exists());

    let table = d.ctl_ok(&["status"]);
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(table.contains(&pid1.to_string()), "{table}");

    d.ctl_ok(&["restart", "web"]);
    let pid2 = d.state_of("web")["pid"]
        .as_u64()
        .expect("pid after restart");
    assert_ne!(pid1, pid2);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid1}")).exists(),
        "old pid still alive"
    );

    d.ctl_ok(&["stop", "web"]);
    let s = d.wait_state("web", "stopped", T);
    assert!(s["pid"].is_null());
    assert!(!std::path::Path::new(&format!("/proc/{pid2}")).exists());
}
