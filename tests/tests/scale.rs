//! One hundred programs: a single `start --all` starts them all, status reports each with
//! its own live pid, and a single `stop --all` leaves nothing behind.

use brummer_tests::{Daemon, pid_alive};
use std::collections::HashSet;

const N: usize = 100;

#[test]
fn hundred_programs_start_and_stop_with_one_command_each() {
    let mut cfg = String::new();
    for i in 0..N {
        cfg.push_str(&format!(
            "[process.p{i:03}]\ncommand = [\"sleep\", \"1000\"]\nautostart = false\n\n"
        ));
    }
    let d = Daemon::start(&cfg);
    let before = d.status();
    assert_eq!(before.len(), N);
    assert!(before.values().all(|p| p["state"] == "stopped"));
    assert!(d.tagged_processes().is_empty());

    let out = d.ctl_ok(&["start", "--all"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(": started (pid "))
            .count(),
        N,
        "{out}"
    );

    let st = d.status();
    assert_eq!(st.len(), N);
    let mut pids = HashSet::new();
    for i in 0..N {
        let name = format!("p{i:03}");
        let p = &st[&name];
        assert_eq!(p["state"], "running", "{p:#}");
        let pid = p["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {p:#}")) as u32;
        assert!(pid_alive(pid), "{name}: pid {pid} not alive");
        assert!(
            pids.insert(pid),
            "{name}: pid {pid} shared with another program"
        );
    }
    let mut tagged = d.tagged_processes();
    tagged.sort();
    let mut want: Vec<i32> = pids.iter().map(|&p| p as i32).collect();
    want.sort();
    assert_eq!(
        tagged, want,
        "live tagged processes are exactly the 100 pids"
    );

    let out = d.ctl_ok(&["stop", "--all"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": stopped")).count(),
        N,
        "{out}"
    );
    let alive: Vec<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    assert!(alive.is_empty(), "alive after stop --all: {alive:?}");
    assert!(
        d.tagged_processes().is_empty(),
        "{:?}",
        d.tagged_processes()
    );
    let st = d.status();
    assert!(
        st.values()
            .all(|p| p["state"] == "stopped" && p["pid"].is_null()),
        "{st:#?}"
    );
}
