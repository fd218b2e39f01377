//! The logging pipeline end to end: segmented disk logs rotated by brummerd under
//! full-speed writing, sequence numbers across daemon restarts, followers backfilled from
//! disk (a stalled follower slows nobody and still gets every line), time seeks on a 1 GiB
//! history through the index, byte-exact odd output shown safely, and the URL/error
//! scanners.

use brummer_tests::{Config, Daemon, Proc, bin, brtest, bytes_read, ndjson, wait_for};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The deadline of waits on floods of up to a million lines.
const T: Duration = Duration::from_secs(60);

/// Writes `L%07d\n` for 0..argv[1] in 64 KiB chunks as fast as it can.
const COUNTER_PROG: &str = r#"
import sys
n = int(sys.argv[1])
o = sys.stdout.buffer
step = 8192
for c in range(0, n, step):
    o.write(b"".join(b"L%07d\n" % i for i in range(c, min(n, c + step))))
o.flush()
"#;

fn counter(n: u64) -> Proc {
    Proc::python(COUNTER_PROG).arg(n.to_string())
}

/// The rotated segments of `name`, oldest first (their names end in the first seq, padded).
fn rotated_segments(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!("{name}.log.");
    let mut rotated: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| {
            f.strip_prefix(&prefix)
                .is_some_and(|r| r.len() == 20 && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    rotated.sort();
    rotated
}

/// Every segment's bytes, oldest first (rotated by name, then the active one). brummerd
/// counts a chunk as on disk before it rotates the segment that chunk filled, so a rotation
/// may rename the active segment while this reads: read again until no segment came or went.
fn disk_bytes(dir: &Path, name: &str) -> Vec<u8> {
    wait_for(&format!("a stable set of {name}'s segments"), T, || {
        let before = rotated_segments(dir, name);
        let mut out = Vec::new();
        for f in &before {
            out.extend(std::fs::read(dir.join(f)).ok()?);
        }
        out.extend(std::fs::read(dir.join(format!("{name}.log"))).unwrap_or_default());
        (rotated_segments(dir, name) == before).then_some(out)
    })
}

fn check_counter_text(what: &str, text: &[u8], from: u64, n: u64) {
    let mut i = from;
    for line in text.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let want = format!("L{i:07}");
        assert_eq!(
            line,
            want.as_bytes(),
            "{what}: line {i} is {:?}",
            String::from_utf8_lossy(line)
        );
        i += 1;
    }
    assert_eq!(i, from + n, "{what}: line count");
}

fn wait_exited_with_lines(d: &Daemon, name: &str, lines: u64) -> Value {
    wait_for(&format!("{name} to exit with {lines} lines"), T, || {
        let s = d.state_of(name);
        // And written: the disk writer may still hold the last chunk.
        (s["state"] == "exited" && s["logs"]["lines"] == lines && s["logs"]["disk_pending"] == 0)
            .then_some(s)
    })
}

/// All lines from `from` on, paged through `logs` by sequence number.
fn page_all(d: &Daemon, name: &str, from: u64, n: u64) -> Vec<Value> {
    let mut rpc = d.rpc();
    let mut lines: Vec<Value> = Vec::with_capacity(n as usize);
    while (lines.len() as u64) < n {
        let at = from + lines.len() as u64;
        let r = rpc.call(
            "logs",
            json!({"names": [name], "from_seq": at, "lines": 200000}),
        );
        assert!(r["result"].get("missed").is_none(), "missed at {at}: {r}");
        let page = r["result"]["lines"].as_array().expect("lines").clone();
        assert!(!page.is_empty(), "no lines from seq {at}");
        lines.extend(page);
    }
    lines
}

const N_FAST: u64 = 500_000;

brtest!(
    rotation_under_full_speed_loses_and_reorders_nothing,
    Config::new().process(
        "fast",
        counter(N_FAST)
            .restart("never")
            .logs("max_bytes", "128KiB")
            .logs("max_files", 1000),
    ),
    |d| {
        const N: u64 = N_FAST;
        let s = wait_exited_with_lines(&d, "fast", N);
        let rotations = s["logs"]["rotations"].as_u64().unwrap();
        // 4.5 MB in 128 KiB segments (a chunk of up to 256 KiB is never split).
        assert!(rotations >= 10, "only {rotations} rotations: {s}");
        assert_eq!(s["logs"]["disk_errors"], 0);
        // The files: every line once, in order, none torn at a segment boundary.
        let bytes = disk_bytes(&d.log_dir, "fast");
        check_counter_text("segments", &bytes, 0, N);
        // Through the index: every seq, in order, with its text.
        let lines = page_all(&d, "fast", 0, N);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["seq"], i as u64, "{l}");
            assert_eq!(l["text"], format!("L{i:07}"), "{l}");
        }
        // A tail read from a rotated segment and the ring together.
        let out = d.ctl_ok(&["logs", "-n", "300000", "fast"]);
        check_counter_text("logs -n", out.as_bytes(), N - 300_000, 300_000);
    }
);

#[test]
fn retention_deletes_oldest_segments_and_reports_exact_missed() {
    const N: u64 = 200_000;
    // A ring smaller than what the disk keeps, so the oldest line left is the disk's (a
    // 1 MiB ring of short lines holds more than three 64 KiB segments).
    let d = Daemon::start(
        &Config::new().ring_bytes(65536).process(
            "small",
            counter(N)
                .restart("never")
                .logs("max_bytes", 65536)
                .logs("max_files", 3),
        ),
    );
    wait_exited_with_lines(&d, "small", N);
    let bytes = disk_bytes(&d.log_dir, "small");
    // At most 3 segments of about 64 KiB (plus one chunk over) are kept.
    assert!(
        bytes.len() < 3 * (65536 + 300_000),
        "{} bytes kept",
        bytes.len()
    );
    let kept = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    check_counter_text("kept segments", &bytes, N - kept, kept);
    let mut rpc = d.rpc();
    let r = rpc.call(
        "logs",
        json!({"names": ["small"], "from_seq": 0, "lines": 10}),
    );
    assert_eq!(
        r["result"]["missed"],
        json!([{"process": "small", "count": N - kept}])
    );
    assert_eq!(r["result"]["lines"][0]["seq"], N - kept);
}

brtest!(
    daemon_restart_continues_sequence_numbers,
    Config::new().process(
        "runs",
        Proc::sh(r#"for i in $(seq 1 1000); do echo "run $$ line $i"; done"#).restart("never"),
    ),
    |d| {
        let first = wait_exited_with_lines(&d, "runs", 1000);
        d.restart_daemon();
        // Counters start anew with the daemon.
        let second = wait_exited_with_lines(&d, "runs", 1000);
        assert_eq!(
            first["generation"], second["generation"],
            "a new daemon counts anew"
        );
        let mut rpc = d.rpc();
        let r = rpc.call(
            "logs",
            json!({"names": ["runs"], "from_seq": 0, "lines": 5000}),
        );
        let lines = r["result"]["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 2000, "{r}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["seq"], i as u64);
            assert!(
                l["text"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(" line {}", i % 1000 + 1)),
                "{l}"
            );
        }
        // The first run's lines come from disk and keep their pid.
        assert_ne!(lines[0]["pid"], lines[1000]["pid"]);
        let tail = d.ctl_ok(&["logs", "-n", "1", "runs"]);
        assert!(tail.ends_with(" line 1000\n"), "{tail}");
    }
);

/// Starts `follow` on a raw socket with a tiny receive buffer and does not read from it.
fn stalled_follower(socket: &Path, name: &str) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    let mut w = s.try_clone().unwrap();
    writeln!(
        w,
        r#"{{"jsonrpc":"2.0","id":1,"method":"follow","params":{{"names":["{name}"]}}}}"#
    )
    .unwrap();
    s
}

/// A follower that reads nothing holds up no one: the producer writes its million lines to
/// the end (were capture waiting for the follower, the producer would block on its full pipe
/// and never exit), and the follower, once it reads, gets every line, backfilled from disk.
#[test]
fn stalled_follower_slows_nobody_and_is_backfilled_across_rotations() {
    const N: u64 = 1_000_000;
    let d = Daemon::start(
        &Config::new().process(
            "million",
            counter(N)
                .autostart(false)
                .restart("never")
                .logs("max_bytes", "1MiB")
                .logs("max_files", 1000),
        ),
    );
    // A first run, so the follower below starts in the middle of the history.
    d.ctl_ok(&["start", "million"]);
    wait_exited_with_lines(&d, "million", N);

    // Now with a follower that reads nothing while 1M lines go by.
    let stalled = stalled_follower(&d.socket, "million");
    // A live follower too: it must not be held up by the stalled one.
    // It starts after the first run's lines, even if it subscribes late.
    let after_first = rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let mut live = d
        .ctl_cmd(&["logs", "-f", "--since", &after_first, "million"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let live_out = BufReader::new(live.stdout.take().unwrap());
    wait_for("the stalled follower to be subscribed", T, || {
        // Its subscription reply is queued on its socket: it is in place.
        let mut b = [0u8; 1];
        use nix::sys::socket::MsgFlags;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stalled);
        nix::sys::socket::recv(fd, &mut b, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)
            .ok()
            .filter(|n| *n > 0)
    });
    d.ctl_ok(&["start", "million"]);
    // The counters are per daemon run: both runs. The follower has read nothing yet.
    let s = wait_exited_with_lines(&d, "million", 2 * N);
    // Every line of both runs is on disk, in order.
    let bytes = disk_bytes(&d.log_dir, "million");
    let half = bytes.len() / 2;
    check_counter_text("first run", &bytes[..half], 0, N);
    check_counter_text("second run", &bytes[half..], 0, N);
    assert!(s["logs"]["rotations"].as_u64().unwrap() >= 10, "{s}");

    // The live follower got the second run, in order (at least until we look).
    let mut live_lines = live_out.lines();
    for i in 0..N {
        let l = live_lines.next().expect("live follower line").unwrap();
        assert_eq!(l, format!("L{i:07}"));
    }
    let _ = live.kill();
    let _ = live.wait();

    // The stalled follower wakes up: every line of the second run, backfilled from disk
    // (the ring held only the last few thousand), or an exact missed count (none here:
    // retention keeps them all).
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stalled);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(r#""subscription""#), "{line}");
    let mut next = N;
    while next < 2 * N {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        assert!(!line.contains(r#""method":"missed""#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let p = &v["params"];
        assert_eq!(p["seq"], next, "{line}");
        assert_eq!(p["text"], format!("L{:07}", next - N));
        next += 1;
    }
    // It was far behind the ring (which holds some 20,000 of these lines) and read from disk.
    let s = d.state_of("million");
    assert!(
        s["logs"]["follower_lag_max"].as_u64().unwrap() > 500_000,
        "{s}"
    );
    assert_eq!(s["logs"]["follower_missed"], 0, "{s}");
}

/// Writes a segment + index in the documented format (docs/logs.md).
fn write_segment(
    data: &Path,
    first_seq: u64,
    chunks: u64,
    lines_per_chunk: u64,
    line_len: usize,
    wall0: u64,
    step_us: u64,
) -> u64 {
    let mut idx = Vec::with_capacity(48 * (chunks as usize + 1));
    let mut h = [0u8; 48];
    h[0..8].copy_from_slice(b"BRMLIDX1");
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[12..16].copy_from_slice(&65536u32.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h[24..32].copy_from_slice(&wall0.to_le_bytes());
    idx.extend_from_slice(&h);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(data).unwrap());
    let mut chunk = vec![b'x'; lines_per_chunk as usize * line_len];
    for l in 0..lines_per_chunk as usize {
        chunk[l * line_len] = b'L';
        chunk[(l + 1) * line_len - 1] = b'\n';
    }
    let mut seq = first_seq;
    let mut offset = 0u64;
    for _ in 0..chunks {
        for l in 0..lines_per_chunk as usize {
            let num = format!("{:012}", seq + l as u64);
            chunk[l * line_len + 1..l * line_len + 13].copy_from_slice(num.as_bytes());
        }
        f.write_all(&chunk).unwrap();
        let wall = wall0 + (seq - first_seq) / lines_per_chunk * step_us;
        let mut r = [0u8; 48];
        r[0..8].copy_from_slice(&seq.to_le_bytes());
        r[8..16].copy_from_slice(&offset.to_le_bytes());
        r[16..24].copy_from_slice(&wall.to_le_bytes());
        r[32..36].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        r[36..40].copy_from_slice(&(lines_per_chunk as u32).to_le_bytes());
        r[40..44].copy_from_slice(&4242u32.to_le_bytes());
        idx.extend_from_slice(&r);
        offset += chunk.len() as u64;
        seq += lines_per_chunk;
    }
    f.flush().unwrap();
    let mut p = data.as_os_str().to_owned();
    p.push(".idx");
    std::fs::write(p, idx).unwrap();
    seq
}

#[test]
fn since_on_a_1gib_history_answers_from_the_index() {
    const SEGS: u64 = 8;
    const CHUNKS: u64 = 512; // per segment, 256 KiB each: 1 GiB in all
    const LPC: u64 = 2048; // lines of 128 bytes per chunk
    const STEP: u64 = 100_000; // 100 ms between chunks
    // The indexes (8 x 24 KiB) and a few 256 KiB chunks; a scan would read hundreds of MiB.
    const MAX_READ: u64 = 16 << 20;
    let d = Daemon::start(
        &Config::new().process(
            "hist",
            Proc::new(["/bin/true"])
                .autostart(false)
                .logs("max_bytes", "2GiB")
                .logs("max_files", 100),
        ),
    );
    // brummerd already created an empty active segment; replace it with the history (the
    // process is not running, nothing writes), then restart brummerd so it picks it up.
    let mut d = d;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let wall0 = now - SEGS * CHUNKS * STEP - 60_000_000;
    let mut seq = 0;
    for s in 0..SEGS {
        let data = if s + 1 == SEGS {
            d.log_dir.join("hist.log")
        } else {
            d.log_dir.join(format!("hist.log.{seq:020}"))
        };
        seq = write_segment(&data, seq, CHUNKS, LPC, 128, wall0 + seq / LPC * STEP, STEP);
    }
    let total = seq;
    assert_eq!(total * 128, 1 << 30);
    d.restart_daemon();

    // A window in the middle of the 6th segment: chunks 2600 and 2601 (every line of a
    // chunk has the chunk's time). `-n` counts back from the window's newest line.
    let chunk = 2600u64;
    let since = wall0 + chunk * STEP;
    let until = since + STEP;
    let before = bytes_read(d.pid());
    let out = d.ctl_ok(&[
        "--json",
        "logs",
        "--since",
        &rfc3339(since),
        "--until",
        &rfc3339(until),
        "-n",
        "100",
        "hist",
    ]);
    let read = bytes_read(d.pid()) - before;
    let lines = ndjson(&out);
    assert_eq!(lines.len(), 100);
    let first = (chunk + 2) * LPC - 100;
    assert_eq!(lines[0]["seq"], first);
    assert_eq!(lines[99]["seq"], first + 99);
    assert_eq!(lines[0]["time_us"], until);
    assert_eq!(lines[0]["pid"], 4242);
    assert!(
        lines[0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("L{first:012}x"))
    );
    // Through the index: brummerd read the indexes and a chunk or two, not the history.
    assert!(
        read < MAX_READ,
        "--since made brummerd read {read} bytes of a {} byte history",
        total * 128
    );

    // --since alone: the newest lines of the history, also without reading it all.
    let before = bytes_read(d.pid());
    let out = d.ctl_ok(&[
        "--json",
        "logs",
        "--since",
        &rfc3339(since),
        "-n",
        "3",
        "hist",
    ]);
    let read = bytes_read(d.pid()) - before;
    let seqs: Vec<u64> = ndjson(&out)
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [total - 3, total - 2, total - 1]);
    assert!(read < MAX_READ, "--since -n 3 read {read} bytes");

    // --until: the last lines before a time, also through the index.
    let until = wall0 + 1000 * STEP;
    let before = bytes_read(d.pid());
    let out = d.ctl_ok(&[
        "--json",
        "logs",
        "--until",
        &rfc3339(until),
        "-n",
        "5",
        "hist",
    ]);
    let read = bytes_read(d.pid()) - before;
    let lines = ndjson(&out);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4]["seq"], 1001 * LPC - 1);
    assert!(
        read < MAX_READ,
        "--until made brummerd read {read} bytes of a {} byte history",
        total * 128
    );

    // Sequence numbers go on after the history.
    let s = d.state_of("hist");
    assert_eq!(s["logs"]["lines"], 0);
    d.ctl_ok(&["start", "hist"]);
    let mut rpc = d.rpc();
    let r = rpc.call("logs", json!({"names": ["hist"], "lines": 1}));
    assert_eq!(r["result"]["lines"][0]["seq"], total - 1);
}

fn rfc3339(us: u64) -> String {
    // Days-from-civil inverse (Howard Hinnant), UTC.
    let secs = (us / 1_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

#[test]
fn odd_bytes_and_a_1mib_line_survive_byte_exact_and_print_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let payload = tmp.path().join("payload");
    let mut bytes = b"caf\xe9 \x1b]0;pwned\x07 \x1b[2J\x1b[31mred\x1b[0m \xff\xfe end\n".to_vec();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    bytes.extend_from_slice(&big);
    bytes.push(b'\n');
    bytes.extend_from_slice(b"last\n");
    std::fs::write(&payload, &bytes).unwrap();
    let d = Daemon::start(&Config::new().process(
        "odd",
        Proc::new(["/bin/cat".to_owned(), payload.display().to_string()]).restart("never"),
    ));
    // 1 MiB in 64 KiB pieces: 16 records, plus the two short lines.
    wait_exited_with_lines(&d, "odd", 18);
    assert_eq!(
        disk_bytes(&d.log_dir, "odd"),
        bytes,
        "disk log is not byte-exact"
    );

    let out = d.ctl_ok(&["--json", "logs", "odd"]);
    let lines = ndjson(&out);
    assert_eq!(lines.len(), 18);
    assert_eq!(lines[0]["lossy"], true);
    let joined: String = lines[1..17]
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined.as_bytes(), &big[..]);
    assert!(lines[1..16].iter().all(|l| l["partial"] == true));

    // On a terminal (script(1) gives brummerctl a pty): no raw control bytes from the
    // program reach it; colours are kept only as SGR, the rest is shown escaped.
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --socket {} logs -n 1 -t odd --grep caf",
            bin("brummerctl").display(),
            d.socket.display()
        ))
        .arg("/dev/null")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !out.stdout.contains(&0x07),
        "BEL reached the terminal: {text:?}"
    );
    assert!(
        !text.contains("\x1b]"),
        "OSC reached the terminal: {text:?}"
    );
    assert!(
        !text.contains("\x1b[2J"),
        "clear-screen reached the terminal: {text:?}"
    );
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text:?}");
    assert!(text.contains("caf\u{fffd}"), "{text:?}");
    assert!(text.contains("red"), "{text:?}");
}

brtest!(
    scanners_publish_urls_and_errors_with_line_seq,
    Config::new()
        .process(
            "dev",
            Proc::sh(
                r"echo starting; printf '  Local:   \033[36mhttp://localhost:\033[1m5173\033[22m/\033[39m\n'; echo 'again http://localhost:5173/'; echo 'ERROR: db down'; echo 'fine'; exec sleep 1000",
            )
            .autostart(false),
        )
        .process(
            "quiet",
            Proc::sh("echo 'http://example.com/ ERROR'; exec sleep 1000")
                .autostart(false)
                .logs("scan", false),
        ),
    |d| {
    let mut events = d.events();
    // quiet's line is in its ring before dev writes: the scanner pass that finds dev's lines
    // would find quiet's too, were quiet scanned.
    d.ctl_ok(&["start", "quiet"]);
    wait_for("quiet's line", T, || {
        (d.state_of("quiet")["logs"]["lines"] == 1).then_some(())
    });
    d.ctl_ok(&["start", "dev"]);
    let evs = events.until(T, |e| e["type"] == "error-detected");
    let of_type = |t: &str| -> Vec<Value> {
        evs.iter().filter(|e| e["type"] == t).cloned().collect()
    };
    let (urls, errors) = (of_type("url-detected"), of_type("error-detected"));
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert_eq!(urls[0]["process"], "dev");
    assert_eq!(urls[0]["url"], "http://localhost:5173/");
    assert_eq!(urls[0]["line_seq"], 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["line"], "ERROR: db down");
    assert_eq!(errors[0]["line_seq"], 3);
    let s = d.state_of("dev");
    assert_eq!(s["urls"], json!(["http://localhost:5173/"]));
    let text = d.ctl_ok(&["status"]);
    assert!(text.contains("http://localhost:5173/"), "{text}");
    let q = d.state_of("quiet");
    assert_eq!(q["urls"], json!([]));
    assert_eq!(q["logs"]["scanned"], 0);
});

/// The scanners' worst case, a flood in which every line has a URL and an error word: the
/// capture keeps every line, and the scanner accounts for each (looked at it, or counted it
/// as skipped when it fell behind). That the scanner costs capture no throughput is a
/// performance property: bench/ measures it, a test cannot without a wall-clock bound.
#[test]
fn scanner_accounts_for_every_line_of_a_flood() {
    const N: u64 = 1_000_000;
    const PROG: &str = r#"
import sys
n = int(sys.argv[1])
o = sys.stdout.buffer
for c in range(0, n, 8192):
    o.write(b"".join(b"ERROR %07d at http://localhost:%d/x\n" % (i, i % 50) for i in range(c, min(n, c + 8192))))
o.flush()
"#;
    let flood = |scan: bool| {
        Proc::python(PROG)
            .arg(N.to_string())
            .autostart(false)
            .restart("never")
            .logs("scan", scan)
            .logs("max_bytes", "1GiB")
    };
    let d = Daemon::start(
        &Config::new()
            .process("off", flood(false))
            .process("on", flood(true)),
    );
    d.ctl_ok(&["start", "off"]);
    wait_exited_with_lines(&d, "off", N);
    d.ctl_ok(&["start", "on"]);
    wait_exited_with_lines(&d, "on", N);
    // Every line reached the disk, and the scanner accounts for every line exactly: it
    // either looked at it or counted it as skipped.
    let disk = disk_bytes(&d.log_dir, "on");
    assert_eq!(disk.iter().filter(|b| **b == b'\n').count() as u64, N);
    let s = wait_for("the scanner to account for every line", T, || {
        let s = d.state_of("on");
        let l = &s["logs"];
        (l["scanned"].as_u64()? + l["scanner_skips"].as_u64()? == N).then_some(s)
    });
    eprintln!("scanner: {}", s["logs"]);
    assert_eq!(s["urls"].as_array().unwrap().len(), 32);
    // scan = false: the same flood, never looked at.
    let off = d.state_of("off");
    assert_eq!(off["logs"]["scanned"], 0, "{off}");
    assert_eq!(off["urls"], json!([]), "{off}");
}
