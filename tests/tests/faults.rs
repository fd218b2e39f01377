//! Injected faults (issue 17): each test shows that brummerd keeps working, loses nothing it
//! could have kept, and says what happened (a log line, a status field, an error reply).
//! What each one shows, and the on-demand variants too long for CI, are in
//! docs/reliability.md ("Faults").

use brummer_tests::{Config, Daemon, Proc, Rpc, T, pid_alive, require_root, wait_for};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A program that closes its stdout and stderr but keeps running stays `running`, can be
/// stopped, and everything it wrote before closing is kept.
#[test]
fn a_program_that_closes_its_output_keeps_running_and_is_stopped() {
    let d = Daemon::start(&Config::new().process(
        "mute",
        Proc::sh("echo before; echo err >&2; exec >&- 2>&-; exec sleep 1000"),
    ));
    let pid = d.wait_state("mute", "running")["pid"].as_u64().unwrap() as u32;
    d.wait_logged("mute", "before");
    wait_for("the log to say mute closed its output", T, || {
        d.daemon_log()
            .lines()
            .find(|l| l.contains("closed its output stream") && l.contains("process=mute"))
            .map(str::to_owned)
    });
    let s = d.state_of("mute");
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["pid"], pid, "{s:#}");
    assert!(pid_alive(pid));
    assert_eq!(s["logs"]["lines"], 2, "{s:#}");
    d.ctl_ok(&["stop", "mute"]);
    d.assert_no_program_process(&[pid], "stop of a program without output");
}

/// 100 MiB of random bytes without a newline: kept whole on disk (up to retention), cut into
/// `partial` pieces in memory, brummerd's memory bounded by its ring, not by the line.
#[test]
fn a_hundred_mib_line_of_binary_garbage_is_kept_and_memory_stays_bounded() {
    const MIB: u64 = 1 << 20;
    let d = Daemon::start(
        &Config::new().process(
            "garbage",
            Proc::sh(
                "head -c 104857600 /dev/urandom | tr '\\n' x; echo; echo done; exec sleep 1000",
            )
            .logs("max_bytes", "256MiB")
            .logs("scan", false),
        ),
    );
    let s = wait_for("garbage to write 100 MiB", Duration::from_secs(120), || {
        let s = d.state_of("garbage");
        (s["logs"]["bytes"].as_u64() >= Some(100 * MIB + 6)).then_some(s)
    });
    let last = brummer_tests::ndjson(&d.ctl_ok(&["--json", "logs", "-n", "1", "garbage"]));
    assert_eq!(last[0]["text"], "done", "{last:?}");
    assert_eq!(s["logs"]["disk_errors"], 0, "{s:#}");
    let on_disk = std::fs::metadata(d.log_dir.join("garbage.log"))
        .unwrap()
        .len();
    assert_eq!(on_disk, 100 * MIB + 6, "the disk log holds every byte");
    // 1,600 pieces of 64 KiB, then "done".
    assert_eq!(s["logs"]["lines"], 1601, "{s:#}");
    let rss = rss_kib(d.pid());
    assert!(
        rss < 64 * 1024,
        "brummerd's RSS is {rss} KiB after a 100 MiB line"
    );
    let json = d.ctl_ok(&["--json", "logs", "-n", "3", "garbage"]);
    let v = brummer_tests::ndjson(&json);
    assert_eq!(v[0]["partial"], true, "{json:.300}");
    assert_eq!(v[0]["lossy"], true, "{json:.300}");
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// A program that forks thousands of children (2,000 here; `BRUMMER_FAULT_FORKS=10000` for
/// the issue's 10,000, which takes minutes on a loaded 2-core machine): `stop` ends every
/// one of them, and says so.
#[test]
fn a_program_with_thousands_of_children_is_stopped_with_all_of_them() {
    let forks: usize = std::env::var("BRUMMER_FAULT_FORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let d = Daemon::start(&Config::new().process(
        "forker",
        Proc::sh(&format!(
            "i=0; while [ $i -lt {forks} ]; do sleep 1000 & i=$((i+1)); done; echo forked $i; wait"
        )),
    ));
    // Forking takes a while on a busy machine: the workload's time, not a wait for brummerd.
    wait_for(
        "forker to fork its children",
        Duration::from_secs(300),
        || {
            let want = format!("forked {forks}");
            d.log_lines("forker").contains(&want).then_some(())
        },
    );
    let n = d.tagged_processes().len();
    assert!(n > forks, "{n} tagged processes");
    let out = d.ctl_ok(&["stop", "forker"]);
    assert_eq!(out.trim(), "forker: stopped", "{out}");
    d.assert_no_program_process(&[], "stop of a program with thousands of children");
}

/// 1,000 idle connections from one client: every other client still gets answers.
#[test]
fn a_thousand_idle_connections_do_not_keep_others_from_answers() {
    let d = Daemon::start(&Config::new().process("web", Proc::sleep()));
    let conns: Vec<UnixStream> = (0..1000)
        .map(|i| UnixStream::connect(&d.socket).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    d.wait_state("web", "running");
    let mut rpc = d.rpc();
    let r = rpc.call("status", serde_json::json!({}));
    assert!(r["result"]["processes"].is_array(), "{r}");
    d.ctl_ok(&["stop", "web"]);
    // Nothing failed, so brummerd has nothing to say: no failed accept, no refused client.
    let log = d.daemon_log();
    assert!(
        !log.contains("cannot accept") && !log.contains("cannot set up"),
        "{log}"
    );
    drop(conns);
}

/// A request sent one byte at a time, with pauses: brummerd has no read timeout, so it
/// answers once the line is complete, and serves others meanwhile.
#[test]
fn a_request_sent_byte_by_byte_is_answered_and_others_are_served_meanwhile() {
    let d = Daemon::start(&Config::new().process("web", Proc::sleep()));
    let mut slow = Rpc::connect(&d.socket);
    let req = br#"{"jsonrpc":"2.0","id":7,"method":"status","params":{"names":["web"]}}"#;
    let pause = Duration::from_millis(200);
    for (i, b) in req.iter().enumerate() {
        slow.stream.write_all(&[*b]).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(pause);
            let mut other = d.rpc();
            let r = other.call("list", serde_json::json!({}));
            assert!(r["result"].is_object(), "{r}");
        }
    }
    slow.stream.write_all(b"\n").unwrap();
    let r = slow.read();
    assert_eq!(r["id"], 7, "{r}");
    assert_eq!(r["result"]["processes"][0]["name"], "web", "{r}");
}

/// SIGSTOP of brummerd for 10 s while a program writes at full speed and another crash
/// loops: after SIGCONT nothing is lost (the writer was held by its full pipe), the crash
/// loop goes on, and brummerd says it was stopped.
#[test]
fn sigstop_for_ten_seconds_under_load_loses_nothing_and_is_reported() {
    let d = Daemon::start(
        &Config::new()
            .process(
                "writer",
                Proc::sh("i=0; while :; do i=$((i+1)); echo line $i; done")
                    .logs("max_bytes", "1GiB"),
            )
            .process(
                "crasher",
                Proc::sh("echo crash; exit 3")
                    .restart("always")
                    .backoff("100ms", "200ms")
                    .start_limit(1000000, "1s"),
            ),
    );
    d.wait_state("writer", "running");
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // The fault itself: brummerd does not run for 10 s.
    std::thread::sleep(Duration::from_secs(10));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let before = d.state_of("crasher")["restarts"].as_u64().unwrap();
    wait_for("the crash loop to go on", T, || {
        (d.state_of("crasher")["restarts"].as_u64().unwrap() > before + 2).then_some(())
    });
    let said = wait_for("brummerd to say it did not run", T, || {
        d.daemon_log()
            .lines()
            .find(|l| l.contains("brummerd did not run for a while"))
            .map(str::to_owned)
    });
    // Its own measure of the stall: at least the 10 s, less its 1 s tick.
    let secs: f64 = said
        .split("seconds=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {said:?}"));
    assert!(secs >= 8.9, "{said}");
    d.ctl_ok(&["stop", "writer"]);
    let text = std::fs::read_to_string(d.log_dir.join("writer.log")).unwrap();
    let mut expect = 1u64;
    for l in text.lines() {
        let n: u64 = l
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{l:?}"));
        assert_eq!(n, expect, "a line lost around {expect}");
        expect += 1;
    }
    let s = d.state_of("writer");
    assert_eq!(s["logs"]["lines"], expect - 1, "{s:#}");
    assert_eq!(s["logs"]["disk_errors"], 0, "{s:#}");
}

/// EMFILE: brummerd's open-file limit (soft and hard) at 128 with 30 programs, which need
/// about 214. The programs that do not fit fail to start with an error naming the limit and
/// the fix; brummerd keeps 32 descriptors for its clients, so every client is still
/// answered; stopping programs frees descriptors and a failed program then starts.
#[test]
fn emfile_fails_the_programs_that_do_not_fit_and_keeps_answering_clients() {
    const PROGRAMS: usize = 30;
    let config =
        Config::new().processes((0..PROGRAMS).map(|i| (format!("p{i:02}"), Proc::sleep())));
    let d = Daemon::builder(&config).nofile(128).start();
    let st = wait_for("every program to be running or failed", T, || {
        let st = d.status();
        st.values()
            .all(|p| p["state"] == "running" || p["state"] == "failed")
            .then_some(st)
    });
    let running: Vec<&String> = st.keys().filter(|n| st[*n]["state"] == "running").collect();
    let failed: Vec<&String> = st.keys().filter(|n| st[*n]["state"] == "failed").collect();
    assert!(!running.is_empty() && !failed.is_empty(), "{st:#?}");
    for n in &failed {
        let e = st[*n]["last_error"].as_str().unwrap_or_default();
        assert!(
            e.contains("brummerd is out of file descriptors") && e.contains("its limit is 128"),
            "{n}: {e}"
        );
    }
    let log = d.daemon_log();
    assert!(log.contains("open-file limit too low"), "{log}");

    // Several clients at once, while the programs hold every descriptor but the reserve.
    let held: Vec<Rpc> = (0..3).map(|_| d.rpc()).collect();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| s.spawn(|| d.ctl(&["--json", "status"])))
            .collect();
        for c in calls {
            let out = c.join().unwrap();
            assert!(out.status.success(), "{out:?}\n{}", d.daemon_log());
        }
    });
    for mut c in held {
        let r = c.call("list", serde_json::json!({}));
        assert_eq!(
            r["result"]["processes"].as_array().map(Vec::len),
            Some(PROGRAMS),
            "{r}"
        );
    }

    // A client that holds connections until the reserve is gone: the one brummerd cannot
    // take is told why, not just closed; once they close, clients are served again.
    let mut open = vec![];
    let fill = |open: &mut Vec<UnixStream>| {
        (0..200)
            .find_map(|_| {
                let mut c = UnixStream::connect(&d.socket).expect("connect");
                c.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\"}\n")
                    .unwrap();
                let mut line = String::new();
                let mut r = BufReader::new(c.try_clone().unwrap());
                r.read_line(&mut line)
                    .unwrap_or_else(|e| panic!("{e}\n{}", d.daemon_log()));
                open.push(c);
                let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON reply");
                v.get("error")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            })
            .expect("200 connections do not fit in 32 descriptors")
    };
    let refusal = fill(&mut open);
    assert!(refusal.contains("out of file descriptors"), "{refusal}");
    // brummerd's own short-lived descriptors (the metrics sampler's /proc reads) may free
    // one between the refusal and brummerctl's connection: take it too, and ask again.
    let out = wait_for(
        "brummerctl refused while every descriptor is taken",
        T,
        || {
            let out = d.ctl(&["status"]);
            if out.status.success() {
                fill(&mut open);
                return None;
            }
            Some(out)
        },
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of file descriptors"),
        "{out:?}"
    );
    drop(open);
    wait_for("clients to be served again", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });

    // Descriptors freed by stopping programs are used again.
    let stop: Vec<&str> = running.iter().take(5).map(|s| s.as_str()).collect();
    d.ctl_ok(&[&["stop"], stop.as_slice()].concat());
    d.ctl_ok(&["start", failed[0]]);
    assert_eq!(d.state_of(failed[0])["state"], "running");
}

/// fork failing with EAGAIN: brummerd runs as nobody with RLIMIT_NPROC at 60 tasks; a
/// program forks until the limit stops it. Starting another program then fails with an
/// error that names the process limit, status and log reads still answer, and once the hog
/// is stopped the same start succeeds.
#[test]
#[ignore = "needs root"]
fn fork_failing_with_eagain_is_reported_and_brummerd_keeps_working() {
    require_root();
    let config = Config::new()
        .process(
            "hog",
            Proc::python(
                "import os, time\n\
                 n = 0\n\
                 while n < 200:\n\
                 \x20   try:\n\
                 \x20       if os.fork() == 0:\n\
                 \x20           time.sleep(1000); os._exit(0)\n\
                 \x20   except BlockingIOError:\n\
                 \x20       break\n\
                 \x20   n += 1\n\
                 print('forked', n, flush=True)\n\
                 time.sleep(1000)",
            ),
        )
        .process("victim", Proc::sleep().autostart(false));
    let d = Daemon::builder(&config).as_nobody().nproc(60).start();
    // Forks are slow on a loaded machine: the workload's time, not a wait for brummerd.
    let lines = wait_for("hog to reach the limit", Duration::from_secs(60), || {
        let l = d.log_lines("hog");
        l.iter().any(|x| x.starts_with("forked ")).then_some(l)
    });
    let forked: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("forked "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(forked < 200, "the limit did not stop hog: {lines:?}");

    let out = d.ctl(&["start", "victim"]);
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains("the system refused a new process") && err.contains("RLIMIT_NPROC 60"),
        "{err}"
    );
    let s = d.state_of("victim");
    assert_eq!(s["state"], "failed", "{s:#}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("RLIMIT_NPROC"),
        "{s:#}"
    );
    // Reads that may need a blocking thread still answer.
    assert!(d.ctl_ok(&["logs", "-n", "5", "hog"]).contains("forked"));

    d.ctl_ok(&["stop", "hog"]);
    d.ctl_ok(&["start", "victim"]);
    assert_eq!(d.state_of("victim")["state"], "running");
}

/// libfaketime's library, from Debian's `faketime` package.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock set back by an hour while brummerd runs (libfaketime: CLOCK_REALTIME is
/// not namespaced, so `date -s` in a time namespace cannot move it for one process; the
/// monotonic clock is left real, as `date -s` would). brummerd says the clock jumped; the
/// restart backoff, on the monotonic clock, goes on as before; rotation (by size) loses no
/// line across the jump; `logs -n` still gives the newest lines in sequence order although
/// they carry earlier times (it sorted by time before: regression); `--since` a time after
/// the jump finds every line captured after it.
#[test]
fn the_wall_clock_set_back_an_hour_is_reported_and_timers_and_logs_hold() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: apt-get install faketime"
    );
    let spec = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spec.path(), "+0\n").unwrap();
    let config = Config::new()
        .process(
            "ticker",
            Proc::sh(
                "i=0; while :; do i=$((i+1)); \
                 echo \"tick $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; \
                 sleep 0.02; done",
            )
            .env("LD_PRELOAD", "")
            .logs("max_bytes", "4KiB")
            .logs("max_files", 100),
        )
        .process(
            "crasher",
            Proc::sh("exit 1")
                .env("LD_PRELOAD", "")
                .restart("always")
                .backoff("1s", "1s")
                .start_limit(1000000, "1s"),
        );
    let d = Daemon::builder(&config)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env(
            "FAKETIME_TIMESTAMP_FILE",
            &spec.path().display().to_string(),
        )
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .start();
    let lines_now = |d: &Daemon| d.state_of("ticker")["logs"]["lines"].as_u64().unwrap();
    wait_for("ticker to log 50 lines", T, || {
        (lines_now(&d) >= 50).then_some(())
    });
    std::fs::write(spec.path(), "-3600\n").unwrap();
    let said = wait_for("brummerd to say the clock jumped", T, || {
        d.daemon_log()
            .lines()
            .find(|l| l.contains("the wall clock jumped") && l.contains("direction=\"back\""))
            .map(str::to_owned)
    });
    assert!(said.contains("seconds=-3"), "{said}");

    // Backoff runs on the monotonic clock: restarts go on at their pace.
    let r0 = d.state_of("crasher")["restarts"].as_u64().unwrap();
    wait_for("two more restarts of crasher", T, || {
        (d.state_of("crasher")["restarts"].as_u64().unwrap() >= r0 + 2).then_some(())
    });

    let after = lines_now(&d);
    wait_for("ticker to log 50 lines after the jump", T, || {
        (lines_now(&d) >= after + 50).then_some(())
    });
    let all = brummer_tests::ndjson(&d.ctl_ok(&["--json", "logs", "-n", "100000", "ticker"]));
    let seqs: Vec<u64> = all.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "lines out of order or lost around the jump: {seqs:?}"
    );
    let jump = all
        .windows(2)
        .position(|w| w[1]["time_us"].as_u64() < w[0]["time_us"].as_u64())
        .expect("times go back once, at the jump");
    let back = all[jump]["time_us"].as_u64().unwrap() - all[jump + 1]["time_us"].as_u64().unwrap();
    assert!(back > 3_500_000_000, "the times went back {back} µs");
    let s = d.state_of("ticker");
    assert!(s["logs"]["rotations"].as_u64() > Some(2), "{s:#}");
    assert_eq!(s["logs"]["disk_errors"], 0, "{s:#}");

    // The last lines are the newest, in order (they were the oldest by time).
    let tail = brummer_tests::ndjson(&d.ctl_ok(&["--json", "logs", "-n", "5", "ticker"]));
    let last_seq = tail.last().unwrap()["seq"].as_u64().unwrap();
    assert!(last_seq >= *seqs.last().unwrap(), "{tail:?}");
    assert!(
        tail.windows(2)
            .all(|w| w[1]["seq"].as_u64().unwrap() == w[0]["seq"].as_u64().unwrap() + 1),
        "{tail:?}"
    );

    // --since the first line after the jump: every line captured after it is there.
    let since = all[jump + 1]["time_us"].as_u64().unwrap();
    let mut rpc = d.rpc();
    let r = rpc.call(
        "logs",
        serde_json::json!({"names": ["ticker"], "since_us": since, "lines": 100000}),
    );
    let got: Vec<u64> = r["result"]["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    for want in &seqs[jump + 1..] {
        assert!(
            got.contains(want),
            "--since after the jump lacks seq {want}: got {got:?}"
        );
    }
}
