//! Log capture end to end: a flood of lines on both streams reaches the disk log and the
//! ring without loss, duplication or reordering; followers see new lines; `logs` prints
//! raw or prefixed text and filters by stream; invalid UTF-8 and over-long lines survive.

use brummer_tests::{Config, Daemon, LineChild, Proc, T, brtest, ndjson, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
const N: u64 = 200_000;

/// Even numbers to stdout, odd ones to stderr, `L%06d` lines, written in big chunks.
const FLOOD: &str = r#"
import sys
o = sys.stdout.buffer
e = sys.stderr.buffer
for c in range(0, 200000, 2000):
    o.write(b"".join(b"L%06d\n" % i for i in range(c, c + 2000, 2)))
    e.write(b"".join(b"L%06d\n" % i for i in range(c + 1, c + 2000, 2)))
    o.flush()
    e.flush()
"#;

fn flood_daemon() -> Daemon {
    let d = Daemon::start(
        &Config::new()
            .ring_bytes(64 << 20)
            .process("flood", Proc::python(FLOOD).restart("never")),
    );
    // The child exited and every line is in the ring and in the disk log.
    wait_for("flood to exit with all lines captured", T, || {
        let s = d.state_of("flood");
        let done = s["state"] == "exited" && s["logs"]["lines"] == N;
        done.then_some(())
    });
    assert_eq!(d.state_of("flood")["exit_code"], 0);
    let path = d.log_dir.join("flood.log");
    wait_for("the disk log to hold every line", T, || {
        let bytes = std::fs::read(&path).ok()?;
        (bytes.iter().filter(|b| **b == b'\n').count() as u64 >= N).then_some(())
    });
    d
}

fn number(text: &str) -> u64 {
    text.strip_prefix('L')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an L%06d line: {text:?}"))
}

/// Checks that `lines` holds every number 0..N exactly once, evens in order and odds in
/// order (the two streams interleave arbitrarily).
fn check_numbers(what: &str, lines: impl IntoIterator<Item = u64>) {
    let mut seen = vec![false; N as usize];
    let (mut last_even, mut last_odd): (Option<u64>, Option<u64>) = (None, None);
    let mut count = 0u64;
    for n in lines {
        count += 1;
        assert!(n < N, "{what}: number {n} out of range");
        assert!(!seen[n as usize], "{what}: L{n:06} twice");
        seen[n as usize] = true;
        let last = if n % 2 == 0 {
            &mut last_even
        } else {
            &mut last_odd
        };
        if let Some(prev) = *last {
            assert!(
                prev < n,
                "{what}: L{n:06} after L{prev:06} in the same stream"
            );
        }
        *last = Some(n);
    }
    assert_eq!(count, N, "{what}: line count");
    assert!(seen.iter().all(|s| *s), "{what}: a number is missing");
}

#[test]
fn flood_of_200k_lines_reaches_disk_and_ring_complete_and_in_order() {
    let d = flood_daemon();

    let disk = std::fs::read_to_string(d.log_dir.join("flood.log")).expect("disk log");
    assert!(disk.ends_with('\n'));
    check_numbers("disk log", disk.lines().map(number));

    // The ring through the raw protocol, paged by sequence number (a reply is capped).
    let mut rpc = d.rpc();
    let mut lines: Vec<Value> = Vec::with_capacity(N as usize);
    while (lines.len() as u64) < N {
        let from = lines.len() as u64;
        let r = rpc.call(
            "logs",
            json!({"names": ["flood"], "from_seq": from, "lines": 50000}),
        );
        let page = r["result"]["lines"].as_array().expect("lines").clone();
        assert!(!page.is_empty(), "no lines from seq {from}: {r}");
        assert!(
            r["result"].get("missed").is_none(),
            "{}",
            r["result"]["missed"]
        );
        lines.extend(page);
    }
    assert_eq!(lines.len() as u64, N);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64, "seq gap or reorder at {i}: {l}");
        let n = number(l["text"].as_str().expect("text"));
        let stream = if n.is_multiple_of(2) {
            "stdout"
        } else {
            "stderr"
        };
        assert_eq!(l["stream"], stream, "{l}");
    }
    check_numbers(
        "ring",
        lines.iter().map(|l| number(l["text"].as_str().unwrap())),
    );
}

#[test]
fn cli_logs_json_returns_all_200k_lines() {
    let d = flood_daemon();
    let out = d.ctl_ok(&["--json", "logs", "-n", "200000", "flood"]);
    let lines = ndjson(&out);
    assert_eq!(lines.len() as u64, N, "lines printed by logs -n 200000");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64, "{l}");
    }
    check_numbers(
        "logs --json",
        lines.iter().map(|l| number(l["text"].as_str().unwrap())),
    );
}

#[test]
fn cli_logs_json_returns_a_complete_tail() {
    // Within the reply cap, the CLI's NDJSON is the ring's content, seq without gaps.
    let d = flood_daemon();
    let out = d.ctl_ok(&["--json", "logs", "-n", "20000", "flood"]);
    let disk = std::fs::read_to_string(d.log_dir.join("flood.log")).expect("disk log");
    let lines = ndjson(&out);
    assert_eq!(lines.len(), 20000);
    // The tail is the last 20000 lines by seq; their texts are exactly the disk lines that
    // the two streams wrote last (as a multiset, and in order per stream).
    let mut by_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], N - 20000 + i as u64, "{l}");
        assert_eq!(l["process"], "flood");
        by_stream
            .entry(if l["stream"] == "stdout" {
                "stdout"
            } else {
                "stderr"
            })
            .or_default()
            .push(number(l["text"].as_str().unwrap()));
    }
    for (stream, nums) in &by_stream {
        assert!(
            nums.windows(2).all(|w| w[0] < w[1]),
            "{stream} out of order"
        );
        let parity = u64::from(*stream == "stderr");
        assert!(nums.iter().all(|n| n % 2 == parity), "{stream} mixed up");
    }
    let disk_tail: Vec<u64> = {
        let all: Vec<u64> = disk.lines().map(number).collect();
        all[all.len() - 20000..].to_vec()
    };
    let mut a: Vec<u64> = by_stream.values().flatten().copied().collect();
    let mut b = disk_tail;
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "ring tail and disk tail hold different lines");
}

/// A shell loop that waits for `flag` to exist.
fn wait_for_file(flag: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.01; done", flag.display())
}

/// A program that prints `before`, then one line per flag file as each appears.
fn flags_program(dir: &Path) -> Config {
    let script = format!(
        "echo before; {}; echo after-attach; {}; echo after-cli; exec sleep 1000",
        wait_for_file(&dir.join("flag1")),
        wait_for_file(&dir.join("flag2")),
    );
    Config::new().process("talker", Proc::sh(&script))
}

#[test]
fn follow_sees_lines_written_after_it_attached() {
    let flags = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(&flags_program(flags.path()));
    wait_for("talker's first line", T, || {
        (d.state_of("talker")["logs"]["lines"] == 1).then_some(())
    });

    // Raw protocol: the follow reply comes first, then only new lines (no backlog asked).
    let mut rpc = d.rpc();
    let r = rpc.call("follow", json!({"names": ["talker"]}));
    let sub = r["result"]["subscription"].as_u64().expect("subscription");
    std::fs::write(flags.path().join("flag1"), b"").expect("flag1");
    let l = rpc.next_log(T);
    assert_eq!(l["subscription"], sub);
    assert_eq!(l["text"], "after-attach", "{l}");
    assert_eq!(l["seq"], 1);
    assert_eq!(l["process"], "talker");
    assert_eq!(l["stream"], "stdout");

    // The CLI: `logs -f -n 1` prints the last line once attached, then new ones.
    let mut cli = LineChild::spawn(&mut d.ctl_cmd(&["logs", "-f", "--json", "-n", "1", "talker"]));
    let first: Value = serde_json::from_str(&cli.next_line()).expect("json");
    assert_eq!(first["text"], "after-attach", "{first}");
    std::fs::write(flags.path().join("flag2"), b"").expect("flag2");
    let second: Value = serde_json::from_str(&cli.next_line()).expect("json");
    assert_eq!(second["text"], "after-cli", "{second}");
    assert_eq!(second["seq"], 2);
    // The raw follower got it too.
    let l = rpc.next_log(T);
    assert_eq!(l["text"], "after-cli");
    assert!(
        cli.child.try_wait().expect("try_wait").is_none(),
        "logs -f exited"
    );
}

/// A follower of named processes runs on their log thread and waits on that thread's
/// wake-up. A reload that removes a followed process and adds it back gives it a new
/// capture task, dealt to the next log thread: the follower must notice the move and still
/// get the new run's lines.
#[test]
fn named_follower_keeps_following_a_process_that_reload_moves() {
    // brummerd deals processes (in name order) to one log thread per CPU, at most 4: with
    // fillers between them, `a` and `c` share thread 0, and `a` added back goes to thread 1.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let flags = tempfile::tempdir().expect("tempdir");
    let flag = flags.path().join("speak");
    let config = |with_a: bool| {
        let mut c = Config::new()
            .processes((1..threads).map(|i| (format!("b{i}"), Proc::sleep())))
            .process(
                "c",
                Proc::sh(&format!(
                    "{}; echo c-spoke; exec sleep 1000",
                    wait_for_file(&flag)
                )),
            );
        if with_a {
            c = c.process("a", Proc::sh("echo a-run; exec sleep 1000"));
        }
        c
    };
    let d = Daemon::start(&config(true));
    wait_for("a's first line", T, || {
        (d.state_of("a")["logs"]["lines"] == 1).then_some(())
    });
    let mut rpc = d.rpc();
    let r = rpc.call("follow", json!({"names": ["a", "c"]}));
    assert!(r["result"]["subscription"].is_u64(), "{r}");

    d.write_config(&config(false));
    d.ctl_ok(&["reload"]);
    // A line after the removal: the follower has looked at the registry without `a`.
    std::fs::write(&flag, b"").expect("flag");
    let l = rpc.next_log(T);
    assert_eq!(l["text"], "c-spoke", "{l}");

    d.write_config(&config(true));
    d.ctl_ok(&["reload"]);
    let l = rpc.next_log(T);
    assert_eq!(l["text"], "a-run", "{l}");
    assert_eq!(
        l["seq"], 1,
        "sequence numbers continue from the disk log: {l}"
    );
}

/// With a follower on its log thread, a small chunk's disk write waits until the follower
/// has sent it. Every line still reaches the follower and the disk, once and in order.
#[test]
fn lines_written_one_by_one_reach_a_follower_and_the_disk_in_order() {
    const N: u64 = 3000;
    let flags = tempfile::tempdir().expect("tempdir");
    let go = flags.path().join("go");
    let drip = format!(
        "import os, sys, time
while not os.path.exists(sys.argv[1]): time.sleep(0.01)
for i in range({N}):
    print(f'drip-{{i}}', flush=True)
    if i % 50 == 0: time.sleep(0.002)
time.sleep(1000)"
    );
    let d = Daemon::start(
        &Config::new().process("drip", Proc::python(&drip).arg(go.display().to_string())),
    );
    d.wait_state("drip", "running");
    let mut rpc = d.rpc();
    let r = rpc.call("follow", json!({"names": ["drip"]}));
    assert!(r["result"]["subscription"].is_u64(), "{r}");
    std::fs::write(&go, b"").expect("go");
    for i in 0..N {
        let l = rpc.next_log(T);
        assert_eq!(l["text"], format!("drip-{i}"), "{l}");
        assert_eq!(l["seq"], i, "{l}");
    }
    let path = d.log_dir.join("drip.log");
    let want: String = (0..N).map(|i| format!("drip-{i}\n")).collect();
    wait_for("every line on disk", T, || {
        (std::fs::read_to_string(&path).ok()? == want).then_some(())
    });
}

brtest!(
    logs_tail_prefixes_and_stream_filter,
    Config::new()
        .process(
            "web",
            Proc::sh("for i in 1 2 3 4 5; do echo w$i; done; exec sleep 1000"),
        )
        .process(
            "db",
            Proc::sh(
                "for i in 1 2 3 4 5; do echo d$i; done; echo e1 >&2; echo e2 >&2; exec sleep 1000",
            ),
        ),
    |d| {
        wait_for("all lines captured", T, || {
            let s = d.status();
            (s["web"]["logs"]["lines"] == 5 && s["db"]["logs"]["lines"] == 7).then_some(())
        });

        // One name: exactly the last 3 lines, raw.
        assert_eq!(d.ctl_ok(&["logs", "-n", "3", "web"]), "w3\nw4\nw5\n");
        assert_eq!(d.ctl_ok(&["logs", "-n", "2", "db"]), "e1\ne2\n");

        // Two names: every line prefixed with its (padded) process name.
        let out = d.ctl_ok(&["logs", "-n", "100", "web", "db"]);
        let mut web = vec![];
        let mut db = vec![];
        for line in out.lines() {
            if let Some(t) = line.strip_prefix("web | ") {
                web.push(t.to_owned());
            } else if let Some(t) = line.strip_prefix("db  | ") {
                db.push(t.to_owned());
            } else {
                panic!("line without a name prefix: {line:?}\n{out}");
            }
        }
        assert_eq!(web, ["w1", "w2", "w3", "w4", "w5"], "{out}");
        assert_eq!(db, ["d1", "d2", "d3", "d4", "d5", "e1", "e2"], "{out}");
        let out = d.ctl_ok(&["logs", "-n", "3", "web", "db"]);
        assert_eq!(out.lines().count(), 3, "{out}");

        // Stream filter.
        assert_eq!(d.ctl_ok(&["logs", "--stream", "stderr", "db"]), "e1\ne2\n");
        assert_eq!(d.ctl_ok(&["logs", "--stream", "stderr", "web"]), "");
        assert_eq!(
            d.ctl_ok(&["logs", "-n", "1", "--stream", "stdout", "db"]),
            "d5\n"
        );
    }
);

brtest!(
    /// Issue 17: `-n` is the most recent N lines with `--since`/`--until` too, as in
    /// journalctl (it used to be the first N of the window).
    issue17_n_counts_back_from_the_newest_line_with_since,
    Config::new().process(
        "web",
        Proc::sh("i=0; while [ $i -lt 50 ]; do echo w$i; i=$((i+1)); done; exec sleep 1000"),
    ),
    |d| {
        wait_for("all lines captured", T, || {
            (d.status()["web"]["logs"]["lines"] == 50).then_some(())
        });
        assert_eq!(
            d.ctl_ok(&["logs", "--since", "10m", "-n", "3", "web"]),
            "w47\nw48\nw49\n"
        );
        assert_eq!(
            d.ctl_ok(&["logs", "--since", "10m", "--until", "now", "-n", "2", "web"]),
            "w48\nw49\n"
        );
        // Without -n, every line since then, oldest first.
        let all = d.ctl_ok(&["logs", "--since", "10m", "web"]);
        assert_eq!(all.lines().count(), 50, "{all}");
        assert!(all.starts_with("w0\n"), "{all}");
        // Nothing in the window: nothing printed.
        assert_eq!(d.ctl_ok(&["logs", "--until", "1h", "-n", "3", "web"]), "");
        // Following: the last N of the window first, then new lines.
        let f = LineChild::spawn(&mut d.ctl_cmd(&["logs", "-f", "--since", "10m", "-n", "2", "web"]));
        assert_eq!([f.next_line(), f.next_line()], ["w48", "w49"]);
        let f = LineChild::spawn(&mut d.ctl_cmd(&["logs", "-f", "--since", "10m", "web"]));
        assert_eq!(f.next_line(), "w0");
    }
);

/// The bytes of the odd-output program: a line with invalid UTF-8, a 200 KiB line, `end`.
fn odd_bytes(long_len: usize) -> (Vec<u8>, Vec<u8>) {
    let long: Vec<u8> = (0..long_len)
        .map(|i| b"0123456789abcdef"[(i % 16) ^ ((i / 4096) % 16)])
        .collect();
    let mut all = b"ok\xff\xfebad\n".to_vec();
    all.extend_from_slice(&long);
    all.extend_from_slice(b"\nend\n");
    (all, long)
}

fn odd_program(long_len: usize) -> String {
    format!(
        r#"
import array, fcntl, sys, termios, time
o = sys.stdout.buffer
def drained():
    # The capture task has read everything so far: the long line stays unfinished in
    # its carry-over buffer, which it must split itself.
    o.flush()
    n = array.array("i", [0])
    while True:
        fcntl.ioctl(1, termios.FIONREAD, n)
        if n[0] == 0:
            return
        time.sleep(0.005)
o.write(b"ok\xff\xfebad\n")
long = bytes(b"0123456789abcdef"[i % 16 ^ (i // 4096) % 16] for i in range({long_len}))
for k in range(0, len(long), 70000):
    o.write(long[k:k + 70000])
    drained()
o.write(b"\nend\n")
o.flush()
"#
    )
}

fn check_odd_output(ring_bytes: usize, long_len: usize) {
    let d = Daemon::start(
        &Config::new()
            .ring_bytes(ring_bytes as i64)
            .process("odd", Proc::python(&odd_program(long_len)).restart("never")),
    );
    let (expected, long) = odd_bytes(long_len);
    let path = d.log_dir.join("odd.log");
    wait_for("odd to exit and its disk log to be complete", T, || {
        let s = d.state_of("odd");
        let bytes = std::fs::read(&path).ok()?;
        (s["state"] == "exited" && bytes.len() >= expected.len()).then_some(())
    });
    assert!(
        std::fs::read(&path).expect("disk log") == expected,
        "the disk log does not hold the exact bytes written"
    );

    let out = d.ctl_ok(&["--json", "logs", "-n", "1000", "odd"]);
    let lines = ndjson(&out);
    assert!(lines.len() >= 4, "{} lines", lines.len());
    let first = &lines[0];
    assert_eq!(first["text"], "ok\u{FFFD}\u{FFFD}bad", "{first}");
    assert_eq!(first["lossy"], true);
    assert!(first.get("partial").is_none(), "{first}");
    let last = &lines[lines.len() - 1];
    assert_eq!(last["text"], "end");
    assert!(last.get("lossy").is_none() && last.get("partial").is_none());

    let parts = &lines[1..lines.len() - 1];
    assert!(
        parts.len() >= 2,
        "a {long_len}-byte line must come in parts"
    );
    for (i, p) in parts.iter().enumerate() {
        let is_last = i == parts.len() - 1;
        assert_eq!(
            p.get("partial").is_some_and(|v| v == true),
            !is_last,
            "part {i} of {}: partial flag wrong",
            parts.len()
        );
        assert!(p.get("lossy").is_none());
        assert!(p["text"].as_str().unwrap().len() <= 64 * 1024);
    }
    let joined: String = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(joined.len(), long.len(), "the parts lost or gained bytes");
    assert!(
        joined.as_bytes() == long,
        "the parts do not rebuild the line"
    );
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64);
    }
}

#[test]
fn invalid_utf8_and_a_200k_line_survive() {
    check_odd_output(1 << 20, 200 * 1024);
}

#[test]
fn long_line_in_a_small_ring_is_split_not_truncated() {
    // Rings under 256 KiB carry less than 64 KiB per record.
    check_odd_output(128 * 1024, 100 * 1024);
}
