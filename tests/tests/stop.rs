//! Stopping programs: nothing of a program survives its stop (not even processes that left
//! its group), the SIGKILL escalation after `stop_timeout`, `stop_signal`, and a daemon
//! shutdown that stops every program in parallel.

use brummer_tests::{
    Config, Daemon, Proc, T, brtest, comm, pid_alive, tagged, transitions, wait_for,
};

brtest!(
    stop_leaves_no_descendant_even_one_that_left_the_group,
    Config::new().process("tree", Proc::sh("sleep 1000 & setsid sleep 1000 & wait")),
    |d| {
        let s = d.wait_state("tree", "running");
        let main = s["pid"].as_u64().expect("pid") as u32;
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
        d.assert_no_program_process(&procs, &format!("`stop` returned ({out})"));
        let s = d.state_of("tree");
        assert_eq!(s["state"], "stopped", "{s:#}");
        assert!(s["pid"].is_null(), "{s:#}");
    }
);

brtest!(
    a_program_ignoring_the_stop_signal_is_killed_after_stop_timeout,
    Config::new().process(
        "stubborn",
        Proc::sh("trap '' TERM; echo ready; while true; do sleep 1; done").stop_timeout("300ms"),
    ),
    |d| {
        d.wait_state("stubborn", "running");
        d.wait_logged("stubborn", "ready");
        let procs = d.tagged_processes();
        assert!(!procs.is_empty());

        let mut events = d.events();
        d.ctl_ok(&["stop", "stubborn"]);
        d.assert_no_program_process(&procs, "`stop` returned");
        let s = d.state_of("stubborn");
        assert_eq!(s["state"], "stopped", "{s:#}");
        assert_eq!(s["exit_signal"], 9, "killed by SIGKILL: {s:#}");
        // brummerd's own timestamps: the SIGKILL came no sooner than stop_timeout after the
        // stop began (a lower bound, which no slow machine can break).
        let evs = events.states_until("stubborn", "stopped", T);
        assert_eq!(
            transitions(&evs, "stubborn"),
            ["running->stopping", "stopping->stopped"]
        );
        let waited_us = evs[1]["time_us"].as_u64().unwrap() - evs[0]["time_us"].as_u64().unwrap();
        assert!(
            waited_us >= 300_000,
            "SIGKILL {waited_us} us after the stop began, before stop_timeout (300 ms)"
        );
    }
);

brtest!(
    stop_signal_is_honoured,
    // Five seconds to exit: an escalation to SIGKILL would show as exit signal 9.
    Config::new().process(
        "polite",
        Proc::sh("trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 0.1; done")
            .stop_signal("SIGINT")
            .stop_timeout("5s"),
    ),
    |d| {
        d.wait_state("polite", "running");
        d.wait_logged("polite", "ready");
        d.ctl_ok(&["stop", "polite"]);
        let s = d.state_of("polite");
        assert_eq!(s["state"], "stopped", "{s:#}");
        assert_eq!(
            s["exit_code"], 0,
            "the INT trap exits 0 (SIGTERM or SIGKILL would give a signal): {s:#}"
        );
        assert!(s["exit_signal"].is_null(), "{s:#}");
        d.wait_logged("polite", "got-int");
    }
);

/// Each program, on SIGTERM, marks that it got it and then exits only once all five have
/// got theirs. Stopped one after another, the first would wait for the others for ever (its
/// `stop_timeout` is an hour) and brummerd would miss the harness's shutdown deadline;
/// stopped in parallel, all five exit at once, cleanly.
#[test]
fn daemon_sigterm_stops_every_program_in_parallel_and_exits_0() {
    const N: usize = 5;
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = |i: usize| flags.path().join(format!("s{i}")).display().to_string();
    // Builtins only: brummerd signals what a stopping program forks, too.
    let all_flagged: Vec<String> = (0..N).map(|i| format!("[ -e {} ]", flag(i))).collect();
    let config = Config::new().processes((0..N).map(|i| {
        let script = format!(
            "trap ': > {}; until {}; do :; done; echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
            flag(i),
            all_flagged.join(" && ")
        );
        (format!("s{i}"), Proc::sh(&script).stop_timeout("1h"))
    }));
    let mut d = Daemon::start(&config);
    for i in 0..N {
        d.wait_logged(&format!("s{i}"), "ready");
    }
    let procs = d.tagged_processes();
    assert!(procs.len() >= N, "{procs:?}");

    let st = d.terminate().unwrap_or_else(|e| {
        panic!(
            "{e}: the programs were not stopped in parallel\n{}",
            d.daemon_log()
        )
    });
    let log = d.daemon_log();
    assert!(st.success(), "brummerd exited with {st}\n{log}");
    let survivors = tagged(&d.tag, 0);
    assert!(survivors.is_empty(), "survivors: {survivors:?}\n{log}");
    assert!(!d.socket.exists(), "socket not removed");
    for i in 0..N {
        let text = std::fs::read_to_string(d.log_dir.join(format!("s{i}.log"))).unwrap_or_default();
        assert!(
            text.lines().any(|l| l == "bye"),
            "s{i} did not exit from its TERM trap: {text:?}\n{log}"
        );
    }
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
    let mut d = Daemon::start(&Config::new().process(
        "last",
        Proc::new(["python3".to_owned(), script.display().to_string()]),
    ));
    d.wait_state("last", "running");
    d.wait_logged("last", "ready");
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
/// a table read before the fork would return with the child alive; one that did not signal
/// what a later scan found would wait out the hour of `stop_timeout` and miss the deadline
/// of brummerctl or of the shutdown); the "stubborn" ones fork a child into a new session
/// and ignore TERM, so they need the SIGKILL after their 2 s. Both ways of stopping
/// everything: `stop --all`, then the daemon's own shutdown.
#[test]
fn many_programs_stopped_at_once_leave_no_descendant_not_even_late_forks_issue_7() {
    const N: usize = 40;
    let stubborn = |i: usize| i.is_multiple_of(2);
    let config = Config::new().processes((0..N).map(|i| {
        let (trap, timeout) = if stubborn(i) {
            ("setsid sleep 1000 & echo late=$!", "2s")
        } else {
            ("sleep 1000 & echo late=$!; exit 0", "1h")
        };
        let script = format!(
            "trap '{trap}' TERM; setsid sleep 1000 & echo ready; while true; do sleep 0.1; done"
        );
        (
            format!("f{i:02}"),
            Proc::sh(&script).stop_timeout(timeout).autostart(false),
        )
    }));
    let mut d = Daemon::start(&config);
    let names: Vec<String> = (0..N).map(|i| format!("f{i:02}")).collect();
    let late_pids = |d: &Daemon| -> Vec<u32> {
        names
            .iter()
            .map(|n| {
                wait_for(&format!("{n} to log its late child"), T, || {
                    d.log_lines(n)
                        .iter()
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
                let ready = d.log_lines(n).iter().filter(|&l| l == "ready").count();
                (ready >= runs).then_some(())
            });
        }
        let before = d.tagged_processes();
        // Each program: sh, its setsid sleep and (mostly) a `sleep 0.1`.
        assert!(before.len() >= 2 * N, "{round}: {before:?}");

        if round == "stop --all" {
            let mut events = d.events();
            let out = d.ctl_ok(&["stop", "--all"]);
            assert_eq!(
                out.lines().filter(|l| l.ends_with(": stopped")).count(),
                N,
                "{out}"
            );
            // In parallel: every stop began before the first stubborn one ended.
            let mut stopped = 0;
            let evs = events.until(T, |e| {
                stopped += usize::from(e["type"] == "state-changed" && e["new"] == "stopped");
                stopped == N
            });
            let seq_of = |e: &serde_json::Value| e["seq"].as_u64().unwrap();
            let last_stopping = evs
                .iter()
                .filter(|e| e["new"] == "stopping")
                .map(seq_of)
                .max();
            let first_stubborn_stopped = evs
                .iter()
                .filter(|e| e["new"] == "stopped")
                .filter(|e| {
                    names
                        .iter()
                        .position(|n| e["process"] == **n)
                        .is_some_and(stubborn)
                })
                .map(seq_of)
                .min();
            assert!(
                last_stopping < first_stubborn_stopped,
                "a stubborn program's stop ended before every stop had begun: {evs:#?}"
            );
        } else {
            let st = d
                .terminate()
                .unwrap_or_else(|e| panic!("{e}\n{}", d.daemon_log()));
            assert!(
                st.success(),
                "brummerd exited with {st}\n{}",
                d.daemon_log()
            );
        }
        // Checked at once: a stop returns only when nothing of its program is left.
        let survivors = if round == "stop --all" {
            d.tagged_processes()
        } else {
            tagged(&d.tag, 0)
        };
        assert!(
            survivors.is_empty(),
            "{round}: survivors {survivors:?}\n{}",
            d.daemon_log()
        );
        if round == "stop --all" {
            // The stubborn ones took SIGKILL after their timeout, the quitters exited 0
            // from their trap.
            let st = d.status();
            for (i, n) in names.iter().enumerate() {
                let (key, want) = if stubborn(i) {
                    ("exit_signal", 9)
                } else {
                    ("exit_code", 0)
                };
                assert_eq!(st[n][key], want, "{n}: {:#}", st[n]);
            }
            // The late children existed (so the test is not vacuous) and are gone.
            let late = late_pids(&d);
            assert_eq!(late.len(), N);
            let alive: Vec<u32> = late.into_iter().filter(|&p| pid_alive(p)).collect();
            assert!(alive.is_empty(), "late children alive: {alive:?}");
        }
    }
}

brtest!(
    a_stop_that_returned_has_the_programs_last_words_in_its_logs,
    // On SIGTERM the program prints 500,000 numbered lines at once and exits, leaving its
    // pipe full: stop returns once they are all read, so status counts them and `logs`
    // ends with the last.
    Config::new().process(
        "talker",
        Proc::sh(
            "big=$(seq 1 500000); trap 'printf \"%s\\n\" \"$big\"; exit 0' TERM; \
             echo ready; sleep 1000 & wait",
        ),
    ),
    |d| {
        d.wait_state("talker", "running");
        d.wait_logged("talker", "ready");
        d.ctl_ok(&["stop", "talker"]);
        let s = d.state_of("talker");
        assert_eq!(s["state"], "stopped", "{s:#}");
        let lines = d.log_lines("talker");
        assert_eq!(
            lines.last().map(String::as_str),
            Some("500000"),
            "the last line is in the logs when stop returns: {:?}",
            &lines[lines.len().saturating_sub(3)..]
        );
        let counted = s["logs"]["lines"].as_u64().expect("lines");
        assert!(counted > 500_000, "status counts every line: {s:#}");
    }
);
