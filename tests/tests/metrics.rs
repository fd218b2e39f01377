//! What each program costs and where it shows (issue 18, the /proc fallback): CPU time and
//! percent, memory and its peak, tasks, compared with what the kernel says in /proc;
//! `containment` in `status --json`; `brummerctl metrics` checked by `promtool check
//! metrics` (Debian package prometheus); the opt-in HTTP listener serving the same text,
//! and no listener without it.
//!
//! Samples are taken every 2 s. A test never sleeps for one: it notes the time, then waits
//! for a sample stamped later (`sampled_at_us`), which brummerd takes before it reads /proc,
//! so that sample saw everything the test did before.

use brummer_tests::{Config, Daemon, Proc, T, brtest, run, stat_fields, wait_for};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sampler's interval (`SAMPLE_EVERY` in daemon/src/process/usage).
const SAMPLE_EVERY_US: u64 = 2_000_000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The `metrics` object of `name` in `status --json`, if it has one.
fn metrics_of(d: &Daemon, name: &str) -> Option<Value> {
    d.state_of(name).get("metrics").cloned()
}

/// The first sample of `name` taken after `after_us` (µs since the epoch).
fn sample_after(d: &Daemon, name: &str, after_us: u64) -> Value {
    wait_for(&format!("a sample of {name} after {after_us}"), T, || {
        metrics_of(d, name).filter(|m| m["sampled_at_us"].as_u64().unwrap_or(0) > after_us)
    })
}

fn u(m: &Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number: {m:#}"))
}

fn clock_ticks() -> u64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("run getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK is a number")
}

/// utime + stime + cutime + cstime of each process, summed, in clock ticks (what the
/// kernel counts for a tree whose exited members were waited for).
fn kernel_cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| stat_fields(p))
        .map(|f| {
            (11..=14)
                .map(|i| f[i].parse::<u64>().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

/// A line `Key: N kB` of /proc/PID/status, in bytes (or the plain number for `Threads`).
fn status_field(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map_or(0, |v| {
            let mut it = v.split_whitespace();
            let n: u64 = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            if it.next() == Some("kB") { n * 1024 } else { n }
        })
}

brtest!(
    /// A busy loop's CPU time is what the kernel counted: stopped with SIGSTOP, its sample
    /// equals /proc exactly and its percent is 0; running again, each percent is the CPU time
    /// between two samples over their interval.
    cpu_time_is_the_kernels_and_percent_its_rate,
    Config::new().process("busy", Proc::sh("while :; do :; done")),
    |d| {
        d.wait_state("busy", "running");
        let pid = d.pid_of("busy");
        let ns_per_tick = 1_000_000_000 / clock_ticks();
        // Some CPU time first, so that the comparison below is not of zeros.
        wait_for("the busy loop to use 0.2 s of CPU", T, || {
            metrics_of(&d, "busy").filter(|m| u(m, "cpu_usage_ns") >= 200_000_000)
        });

        let stop = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        stop(nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP the loop");
        wait_for("the loop to be stopped", T, || {
            stat_fields(pid).filter(|f| f[0] == "T")
        });
        let ticks = kernel_cpu_ticks(&d.program_processes("busy"));
        let frozen = sample_after(&d, "busy", now_us());
        assert_eq!(
            u(&frozen, "cpu_usage_ns"),
            ticks * ns_per_tick,
            "sample {frozen:#} against {ticks} ticks in /proc"
        );
        let idle = sample_after(&d, "busy", u(&frozen, "sampled_at_us"));
        assert_eq!(idle["cpu_percent"].as_f64(), Some(0.0), "{idle:#}");
        assert_eq!(u(&idle, "cpu_usage_ns"), u(&frozen, "cpu_usage_ns"));
        assert_eq!(u(&idle, "tasks"), 1);

        stop(nix::sys::signal::Signal::SIGCONT).expect("SIGCONT the loop");
        let mut prev = sample_after(&d, "busy", now_us());
        let (prev, next) = wait_for("two consecutive samples of the running loop", T, || {
            let next = sample_after(&d, "busy", u(&prev, "sampled_at_us"));
            // Ticks are at least 2 s apart: less than two intervals means no sample between.
            let gap = u(&next, "sampled_at_us") - u(&prev, "sampled_at_us");
            let pair = (gap < 2 * SAMPLE_EVERY_US).then(|| (prev.clone(), next.clone()));
            prev = next;
            pair
        });
        let secs = (u(&next, "sampled_at_us") - u(&prev, "sampled_at_us")) as f64 / 1e6;
        let used = (u(&next, "cpu_usage_ns") - u(&prev, "cpu_usage_ns")) as f64 / 1e9;
        let percent = next["cpu_percent"].as_f64().expect("a percent");
        assert!(used > 0.0, "the running loop used no CPU: {prev:#} {next:#}");
        let expected = used / secs * 100.0;
        assert!(
            (percent - expected).abs() <= expected * 0.01 + 0.01,
            "cpu_percent {percent} but {used} s of CPU in {secs} s"
        );
    }
);

/// 50 MiB allocated and touched show as the tree's resident memory (within 10% of /proc's
/// VmRSS); freed, the memory goes down and the peak stays.
#[test]
fn memory_is_the_trees_resident_set_and_the_peak_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trigger = dir.path().join("free");
    let d = Daemon::start(
        &Config::new().process(
            "mem",
            Proc::python(
                "import os, time\n\
             b = bytearray(50 << 20)\n\
             for i in range(0, len(b), 4096): b[i] = 1\n\
             print('allocated', flush=True)\n\
             while not os.path.exists(os.environ['FREE_WHEN']): time.sleep(0.01)\n\
             del b\n\
             print('freed', flush=True)\n\
             time.sleep(1000)\n",
            )
            .env("FREE_WHEN", &trigger.display().to_string()),
        ),
    );
    d.wait_logged("mem", "allocated");
    let pid = d.pid_of("mem");
    let held = sample_after(&d, "mem", now_us());
    assert_eq!(u(&held, "tasks"), 1);
    let rss: u64 = d
        .program_processes("mem")
        .iter()
        .map(|&p| status_field(p, "VmRSS"))
        .sum();
    let mem = u(&held, "memory_bytes");
    assert!(mem >= 50 << 20, "{mem} bytes for 50 MiB allocated");
    assert!(
        mem.abs_diff(rss) <= rss / 10,
        "sample says {mem} bytes, /proc VmRSS {rss}"
    );

    std::fs::write(&trigger, b"").expect("write the trigger");
    d.wait_logged("mem", "freed");
    let freed = sample_after(&d, "mem", now_us());
    assert_eq!(d.pid_of("mem"), pid);
    assert!(
        u(&freed, "memory_bytes") < mem - (40 << 20),
        "after freeing 50 MiB: {freed:#}"
    );
    assert!(u(&freed, "memory_peak_bytes") >= mem, "{freed:#}");
}

brtest!(
    /// Tasks count every thread of every process of the tree: python with three threads
    /// (four) and its child sleep (one); /proc agrees.
    tasks_count_every_thread_of_the_tree,
    Config::new().process(
        "threads",
        Proc::python(
            "import subprocess, threading, time\n\
             child = subprocess.Popen(['sleep', '1000'])\n\
             for _ in range(3): threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n\
             print('up', flush=True)\n\
             time.sleep(1000)\n"
        )
    ),
    |d| {
        d.wait_logged("threads", "up");
        let m = sample_after(&d, "threads", now_us());
        let kernel: u64 = d
            .program_processes("threads")
            .iter()
            .map(|&p| status_field(p, "Threads"))
            .sum();
        assert_eq!((u(&m, "tasks"), kernel), (5, 5), "{m:#}");
    }
);

brtest!(
    /// Every program says what holds it together; only a running one has metrics, and a
    /// stopped program's last sample does not stay behind.
    containment_is_process_group_and_only_running_programs_have_metrics,
    Config::new()
        .process("web", Proc::sleep())
        .process("idle", Proc::sleep().autostart(false)),
    |d| {
        d.wait_state("web", "running");
        sample_after(&d, "web", 0);
        let status = d.status();
        for name in ["web", "idle"] {
            assert_eq!(status[name]["containment"], "process-group", "{name}");
        }
        assert!(status.get("idle").and_then(|s| s.get("metrics")).is_none());
        let m = &status["web"]["metrics"];
        assert_eq!(m["source"], "proc");
        assert!(u(m, "memory_bytes") > 0 && u(m, "memory_peak_bytes") >= u(m, "memory_bytes"));
        assert!(m["io_read_bytes"].is_u64() && m["io_write_bytes"].is_u64(), "{m:#}");
        d.ctl_ok(&["stop", "web"]);
        assert!(d.state_of("web").get("metrics").is_none());
    }
);

/// `promtool check metrics` on `text` (with the harness's deadline): Ok, or promtool's
/// complaint.
fn promtool(text: &str) -> Result<(), String> {
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("write the text");
    file.seek(std::io::SeekFrom::Start(0)).expect("rewind");
    let path = std::env::var_os("PATH").unwrap_or_default();
    assert!(
        std::env::split_paths(&path).any(|d| d.join("promtool").is_file()),
        "promtool is not on PATH: it comes with Debian's prometheus package (.ci/run takes it from there)"
    );
    let out = run(Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::from(file)));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The series of a text exposition: each sample line up to its value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| Some(l.rsplit_once(' ')?.0.to_owned()))
        .collect()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

brtest!(
    /// `brummerctl metrics` is valid Prometheus text (promtool says so) with every
    /// program's series and the daemon's; a program's CPU time there is its status's.
    metrics_text_passes_promtool_and_has_every_series,
    Config::new()
        .process("web", Proc::sh("echo hello; exec sleep 1000"))
        .process("idle", Proc::sleep().autostart(false)),
    |d| {
        d.wait_logged("web", "hello");
        let m = sample_after(&d, "web", 0);
        let text = d.ctl_ok(&["metrics"]);
        promtool(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
        for (s, v) in [
            ("brummer_process_up{process=\"web\"}", Some(1.0)),
            ("brummer_process_up{process=\"idle\"}", Some(0.0)),
            (
                "brummer_process_state{process=\"idle\",state=\"stopped\"}",
                Some(1.0),
            ),
            (
                "brummer_process_state{process=\"web\",state=\"running\"}",
                Some(1.0),
            ),
            ("brummer_process_restarts_total{process=\"web\"}", Some(0.0)),
            ("brummer_process_log_lines_total{process=\"web\"}", Some(1.0)),
            ("brummer_process_log_bytes_total{process=\"web\"}", Some(6.0)),
            (
                "brummer_process_ring_evicted_lines_total{process=\"web\"}",
                Some(0.0),
            ),
            ("brummer_process_tasks{process=\"web\"}", Some(1.0)),
            ("brummer_process_memory_bytes{process=\"web\"}", None),
            ("brummer_process_memory_peak_bytes{process=\"web\"}", None),
            ("brummer_process_io_read_bytes_total{process=\"web\"}", None),
            ("brummer_process_io_write_bytes_total{process=\"web\"}", None),
            ("brummer_daemon_resident_memory_bytes", None),
            ("brummer_daemon_events_missed_total", Some(0.0)),
            ("brummer_daemon_processes", Some(2.0)),
            ("brummer_daemon_event_queue_events", Some(0.0)),
            ("brummer_daemon_outbox_queued_messages", Some(0.0)),
            ("brummer_daemon_log_disk_pending_lines", None),
            (
                "brummer_process_log_disk_pending_lines{process=\"web\"}",
                None,
            ),
            // brummerctl's own connection.
            ("brummer_daemon_connections", Some(1.0)),
        ] {
            let got = value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
            if let Some(v) = v {
                assert_eq!(got, v, "{s}");
            }
        }
        // sleep uses next to no CPU: the sample before is the one the text shows, or one
        // within a tick of it.
        let cpu = value(&text, "brummer_process_cpu_seconds_total{process=\"web\"}")
            .expect("web's CPU seconds");
        assert!((cpu - u(&m, "cpu_usage_ns") as f64 / 1e9).abs() < 0.05, "{cpu}");
        assert!(
            !text.contains("brummer_process_cpu_seconds_total{process=\"idle\"}"),
            "a stopped program has no CPU series:\n{text}"
        );
        assert!(text.contains("brummer_daemon_info{"), "{text}");
        let json: Value = serde_json::from_str(&d.ctl_ok(&["--json", "metrics"])).expect("JSON");
        assert!(json["text"].as_str().is_some_and(|t| t.contains("brummer_process_up")));
    }
);

brtest!(
    /// Connections are counted while open and no longer once closed.
    daemon_connections_are_counted_while_open,
    Config::new().process("web", Proc::sleep()),
    |d| {
        let mut open: Vec<_> = (0..3).map(|_| d.rpc()).collect();
        for r in &mut open {
            // Answered, so accepted and counted.
            assert!(r.call("version", serde_json::json!({})).get("result").is_some());
        }
        let text = d.ctl_ok(&["metrics"]);
        assert_eq!(value(&text, "brummer_daemon_connections"), Some(4.0), "{text}");
        drop(open);
        wait_for("the closed connections to be uncounted", T, || {
            let text = d.ctl_ok(&["metrics"]);
            (value(&text, "brummer_daemon_connections") == Some(1.0)).then_some(())
        });
    }
);

/// Socket inodes of `pid`'s descriptors.
fn socket_inodes(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the daemon's fds")
        .filter_map(|e| {
            let link = std::fs::read_link(e.ok()?.path()).ok()?;
            let s = link.to_string_lossy();
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect()
}

/// Local addresses (hex, as /proc/net/tcp writes them) of the TCP sockets `pid` listens on.
fn tcp_listeners(pid: u32) -> Vec<String> {
    let mine = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st ... inode (field 9); 0A is LISTEN.
            if f.len() > 9 && f[3] == "0A" && mine.contains(f[9]) {
                out.push(f[1].to_owned());
            }
        }
    }
    out
}

/// One HTTP/1.1 request; (status line, headers and body).
fn http(port: u16, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics_listen");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_owned(), body.to_owned())
}

brtest!(
    /// With `metrics_listen`, brummerd serves the same series over HTTP at /metrics (valid
    /// for promtool), on the address given and nowhere else; HEAD gets the head alone,
    /// other paths, methods and garbage an error.
    metrics_listen_serves_the_same_text_over_http,
    Config::new()
        .daemon("metrics_listen", "127.0.0.1:0")
        .process("web", Proc::sleep()),
    |d| {
        let port: u16 = wait_for("the metrics listener's address in the log", T, || {
            let log = d.daemon_log();
            let at = log.split("http://127.0.0.1:").nth(1)?;
            at.split('/').next()?.parse().ok()
        });
        // 127.0.0.1 in /proc/net/tcp: 0100007F.
        assert_eq!(
            tcp_listeners(d.pid()),
            vec![format!("0100007F:{port:04X}")]
        );
        sample_after(&d, "web", 0);
        let (head, body) = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        promtool(&body).unwrap_or_else(|e| panic!("promtool: {e}\n{body}"));
        let text = d.ctl_ok(&["metrics"]);
        assert_eq!(series(&body), series(&text));
        let (head, body) = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "", "HEAD has no body");
        let (head, _) = http(port, "GET /other HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        let (head, _) = http(port, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
        let (head, _) = http(port, "garbage\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    }
);

brtest!(
    /// Without `metrics_listen`, brummerd listens on no TCP port at all.
    metrics_listen_is_off_by_default,
    Config::new().process("web", Proc::sleep()),
    |d| {
        d.wait_state("web", "running");
        assert_eq!(tcp_listeners(d.pid()), Vec::<String>::new());
        assert!(!d.daemon_log().contains("serving metrics"));
    }
);

brtest!(
    /// A subscriber that stops reading loses events, and the daemon's metrics count them:
    /// a crash loop fills its stream while it reads nothing. The queue-depth gauges show
    /// where the events wait: its connection's outbox and its bus queue.
    events_missed_by_a_stalled_subscriber_are_counted,
    Config::new().process(
        "crash",
        Proc::new(["false"])
            .restart("always")
            .autostart(false)
            .backoff("1ms", "1ms")
            .start_limit(1_000_000, "1m"),
    ),
    |d| {
        let mut stalled = d.rpc();
        assert!(stalled.subscribe().get("subscription").is_some());
        let missed = |d: &Daemon| {
            value(&d.ctl_ok(&["metrics"]), "brummer_daemon_events_missed_total").unwrap_or(0.0)
        };
        assert_eq!(missed(&d), 0.0);
        d.ctl_ok(&["start", "crash"]);
        wait_for("events missed by the stalled subscriber", T * 4, || {
            (missed(&d) > 0.0).then_some(())
        });
        d.ctl_ok(&["stop", "crash"]);
        // Events are missed only once the socket, the outbox and the bus queue are full.
        let text = d.ctl_ok(&["metrics"]);
        let depth = |s| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
        assert!(depth("brummer_daemon_outbox_queued_messages") >= 256.0, "{text}");
        assert!(depth("brummer_daemon_event_queue_events") >= 1.0, "{text}");
        drop(stalled);
        // Its connection gone, what it held leaves the gauges.
        wait_for("the stalled client's queues emptied", T * 4, || {
            let text = d.ctl_ok(&["metrics"]);
            (value(&text, "brummer_daemon_outbox_queued_messages") == Some(0.0)
                && value(&text, "brummer_daemon_event_queue_events") == Some(0.0))
            .then_some(())
        });
    }
);
