//! Stopping programs: nothing of a program survives its stop (not even processes that left
//! its group), the SIGKILL escalation after `stop_timeout`, `stop_signal`, and a daemon
//! shutdown that stops every program in parallel.

use brummer_tests::{Daemon, pid_alive, wait_for};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until `name` has logged a line containing `needle` (`brummerctl logs NAME`).
fn wait_logged(d: &Daemon, name: &str, needle: &str) {
    wait_for(&format!("{name} to log {needle:?}"), T, || {
        d.ctl_ok(&["logs", name]).contains(needle).then_some(())
    });
}

#[test]
fn stop_leaves_no_descendant_even_one_that_left_the_group() {
    let d = Daemon::start(
        r#"
[process.tree]
command = ["sh", "-c", "sleep 1000 & setsid sleep 1000 & wait"]
"#,
    );
    let s = d.wait_state("tree", "running", T);
    let main = s["pid"].as_u64().expect("pid") as i32;
    // The shell and its two sleeps (one in its own session).
    let procs = wait_for("sh and two sleeps", T, || {
        let p = d.tagged_processes();
        let sleeps = p.iter().filter(|&&p| comm(p) == "sleep").count();
        (sleeps == 2 && p.contains(&main)).then_some(p)
    });
    assert_eq!(procs.len(), 3, "{procs:?}");
    let sessions: std::collections::HashSet<String> = procs
        .iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // Field 6 (session), counted after the ")" that ends comm.
            stat.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().nth(3).unwrap_or("").to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sessions.len(), 2, "one sleep must be in its own session");

    let out = d.ctl_ok(&["stop", "tree"]);
    // Checked at once: stop returns only when the whole tree is gone.
    let alive: Vec<i32> = procs
        .iter()
        .copied()
        .filter(|&p| pid_alive(p as u32))
        .collect();
    assert!(
        alive.is_empty(),
        "still alive right after `stop` returned ({out}): {alive:?}\n{}",
        d.daemon_log()
    );
    assert!(
        d.tagged_processes().is_empty(),
        "{:?}",
        d.tagged_processes()
    );
    let s = d.state_of("tree");
    assert_eq!(s["state"], "stopped", "{s:#}");
    assert!(s["pid"].is_null(), "{s:#}");
}

#[test]
fn a_program_ignoring_the_stop_signal_is_killed_after_stop_timeout() {
    let d = Daemon::start(
        r#"
[process.stubborn]
command = ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]
stop_timeout = "300ms"
"#,
    );
    d.wait_state("stubborn", "running", T);
    wait_logged(&d, "stubborn", "ready");
    let procs = d.tagged_processes();
    assert!(!procs.is_empty());

    let t0 = Instant::now();
    d.ctl_ok(&["stop", "stubborn"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(290),
        "stop took only {took:?}: SIGTERM should have been ignored until stop_timeout"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    let alive: Vec<i32> = procs
        .iter()
        .copied()
        .filter(|&p| pid_alive(p as u32))
        .collect();
    assert!(alive.is_empty(), "survivors: {alive:?}\n{}", d.daemon_log());
    assert!(
        d.tagged_processes().is_empty(),
        "{:?}",
        d.tagged_processes()
    );
    let s = d.state_of("stubborn");
    assert_eq!(s["state"], "stopped", "{s:#}");
    assert_eq!(s["exit_signal"], 9, "killed by SIGKILL: {s:#}");
}

#[test]
fn stop_signal_is_honoured() {
    let d = Daemon::start(
        r#"
[process.polite]
command = ["sh", "-c", "trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 0.1; done"]
stop_signal = "SIGINT"
stop_timeout = "5s"
"#,
    );
    d.wait_state("polite", "running", T);
    wait_logged(&d, "polite", "ready");
    let t0 = Instant::now();
    d.ctl_ok(&["stop", "polite"]);
    let took = t0.elapsed();
    let s = d.state_of("polite");
    assert_eq!(s["state"], "stopped", "{s:#}");
    assert_eq!(
        s["exit_code"], 0,
        "the INT trap exits 0 (SIGTERM or SIGKILL would give a signal): {s:#}"
    );
    assert!(s["exit_signal"].is_null(), "{s:#}");
    assert!(
        took < Duration::from_secs(4),
        "no escalation expected: {took:?}"
    );
    wait_logged(&d, "polite", "got-int");
}

#[test]
fn daemon_sigterm_stops_every_program_in_parallel_and_exits_0() {
    let mut cfg = String::new();
    for i in 0..5 {
        cfg.push_str(&format!(
            "[process.s{i}]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; echo ready; while true; do sleep 1; done\"]\nstop_timeout = \"2s\"\n\n"
        ));
    }
    let mut d = Daemon::start(&cfg);
    for i in 0..5 {
        let name = format!("s{i}");
        d.wait_state(&name, "running", T);
        wait_logged(&d, &name, "ready");
    }
    let procs = d.tagged_processes();
    assert!(procs.len() >= 5, "{procs:?}");

    let t0 = Instant::now();
    let st = d.terminate().expect("brummerd exits on SIGTERM");
    let took = t0.elapsed();
    let log = d.daemon_log();
    assert!(st.success(), "brummerd exited with {st}\n{log}");
    assert!(
        took >= Duration::from_millis(1900),
        "shutdown took {took:?}: the programs ignore SIGTERM, so it must wait stop_timeout\n{log}"
    );
    assert!(
        took < Duration::from_secs(6),
        "shutdown took {took:?}: five 2 s stop timeouts must run in parallel, not in series\n{log}"
    );
    let survivors = brummer_tests::tagged(&d.tag, 0);
    assert!(survivors.is_empty(), "survivors: {survivors:?}\n{log}");
    assert!(!d.socket.exists(), "socket not removed");
}

/// Output a program writes while the daemon shuts down (here: a burst from its SIGTERM
/// handler, after the stop began) still reaches the disk log: brummerd waits for the
/// capture tasks to drain the pipes before it exits. (The burst comes from the program
/// itself: a child it forked now would be a late descendant, which the stop kills.)
#[test]
fn output_written_while_the_daemon_stops_reaches_the_disk_log() {
    const N: u64 = 300_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("last.py");
    std::fs::write(
        &script,
        format!(
            r#"
import signal, sys, time
def bye(*_):
    sys.stdout.write("".join(f"{{i}}\n" for i in range(1, {N} + 1)))
    sys.stdout.flush()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
while True:
    time.sleep(1000)
"#
        ),
    )
    .expect("script");
    let mut d = Daemon::start(&format!(
        "[process.last]\ncommand = [\"python3\", \"{}\"]\n",
        script.display()
    ));
    d.wait_state("last", "running", T);
    wait_logged(&d, "last", "ready");
    let st = d.terminate().expect("brummerd exits on SIGTERM");
    let log = d.daemon_log();
    assert!(st.success(), "brummerd exited with {st}\n{log}");
    let text = std::fs::read_to_string(d.log_dir.join("last.log")).expect("disk log");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ready"));
    let mut want = 1;
    for l in lines {
        assert_eq!(l, want.to_string(), "line {want} of the burst");
        want += 1;
    }
    assert_eq!(want - 1, N, "lines of the burst on disk\n{log}");
}

/// Issue 7: stopping many programs at once shares each /proc scan between the stops. The
/// guarantees must hold for every one of them. Each program forks a child from its TERM
/// trap, i.e. after its stop's signals went out, so only a scan made after them finds it:
/// the "quitters" fork into the program's process group and exit at once (a stop that trusted
/// a table read before the fork would return with the child alive, one that did not signal
/// what a later scan found would wait the 30 s `stop_timeout`); the "stubborn" ones fork a
/// child into a new session and ignore TERM, so they need the SIGKILL after 1 s. Both ways
/// of stopping everything: `stop --all`, then the daemon's own shutdown.
#[test]
fn many_programs_stopped_at_once_leave_no_descendant_not_even_late_forks_issue_7() {
    const N: usize = 40;
    let mut cfg = String::new();
    for i in 0..N {
        let (trap, timeout) = if i % 2 == 0 {
            ("setsid sleep 1000 & echo late=$!", "1s")
        } else {
            ("sleep 1000 & echo late=$!; exit 0", "30s")
        };
        cfg.push_str(&format!(
            "[process.f{i:02}]\ncommand = [\"sh\", \"-c\", \"trap '{trap}' TERM; setsid sleep 1000 & echo ready; while true; do sleep 0.1; done\"]\nstop_timeout = \"{timeout}\"\nautostart = false\n\n"
        ));
    }
    let mut d = Daemon::start(&cfg);
    let names: Vec<String> = (0..N).map(|i| format!("f{i:02}")).collect();
    let late_pids = |d: &Daemon| -> Vec<u32> {
        names
            .iter()
            .map(|n| {
                wait_for(&format!("{n} to log its late child"), T, || {
                    d.ctl_ok(&["logs", "-n", "1000", n])
                        .lines()
                        .filter_map(|l| l.strip_prefix("late=")?.parse::<u32>().ok())
                        .next_back()
                })
            })
            .collect()
    };

    for (runs, round) in [(1, "stop --all"), (2, "daemon shutdown")] {
        d.ctl_ok(&["start", "--all"]);
        for n in &names {
            wait_for(&format!("{n} run {runs} to be ready"), T, || {
                let log = d.ctl_ok(&["logs", "-n", "1000", n]);
                (log.lines().filter(|&l| l == "ready").count() >= runs).then_some(())
            });
        }
        let before = d.tagged_processes();
        // Each program: sh, its setsid sleep and (mostly) a `sleep 0.1`.
        assert!(before.len() >= 2 * N, "{round}: {before:?}");

        let t0 = Instant::now();
        if round == "stop --all" {
            let out = d.ctl_ok(&["stop", "--all"]);
            assert_eq!(
                out.lines().filter(|l| l.ends_with(": stopped")).count(),
                N,
                "{out}"
            );
        } else {
            let st = d.terminate().expect("brummerd exits on SIGTERM");
            assert!(
                st.success(),
                "brummerd exited with {st}\n{}",
                d.daemon_log()
            );
        }
        let took = t0.elapsed();
        // Checked at once: a stop returns only when nothing of its program is left.
        let survivors = if round == "stop --all" {
            d.tagged_processes()
        } else {
            brummer_tests::tagged(&d.tag, 0)
        };
        assert!(
            survivors.is_empty(),
            "{round}: survivors {survivors:?}\n{}",
            d.daemon_log()
        );
        assert!(
            took >= Duration::from_millis(950),
            "{round} took {took:?}: the stubborn programs ignore SIGTERM until stop_timeout"
        );
        assert!(
            took < Duration::from_secs(8),
            "{round} took {took:?}: the quitters' late children must be found and get \
             SIGTERM, and the stubborn ones' 1 s stop_timeouts must run in parallel"
        );
        if round == "stop --all" {
            // The late children existed (so the test is not vacuous) and are gone.
            let late = late_pids(&d);
            assert_eq!(late.len(), N);
            let alive: Vec<u32> = late.into_iter().filter(|&p| pid_alive(p)).collect();
            assert!(alive.is_empty(), "late children alive: {alive:?}");
        }
    }
}
