//! The disk log under faults (issue 17): a full disk, unwritable files, a log folder deleted
//! while brummerd writes it. Each time brummerd keeps capturing, keeps the lines in memory,
//! says what happened (`status`, its own log), and when the disk works again writes the
//! lines its ring still holds, so the disk log has no hole that memory could have filled;
//! lines the ring overwrote meanwhile are counted and reported as missed, exactly.
//!
//! The program writes numbered lines of 100 bytes when told to (a count in a file, then
//! SIGUSR1), so each test knows every line's sequence number and text.

use brummer_tests::{Config, Daemon, Proc, T, ndjson, require_root, run_ok, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes lines `L%07d x..x` (100 bytes with the newline), 10 per write, up to the count in
/// `argv[1]`'s file, on each SIGUSR1. Says it is ready by creating `argv[2]`.
const EMITTER: &str = r#"
import signal, sys
want_path, ready = sys.argv[1], sys.argv[2]
n = 0
def emit(*_):
    global n
    want = int(open(want_path).read())
    out = sys.stdout.buffer
    while n < want:
        k = min(10, want - n)
        out.write(b"".join(b"L%07d %s\n" % (i, b"x" * 91) for i in range(n, n + k)))
        out.flush()
        n += k
signal.signal(signal.SIGUSR1, emit)
open(ready, "w").close()
while True:
    signal.pause()
"#;

const RING: i64 = 64 * 1024;
/// Lines that fill whole pages of `web.log` exactly (100 pages of 4 KiB): a full tmpfs
/// then has no room left in the file's last page either.
const PAGE_LINES: u64 = 4096;

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("brummer-tmpfs-")
            .tempdir()
            .expect("tempdir");
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0750"))
                .arg("brummer-test")
                .arg(dir.path()),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free byte with a file of its own; returns the file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.path().join("filler");
        let mut f = std::fs::File::create(&p).expect("filler");
        let block = [0u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", p.display()),
            }
        }
        // Partial pages too: single bytes until nothing more fits.
        while let Ok(1) = f.write(&[0u8]) {}
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// The emitter, with its files in the daemon's folder, and the daemon on `log_dir`.
struct Setup {
    d: Daemon,
    want: PathBuf,
}

impl Setup {
    fn start(log_dir: &Path) -> Setup {
        // Large: no rotation unless a test asks for it.
        Setup::with_max_bytes(log_dir, "1GiB")
    }

    fn with_max_bytes(log_dir: &Path, max_bytes: impl Into<toml::Value>) -> Setup {
        // The folder is made before the config, so the daemon can be pointed at it.
        let files = tempfile::Builder::new()
            .prefix("brummer-emitter-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let want = files.join("want");
        let ready = files.join("ready");
        std::fs::write(&want, "0").unwrap();
        let d = Daemon::start(
            &Config::new().ring_bytes(RING).log_dir(log_dir).process(
                "web",
                Proc::python(EMITTER)
                    .arg(want.display().to_string())
                    .arg(ready.display().to_string())
                    .logs("max_bytes", max_bytes),
            ),
        );
        wait_for("the emitter to be ready", T, || {
            ready.exists().then_some(())
        });
        Setup { d, want }
    }

    /// Has the program write lines up to `total` and waits until all are captured.
    fn emit_to(&self, total: u64) {
        self.signal_to(total);
        wait_for(&format!("{total} lines captured"), T, || {
            (self.logs()["lines"] == total).then_some(())
        });
    }

    /// Has the program write lines up to `total`.
    fn signal_to(&self, total: u64) {
        std::fs::write(&self.want, total.to_string()).unwrap();
        let pid = self.d.pid_of("web");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .expect("SIGUSR1");
    }

    /// The `logs` counters of `web` in `status --json`.
    fn logs(&self) -> Value {
        self.d.state_of("web")["logs"].clone()
    }

    /// Waits until the disk log is healthy and holds every captured line it can.
    fn wait_disk_caught_up(&self) -> Value {
        wait_for("the disk log to be written again", T, || {
            let l = self.logs();
            (l["disk_failing"].is_null() && l["disk_pending"] == 0).then_some(l)
        })
    }
}

fn line_text(n: u64) -> String {
    format!("L{n:07} {}", "x".repeat(91))
}

/// The numbers of the lines in `web.log`, in file order; every line checked whole.
fn disk_numbers(log_dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log_dir.join("web.log")).expect("web.log");
    text.lines()
        .map(|l| {
            let n: u64 = l[1..8].parse().unwrap_or_else(|_| panic!("bad line {l:?}"));
            assert_eq!(l, line_text(n), "line {n} on disk");
            n
        })
        .collect()
}

/// Every line `logs` returns is the line of that number, at seq = number; returns the
/// numbers and the stderr of brummerctl (where missed lines are reported).
fn logs_all(s: &Setup, total: u64) -> (Vec<u64>, String) {
    let out =
        s.d.ctl(&["--json", "logs", "-n", &total.to_string(), "web"]);
    assert!(out.status.success(), "{out:?}");
    let lines = ndjson(&String::from_utf8_lossy(&out.stdout));
    let nums = lines
        .iter()
        .map(|l| {
            let seq = l["seq"].as_u64().unwrap();
            assert_eq!(l["text"], line_text(seq), "logs line at seq {seq}");
            seq
        })
        .collect();
    (nums, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `lines` on a 1 MiB tmpfs's disk log (whole pages, so nothing is left in the file's last
/// page either), then the tmpfs filled: the next line finds no space. Returns the tmpfs,
/// the log folder, the setup and the filler file (remove it and space returns).
fn full_disk_after(lines: u64) -> (Tmpfs, PathBuf, Setup, PathBuf) {
    let fs = Tmpfs::mount("1m");
    let log_dir = fs.path().join("logs");
    let s = Setup::start(&log_dir);
    s.emit_to(lines);
    wait_for("the first lines on disk", T, || {
        (s.logs()["disk_pending"] == 0).then_some(())
    });
    let filler = fs.fill();
    (fs, log_dir, s, filler)
}

/// The disk fills up (a 1 MiB tmpfs): brummerd goes on capturing, keeps the lines in its
/// ring, and says so. Lines keep coming until the ring has overwritten some of those the
/// disk refused. When space returns, the disk log gets the lines still in the ring, right
/// after the last line it had, and the ones overwritten are counted and reported missed.
#[test]
#[ignore = "needs root"]
fn full_disk_keeps_lines_in_memory_and_writes_them_when_space_returns() {
    require_root();
    const B: u64 = PAGE_LINES;
    let (_fs, log_dir, s, filler) = full_disk_after(B);
    s.emit_to(B + 300);
    let l = wait_for("status to say the disk fails", T, || {
        let l = s.logs();
        l["disk_failing"].is_string().then_some(l)
    });
    let failing = l["disk_failing"].as_str().unwrap();
    assert!(failing.contains("No space left on device"), "{l:#}");
    assert!(failing.contains("web.log"), "{l:#}");
    assert!(l["disk_errors"].as_u64().unwrap() >= 1, "{l:#}");
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    assert_eq!(l["disk_pending"], 300, "{l:#}");
    // The refused lines are in memory: `logs` has them.
    let (nums, stderr) = logs_all(&s, 300);
    assert_eq!(nums, (B..B + 300).collect::<Vec<_>>(), "{stderr}");
    assert_eq!(disk_numbers(&log_dir), (0..B).collect::<Vec<_>>());
    let text = s.d.ctl_ok(&["status", "web"]);
    assert!(text.contains("disk log: cannot write"), "{text}");
    assert!(s.d.daemon_log().contains("disk log failing"));

    // More than the ring holds: the oldest refused lines leave memory.
    let total = B + 750;
    s.emit_to(total);
    let evicted = s.logs()["ring_evicted"].as_u64().unwrap();
    // (The ring drops whole records, runs of lines read at once: how many of the refused
    // lines go depends on how the reads fell, not on the disk.)
    assert!(
        evicted > B && evicted < total,
        "the ring (64 KiB) should have dropped some refused lines, not all: evicted {evicted}"
    );
    let lost = evicted - B;

    // Space returns: the lines still in the ring go to disk, after the last one there.
    std::fs::remove_file(&filler).unwrap();
    let l = s.wait_disk_caught_up();
    assert_eq!(l["disk_lost_lines"], lost, "{l:#}");
    let want: Vec<u64> = (0..B).chain(evicted..total).collect();
    assert_eq!(
        disk_numbers(&log_dir),
        want,
        "disk log after space returned"
    );
    // Readers: every line but the lost ones, and an exact count of those.
    let (nums, stderr) = logs_all(&s, total);
    assert_eq!(nums, want);
    assert!(
        stderr.contains(&format!("{lost} lines of web are no longer kept")),
        "{stderr}"
    );
    // From here on lines go straight to disk again; status is quiet about the disk.
    s.emit_to(total + 10);
    s.wait_disk_caught_up();
    assert_eq!(disk_numbers(&log_dir).last(), Some(&(total + 9)));
    assert!(s.d.daemon_log().contains("disk log writable again"));
    let text = s.d.ctl_ok(&["status", "web"]);
    assert!(!text.contains("disk log:"), "{text}");
    assert!(
        text.contains(&format!("{lost} lines never reached the disk log")),
        "{text}"
    );
    drop(s);
}

/// A re-exec while the disk is full: the next image is handed the pipes and where the
/// numbering goes on, not the ring, so the lines kept in memory for the disk are lost with
/// it. The old image says so, the new one counts them (`disk_lost_lines`, the same figure
/// `status` shows) and says the disk log ends before the ring; once space returns the log
/// goes on after the gap, and readers are told of it with the exact count.
#[test]
#[ignore = "needs root"]
fn a_reexec_while_the_disk_is_full_counts_and_reports_the_lines_it_could_not_keep() {
    require_root();
    const B: u64 = PAGE_LINES;
    let (_fs, log_dir, s, filler) = full_disk_after(B);
    s.emit_to(B + 300);
    wait_for("300 lines waiting for the disk", T, || {
        (s.logs()["disk_pending"] == 300).then_some(())
    });
    let pid = s.d.pid_of("web");

    s.d.ctl_ok(&["daemon-reexec"]);
    assert_eq!(s.d.pid_of("web"), pid, "the program was not restarted");
    let said = s.d.daemon_log();
    assert!(
        said.contains("lines kept in memory for it are lost with the re-exec"),
        "{said}"
    );

    std::fs::remove_file(&filler).unwrap();
    // (`lines` counts what this image captured: wait on the disk instead.)
    s.signal_to(B + 310);
    wait_for("the last line on disk", T, || {
        (disk_numbers(&log_dir).last() == Some(&(B + 309))).then_some(())
    });
    let l = s.wait_disk_caught_up();
    assert_eq!(l["disk_lost_lines"], 300, "{l:#}");
    let said = s.d.daemon_log();
    assert!(
        said.contains("disk log ends before the handed-over ring"),
        "{said}"
    );
    let want: Vec<u64> = (0..B).chain(B + 300..B + 310).collect();
    assert_eq!(disk_numbers(&log_dir), want, "disk log after the re-exec");
    let text = s.d.ctl_ok(&["status", "web"]);
    assert!(
        text.contains("300 lines never reached the disk log"),
        "{text}"
    );
    let (nums, stderr) = logs_all(&s, B + 310);
    assert_eq!(nums, want);
    assert!(
        stderr.contains("300 lines of web are no longer kept"),
        "{stderr}"
    );
    drop(s);
}

/// The log folder made unwritable (`chattr +i`, which holds for root too): brummerd's open
/// files still take writes (permissions are checked when a file is opened), so no line is
/// lost, but a rotation cannot make its new files. The active segment grows past
/// `max_bytes` meanwhile, status says why, and the first rotation after the folder is
/// writable again succeeds.
#[test]
#[ignore = "needs root"]
fn unwritable_log_dir_keeps_writing_and_rotates_once_writable_again() {
    require_root();
    let fs = Tmpfs::mount("16m");
    let log_dir = fs.path().join("logs");
    // 50 lines (5,000 bytes) stay below max_bytes, 60 are above.
    let s = Setup::with_max_bytes(&log_dir, 6000);
    s.emit_to(50);
    wait_for("the first lines on disk", T, || {
        (s.logs()["disk_pending"] == 0).then_some(())
    });
    let chattr = |flag: &str| run_ok(Command::new("chattr").arg(flag).arg(&log_dir));
    chattr("+i");
    s.emit_to(200);
    let l = wait_for("status to say rotation fails", T, || {
        let l = s.logs();
        l["disk_failing"].is_string().then_some(l)
    });
    let text = l["disk_failing"].as_str().unwrap();
    assert!(text.contains("cannot rotate web.log"), "{l:#}");
    assert!(text.contains("Operation not permitted"), "{l:#}");
    assert!(l["disk_errors"].as_u64().unwrap() >= 1, "{l:#}");
    assert_eq!(l["rotations"], 0, "{l:#}");
    let l = wait_for("every line on disk", T, || {
        let l = s.logs();
        (l["disk_pending"] == 0).then_some(l)
    });
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    assert_eq!(disk_numbers(&log_dir), (0..200).collect::<Vec<_>>());
    assert!(s.d.daemon_log().contains("cannot rotate disk log"));

    chattr("-i");
    s.emit_to(210);
    let l = s.wait_disk_caught_up();
    assert_eq!(l["rotations"], 1, "{l:#}");
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    let (nums, stderr) = logs_all(&s, 210);
    assert_eq!(nums, (0..210).collect::<Vec<_>>(), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    drop(s);
}

/// The log folder is deleted while brummerd writes it (`rm -rf`): brummerd notices (the
/// file it writes is no longer linked), makes the folder again with the same mode, and
/// starts a new `web.log` with the lines it still holds since before the deletion, so
/// nothing written after the deletion is lost.
#[test]
fn deleted_log_dir_is_made_again_with_the_lines_still_in_memory() {
    let root = tempfile::tempdir().unwrap();
    let log_dir = root.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let s = Setup::start(&log_dir);
    s.emit_to(100);
    wait_for("the first lines on disk", T, || {
        (s.logs()["disk_pending"] == 0).then_some(())
    });
    std::fs::remove_dir_all(&log_dir).unwrap();
    // brummerd looks at most once a second, at a write: lines keep coming until it did.
    let mut total = 100;
    wait_for("web.log to be made again", T, || {
        total += 1;
        s.emit_to(total);
        log_dir.join("web.log").exists().then_some(())
    });
    let l = s.wait_disk_caught_up();
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    let on_disk = disk_numbers(&log_dir);
    // A run without a hole, from at most the first line after the deletion to the last.
    let first = on_disk[0];
    assert!(
        first <= 100,
        "lines after the deletion missing: from {first}"
    );
    assert_eq!(on_disk, (first..total).collect::<Vec<_>>());
    let mode = std::fs::metadata(&log_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    assert!(
        s.d.daemon_log().contains("was deleted"),
        "{}",
        s.d.daemon_log()
    );
    // Lines go on to the new file.
    s.emit_to(total + 5);
    s.wait_disk_caught_up();
    assert_eq!(disk_numbers(&log_dir).last(), Some(&(total + 4)));
    drop(s);
}

/// Rotation needs new files: with none possible (a full disk), the active segment stays
/// and grows, status says why, and the next rotation after space returns succeeds.
#[test]
#[ignore = "needs root"]
fn rotation_on_a_full_disk_keeps_the_active_segment_until_space_returns() {
    require_root();
    let fs = Tmpfs::mount("1m");
    let log_dir = fs.path().join("logs");
    // 50 lines (5,000 bytes, two pages) stay below max_bytes; 60 are above, and still
    // fit in the file's second page.
    let s = Setup::with_max_bytes(&log_dir, 6000);
    s.emit_to(50);
    wait_for("the first lines on disk", T, || {
        (s.logs()["disk_pending"] == 0).then_some(())
    });
    let rotations = s.logs()["rotations"].as_u64().unwrap();
    // Room for data in the active file's last pages, none for a new file's first page.
    let filler = fs.fill();
    s.emit_to(60);
    let l = wait_for("status to say rotation fails", T, || {
        let l = s.logs();
        l["disk_failing"].is_string().then_some(l)
    });
    let text = l["disk_failing"].as_str().unwrap();
    assert!(text.contains("cannot rotate web.log"), "{l:#}");
    assert!(text.contains("No space left on device"), "{l:#}");
    // The lines themselves went to the active segment.
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    assert_eq!(disk_numbers(&log_dir), (0..60).collect::<Vec<_>>());
    std::fs::remove_file(&filler).unwrap();
    s.emit_to(200);
    let l = s.wait_disk_caught_up();
    assert!(l["rotations"].as_u64().unwrap() > rotations, "{l:#}");
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    let (nums, stderr) = logs_all(&s, 200);
    assert_eq!(nums, (0..200).collect::<Vec<_>>(), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    drop(s);
}

/// A log folder that takes no files when the program is added (`chattr +i`): its disk log
/// cannot be opened, the lines stay in memory, and once the folder is writable the log is
/// opened and gets them, from the first.
#[test]
#[ignore = "needs root"]
fn log_dir_unwritable_at_start_gets_the_lines_once_writable() {
    require_root();
    let fs = Tmpfs::mount("16m");
    let log_dir = fs.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let chattr = |flag: &str| run_ok(Command::new("chattr").arg(flag).arg(&log_dir));
    chattr("+i");
    let s = Setup::start(&log_dir);
    s.emit_to(100);
    let l = s.logs();
    let text = l["disk_failing"].as_str().expect("disk_failing");
    assert!(text.contains("cannot open"), "{l:#}");
    assert!(l["disk_errors"].as_u64().unwrap() >= 1, "{l:#}");
    assert!(text.contains("Operation not permitted"), "{l:#}");
    assert_eq!(l["disk_pending"], 100, "{l:#}");
    assert!(!log_dir.join("web.log").exists());
    chattr("-i");
    let l = s.wait_disk_caught_up();
    assert_eq!(l["disk_lost_lines"], 0, "{l:#}");
    assert_eq!(disk_numbers(&log_dir), (0..100).collect::<Vec<_>>());
    drop(s);
}
