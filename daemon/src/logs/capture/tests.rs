//! The capture task's fairness on its log thread, against real pipes.

use super::Source;
use crate::config::{CommandSpec, ProcessDef};
use crate::logs::LogPlane;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One line of the flood: 64 bytes with its newline.
const LINE: &[u8] = b"flood flood flood flood flood flood flood flood flood flood flo\n";

/// A pipe as brummerd makes a child's output pipe: the read end non-blocking, 1 MiB.
fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let _ = rustix::pipe::fcntl_setpipe_size(r.as_fd(), 1024 * 1024);
    rustix::fs::fcntl_setfl(r.as_fd(), rustix::fs::OFlags::NONBLOCK).expect("O_NONBLOCK");
    (r, w)
}

/// A child run's output as the capture task gets it, and the write ends the child would
/// hold (stdout, stderr).
fn child(pid: u32) -> (Source, OwnedFd, OwnedFd) {
    let (stdout, out_w) = pipe();
    let (stderr, err_w) = pipe();
    let source = Source {
        stdout,
        stderr,
        pid,
        generation: 1,
    };
    (source, out_w, err_w)
}

fn def(name: &str) -> ProcessDef {
    ProcessDef::with_defaults(name, CommandSpec::Argv(vec!["true".into()]))
}

/// A program that floods its pipe must not hold back the other programs of its log
/// thread: a quiet program's last line and the end of its pipes are taken after a bounded
/// amount of the flood, not after the flood's task has run dozens of turns in a row (the
/// runtime collects I/O events only between task turns, and a task that is always
/// runnable delayed them by seconds). Measured in flood lines taken while the quiet
/// program's end waited, so the bound does not depend on the machine's speed.
#[tokio::test]
async fn a_flood_does_not_hold_back_another_programs_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Arc::new(LogPlane::start(dir.path().to_path_buf(), 1 << 20).expect("log plane"));
    let (flood_log, flood) = plane.open(&def("flood"));
    // Processes are dealt to the log threads in turn: open until one shares the flood's.
    let (quiet_log, quiet) = (0..16)
        .map(|i| plane.open(&def(&format!("quiet{i}"))))
        .find(|(log, _)| log.thread.index == flood_log.thread.index)
        .expect("a program on the flood's log thread");

    let (source, out_w, err_w) = child(1);
    drop(err_w);
    flood.attach(source).expect("attach the flood");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::File::from(out_w);
            let block = LINE.repeat(16 * 1024);
            while !stop.load(Ordering::Relaxed) {
                if w.write_all(&block).is_err() {
                    break;
                }
            }
        })
    };
    // The flood is on: its pipe stays full while the capture reads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while flood_log.ring.next_seq() < 200_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood never reached the ring"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (source, q_out_w, q_err_w) = child(2);
    quiet.attach(source).expect("attach the quiet program");
    std::fs::File::from(q_out_w)
        .write_all(b"last words\n")
        .expect("write the quiet line");
    drop(q_err_w);
    let before = flood_log.ring.next_seq();
    let ended = quiet.settle(1, Duration::from_secs(120)).await;
    let during = flood_log.ring.next_seq() - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("flood writer");
    assert!(ended, "the quiet program's pipes never ended");
    assert_eq!(quiet_log.ring.next_seq(), 1, "its last line is in its ring");
    // A turn reads at most READS_PER_TURN chunks of READ_CHUNK bytes from a pipe; the
    // quiet program must wait no more than a few dozen of the flood's turns (slack for
    // this test's own thread being scheduled late on a busy machine).
    let turn = (super::READS_PER_TURN * super::READ_CHUNK / LINE.len()) as u64;
    assert!(
        during <= 64 * turn,
        "the quiet program's end waited for {during} flood lines ({} turns)",
        during / turn
    );
}
