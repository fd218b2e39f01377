//! `daemon-reexec`: brummerd replaces its image in the same process and every program goes
//! on: the same pids, no output line lost or doubled (on disk and for a `logs -f` that
//! reconnects), event numbers that go on, exact exit codes for programs that end before,
//! during and after the re-exec, and a clear fallback for a handover it cannot read.

use brummer_tests::{Config, Daemon, LineChild, Proc, T, brummerd_in, ndjson, wait_for};
use serde_json::Value;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;

/// Writes `i` for i = 0, 1, ... in bursts of 100 lines (one write each), a burst per
/// millisecond (about 100,000 lines a second: the follower, a debug build here, must keep
/// up), until the file named by argv[1] exists, then `END` and exits 0.
const COUNTER: &str = r#"
import os, sys, time
stop = sys.argv[1]
o = sys.stdout
i = 0
while True:
    for _ in range(100):
        o.write("%d\n" % i)
        i += 1
    o.flush()
    time.sleep(0.001)
    if i % 10000 == 0 and os.path.exists(stop):
        break
o.write("END\n")
o.flush()
"#;

fn reexec(d: &Daemon) -> Value {
    let out = d.ctl_ok(&["--json", "daemon-reexec"]);
    serde_json::from_str(&out).expect("daemon-reexec --json is JSON")
}

/// Checks that `lines` are `from`, `from + 1`, ... up to some last number, then `END`;
/// returns how many numbers there were.
fn check_counting(what: &str, lines: &[String], from: u64) -> u64 {
    let (end, numbers) = lines.split_last().expect("some lines");
    assert_eq!(end, "END", "{what}: the last line");
    for (k, l) in numbers.iter().enumerate() {
        let n: u64 = l
            .parse()
            .unwrap_or_else(|_| panic!("{what}: line {k} is {l:?}"));
        assert_eq!(
            n,
            from + k as u64,
            "{what}: line {k} (a gap or a duplicate)"
        );
    }
    numbers.len() as u64
}

#[test]
fn reexec_under_load_keeps_every_pid_and_every_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stop = tmp.path().join("stop-counter");
    let d = Daemon::start(
        &Config::new()
            .ring_bytes(8 << 20)
            .process(
                "counter",
                Proc::new(["python3", "-c", COUNTER])
                    .arg(stop.display().to_string())
                    .restart("never")
                    .logs("max_bytes", 1i64 << 30),
            )
            .process("idle", Proc::sleep()),
    );
    let counter_pid = d.wait_state("counter", "running")["pid"].clone();
    let idle_pid = d.wait_state("idle", "running")["pid"].clone();
    let mut follow = LineChild::spawn(
        d.ctl_cmd(&["logs", "-f", "-n", "0", "counter"])
            .stderr(Stdio::piped()),
    );
    let events = LineChild::spawn(&mut d.ctl_cmd(&["--json", "events"]));

    let lines_now = || d.state_of("counter")["logs"]["lines"].as_u64().unwrap_or(0);
    for round in 1..=3u64 {
        // Each re-exec lands while the counter is writing.
        let at = lines_now();
        wait_for("the counter to write more", T, || {
            (lines_now() > at + 20_000).then_some(())
        });
        let r = reexec(&d);
        assert_eq!(r["pid"], d.pid(), "round {round}: the daemon keeps its pid");
        assert_eq!(d.state_of("counter")["pid"], counter_pid, "round {round}");
        assert_eq!(d.state_of("idle")["pid"], idle_pid, "round {round}");
        assert_eq!(d.state_of("counter")["state"], "running", "round {round}");
        assert_eq!(d.state_of("counter")["restarts"], 0, "round {round}");
    }
    std::fs::write(&stop, "").expect("stop file");
    let s = d.wait_state("counter", "exited");
    assert_eq!(s["exit_code"], 0, "{s:#}");

    // On disk (one segment: max_bytes is large): every number once, in order, from 0.
    let path = d.log_dir.join("counter.log");
    wait_for("the disk log to end with END", T, || {
        let text = std::fs::read_to_string(&path).ok()?;
        text.ends_with("END\n").then_some(text)
    });
    let disk: Vec<String> = std::fs::read_to_string(&path)
        .expect("disk log")
        .lines()
        .map(str::to_owned)
        .collect();
    let total = check_counting("disk log", &disk, 0);
    assert!(total >= 60_000, "only {total} lines");
    // Sequence numbers went on across the re-execs: the last line is number `total`.
    let last = d.ctl_ok(&["--json", "logs", "-n", "1", "counter"]);
    assert_eq!(ndjson(&last)[0]["seq"], total, "{last}");

    // The follower reconnected after each re-exec and resumed where it stopped.
    let followed = follow.until(|l| l == "END");
    let first: u64 = followed[0].parse().expect("a number");
    check_counting("logs -f", &followed, first);
    let _ = follow.child.kill();
    let mut err = String::new();
    if let Some(mut e) = follow.child.stderr.take() {
        use std::io::Read;
        let _ = follow.child.wait();
        let _ = e.read_to_string(&mut err);
    }
    assert!(!err.contains("missed"), "the follower missed lines: {err}");

    // Events: the exit after three re-execs, numbered on from the first image's events.
    let seen = events.until(|l| l.contains("\"exited\""));
    let seqs: Vec<u64> = ndjson(&seen.join("\n"))
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "event numbers go on without a gap: {seqs:?}"
    );
}

/// Waits until `path` exists: each program below blocks on a FIFO and exits with its own
/// code when the test writes to it.
const EXIT_ON_FIFO: &str = r#"read x < "$1"; exit "$2""#;

#[test]
fn exits_before_during_and_after_a_reexec_keep_their_exact_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = |n: &str| {
        let p = dir.path().join(n);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        p
    };
    let (before, during, after) = (fifo("before"), fifo("during"), fifo("after"));
    let prog = |p: &Path, code: &str| {
        Proc::new(["sh", "-c", EXIT_ON_FIFO, "sh"])
            .arg(p.display().to_string())
            .arg(code)
            .restart("never")
    };
    let d = Daemon::start(
        &Config::new()
            .process("before", prog(&before, "3"))
            .process("during", prog(&during, "4"))
            .process("after", prog(&after, "5"))
            .process("killed", Proc::sleep().restart("never")),
    );
    for n in ["before", "during", "after", "killed"] {
        d.wait_state(n, "running");
    }
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .expect("open fifo")
    };
    // Before: exits and is reaped by the first image.
    std::fs::write(&before, "go\n").expect("fifo");
    assert_eq!(d.wait_state("before", "exited")["exit_code"], 3);
    // During: its FIFO is opened now and written while the re-exec runs, so it exits while
    // one image hands over or the next takes over; a zombie waits for the new image.
    let mut w = open(&during);
    let killed = d.pid_of("killed");
    let reexec_call = std::thread::spawn({
        let mut cmd = d.ctl_cmd(&["daemon-reexec"]);
        move || cmd.output().expect("brummerctl")
    });
    use std::io::Write;
    w.write_all(b"go\n").expect("fifo");
    drop(w);
    // A signal death during the re-exec too.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let out = reexec_call.join().expect("thread");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.wait_state("during", "exited")["exit_code"], 4);
    assert_eq!(d.wait_state("killed", "exited")["exit_signal"], 9);
    // After: reaped by the new image.
    std::fs::write(&after, "go\n").expect("fifo");
    assert_eq!(d.wait_state("after", "exited")["exit_code"], 5);
    assert_eq!(
        d.state_of("before")["exit_code"],
        3,
        "kept across the re-exec"
    );
    let log = d.daemon_log();
    assert!(log.contains("took over from the previous image"), "{log}");
}

/// A handover this binary cannot read: brummerd says so, starts afresh, and serves.
#[test]
fn an_unreadable_handover_is_refused_by_name_and_brummerd_starts_afresh() {
    for (what, text, says) in [
        (
            "future",
            r#"{"format": 99, "from_version": "9.9.9", "programs": []}"#,
            "the handover state has format 99, this brummerd reads format 1 only (written by brummerd 9.9.9)",
        ),
        (
            "torn",
            r#"{"format": 1, "programs": [{"name": "we"#,
            "the handover state is torn",
        ),
    ] {
        let root = tempfile::tempdir().expect("tempdir");
        let state = root.path().join("handover.json");
        std::fs::write(&state, text).expect("write");
        let file = std::fs::File::open(&state).expect("open");
        let fd = file.as_raw_fd();
        let config = root.path().join("brummer.toml");
        std::fs::write(
            &config,
            Config::new().process("web", Proc::sleep()).render(),
        )
        .expect("config");
        let socket = root.path().join("s.sock");
        let mut cmd = brummerd_in(root.path());
        cmd.arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--dbus=off")
            .env("BRUMMER_HANDOVER", fd.to_string())
            .stdout(Stdio::null());
        // The descriptor must survive into brummerd, as a real handover's does.
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .expect("clear close-on-exec");
        let mut daemon = LineChild::spawn_stderr(&mut cmd);
        let line = daemon.until(|l| l.contains("cannot take over"));
        let said = line.last().cloned().unwrap_or_default();
        assert!(said.contains(says), "{what}: {said}");
        assert!(said.contains("starting afresh"), "{what}: {said}");
        // And it serves: web is started as configured.
        wait_for("brummerd to serve", T, || {
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("term");
        let st = daemon.child.wait().expect("wait");
        assert!(st.success(), "{what}: {st}");
        drop(file);
    }
}

/// SIGTERM sent while brummerd hands over: the request is not lost between the images; the
/// new image stops every program and exits cleanly.
#[test]
fn a_stop_asked_for_during_a_reexec_is_carried_out_by_the_new_image() {
    let mut d = Daemon::start(
        &Config::new()
            .process("a", Proc::sleep())
            .process("b", Proc::sleep()),
    );
    let pids = ["a", "b"].map(|n| d.wait_state(n, "running")["pid"].as_u64().unwrap_or(0) as u32);
    let reexec_call = std::thread::spawn({
        let mut cmd = d.ctl_cmd(&["daemon-reexec"]);
        move || cmd.output().expect("brummerctl")
    });
    wait_for("the hand-over to begin", T, || {
        d.daemon_log()
            .contains("re-executing: handing every program over")
            .then_some(())
    });
    let st = d.terminate().expect("brummerd stops");
    assert!(st.success(), "{st}\n{}", d.daemon_log());
    let _ = reexec_call.join();
    let log = d.daemon_log();
    assert!(log.contains("took over from the previous image"), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    d.assert_no_program_process(&pids, "brummerd stopped after the re-exec");
}

/// The configuration is checked before anything is handed over: one that does not load
/// refuses the re-exec and changes nothing. Put back byte for byte (the files the running
/// daemon loaded, which the check does not parse again), or changed and valid, it goes on;
/// the new image reads the files on disk.
#[test]
fn a_reexec_is_refused_while_the_configuration_does_not_load_and_goes_on_once_it_does() {
    let config = Config::new().process("a", Proc::sleep());
    let d = Daemon::start(&config);
    let a = d.wait_state("a", "running")["pid"].clone();
    let original = std::fs::read(&d.config).expect("config");

    d.write_config_text("[process.b]\ncommand = 3\n");
    let out = d.ctl(&["daemon-reexec"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken configuration: {err}");
    assert!(err.contains("does not load"), "{err}");
    assert!(
        !d.daemon_log().contains("re-executing"),
        "nothing is handed over: {}",
        d.daemon_log()
    );
    assert_eq!(d.state_of("a")["pid"], a);

    // The very bytes the daemon loaded: the re-exec goes on.
    std::fs::write(&d.config, &original).expect("config");
    let r = reexec(&d);
    assert_eq!(r["pid"], d.pid());
    assert_eq!(d.state_of("a")["pid"], a);

    // Changed and valid: checked, and the new image has the new program.
    d.write_config(&config.process("b", Proc::sleep()));
    reexec(&d);
    assert_eq!(d.state_of("a")["pid"], a);
    d.wait_state("b", "running");
    assert_eq!(
        d.daemon_log()
            .matches("took over from the previous image")
            .count(),
        2
    );
}

/// After a re-exec a program's disk log is opened when it next writes, not before: a
/// program that stays quiet costs no open (and no descriptor), and the one that writes has
/// its lines on disk after the earlier ones, numbered on.
#[test]
fn a_disk_log_is_opened_after_a_reexec_only_when_its_program_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let d = Daemon::start(
        &Config::new().process(
            "quiet",
            Proc::new([
                "sh",
                "-c",
                r#"echo one; read x < "$1"; echo two; exec sleep 100000"#,
                "sh",
            ])
            .arg(go.display().to_string()),
        ),
    );
    d.wait_logged("quiet", "one");
    let path = d.log_dir.join("quiet.log");
    wait_for("`one` on disk", T, || {
        (std::fs::read_to_string(&path).ok()? == "one\n").then_some(())
    });
    // Descriptors of brummerd that name one of quiet's log files.
    let open_logs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .expect("/proc/PID/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.starts_with(&d.log_dir) && t.to_string_lossy().contains("quiet"))
            .collect()
    };
    assert!(
        !open_logs().is_empty(),
        "the first image writes quiet's log"
    );

    reexec(&d);
    assert_eq!(d.state_of("quiet")["state"], "running");
    assert_eq!(
        open_logs(),
        Vec::<std::path::PathBuf>::new(),
        "nothing written yet"
    );

    std::fs::write(&go, "\n").expect("fifo");
    d.wait_logged("quiet", "two");
    wait_for("`two` on disk after `one`", T, || {
        (std::fs::read_to_string(&path).ok()? == "one\ntwo\n").then_some(())
    });
    assert!(!open_logs().is_empty(), "opened for the write");
    let seqs: Vec<u64> = ndjson(&d.ctl_ok(&["--json", "logs", "-n", "2", "quiet"]))
        .iter()
        .map(|l| l["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[1], seqs[0] + 1, "numbered on: {seqs:?}");
}
