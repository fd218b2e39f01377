//! Log capture: one task per process drains its children's stdout and stderr pipes, cuts
//! the bytes into lines, pushes each line into the process's `LogRing` (the task owns the
//! ring's only `RingWriter`) and appends the same bytes to the active disk segment
//! `NAME.log` plus one index record per write (`disklog`), rotating between two writes.
//!
//! The task outlives any one child: a restarted child's pipes are handed over on a channel
//! while a previous child's pipes (held open by a lingering grandchild) may still be
//! draining, so every source is polled in one place. It never waits for a reader: rings
//! overwrite, followers are woken once per chunk, and the only thing that can slow it is
//! the disk write of the same bytes.

use crate::disklog::{ChunkMeta, DiskLog};
use crate::entry::ProcessEntry;
use brummer_core::RingWriter;
use brummer_proto::Stream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Bytes read from a pipe per system call. Larger reads amortise the wake-up; 256 KiB keeps
/// up with a producer writing 64 KiB chunks into a 1 MiB pipe.
const READ_CHUNK: usize = 256 * 1024;

/// Reads done for one pipe before the others get their turn, so one flooding child cannot
/// starve the other stream.
const READS_PER_TURN: usize = 8;

/// The output pipes of one child run.
pub struct Source {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub pid: u32,
    pub generation: u32,
}

/// The supervisor task's end of the capture task.
#[derive(Clone)]
pub struct CaptureHandle {
    tx: mpsc::Sender<Source>,
}

impl CaptureHandle {
    /// Hands a new child's pipes to the capture task. The channel has room for a few runs;
    /// a full channel means the task is gone, and the pipes are dropped with the error.
    pub fn attach(&self, source: Source) -> Result<(), &'static str> {
        self.tx
            .try_send(source)
            .map_err(|_| "log capture task is not accepting output")
    }
}

/// Clock for line timestamps: a process-wide monotonic origin.
fn mono_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Starts the capture task of one process.
pub fn spawn_capture(
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<DiskLog>,
    origin: Instant,
) -> CaptureHandle {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(run(entry, writer, disk, rx, origin));
    CaptureHandle { tx }
}

struct Pipe {
    fd: AsyncFd<OwnedFd>,
    stream: Stream,
    pid: u32,
    generation: u32,
    /// Bytes of a line whose newline has not come yet.
    carry: Vec<u8>,
}

struct Sink {
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<DiskLog>,
    origin: Instant,
    /// Disk write failed last time; cleared (and logged) when writes succeed again.
    disk_failing: bool,
}

async fn run(
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<DiskLog>,
    mut rx: mpsc::Receiver<Source>,
    origin: Instant,
) {
    let mut sink = Sink {
        entry,
        writer,
        disk,
        origin,
        disk_failing: false,
    };
    let mut pipes: Vec<Pipe> = Vec::new();
    // Allocated at the first readable pipe: a program that never writes (or never starts)
    // costs no read buffer.
    let mut buf: Vec<u8> = Vec::new();
    let mut rx_open = true;
    loop {
        if !rx_open && pipes.is_empty() {
            break;
        }
        std::future::poll_fn(|cx| {
            let mut progressed = false;
            while rx_open {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(src)) => {
                        for (fd, stream) in [(src.stdout, Stream::Stdout), (src.stderr, Stream::Stderr)] {
                            match crate::fd::watch_readable(fd) {
                                Ok(fd) => pipes.push(Pipe {
                                    fd,
                                    stream,
                                    pid: src.pid,
                                    generation: src.generation,
                                    carry: Vec::new(),
                                }),
                                Err(e) => tracing::error!(process = %sink.entry.name, cause = %e, "cannot watch output pipe"),
                            }
                        }
                        progressed = true;
                    }
                    Poll::Ready(None) => {
                        rx_open = false;
                        progressed = true;
                    }
                    Poll::Pending => break,
                }
            }
            let mut i = 0;
            while i < pipes.len() {
                match drain(&mut pipes[i], &mut buf, &mut sink, cx) {
                    Drained::Open(n) => {
                        progressed |= n > 0;
                        i += 1;
                    }
                    Drained::Closed => {
                        let mut p = pipes.swap_remove(i);
                        sink.flush_carry(&mut p);
                        progressed = true;
                    }
                }
            }
            if progressed {
                sink.entry.log_notify.notify_waiters();
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    tracing::debug!(process = %sink.entry.name, "log capture ended");
}

enum Drained {
    Open(usize),
    Closed,
}

/// Reads what is available from one pipe (at most `READS_PER_TURN` reads). Registers for
/// a wake-up when the pipe runs dry.
fn drain(
    p: &mut Pipe,
    buf: &mut Vec<u8>,
    sink: &mut Sink,
    cx: &mut std::task::Context<'_>,
) -> Drained {
    let mut total = 0;
    for _ in 0..READS_PER_TURN {
        let mut guard = match p.fd.poll_read_ready(cx) {
            Poll::Ready(Ok(g)) => g,
            Poll::Ready(Err(_)) => return Drained::Closed,
            Poll::Pending => return Drained::Open(total),
        };
        if buf.is_empty() {
            buf.resize(READ_CHUNK, 0);
        }
        match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf[..]).map_err(Into::into)) {
            Ok(Ok(0)) => return Drained::Closed,
            Ok(Ok(n)) => {
                total += n;
                sink.take(p, &buf[..n]);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return Drained::Closed,
            // WouldBlock: readiness cleared by try_io; loop polls again and registers.
            Err(_would_block) => {}
        }
    }
    // More may be waiting: ask to be polled again soon without starving the others.
    cx.waker().wake_by_ref();
    Drained::Open(total)
}

impl Sink {
    /// Cuts one chunk into lines: ring records per line, one disk write for the whole run
    /// of complete lines.
    fn take(&mut self, p: &mut Pipe, data: &[u8]) {
        let wall = wall_us();
        let mono = mono_ns(self.origin);
        // Bytes of an unfinished line carried over from earlier reads (not yet on disk).
        let earlier = p.carry.len();
        let first_seq = self.writer.ring().next_seq();
        let mut start = 0;
        let mut last_nl = None;
        for nl in memchr::memchr_iter(b'\n', data) {
            if start == 0 && earlier > 0 {
                p.carry.extend_from_slice(&data[..nl]);
                self.writer
                    .push_line(p.stream, p.pid, p.generation, wall, mono, &p.carry);
            } else {
                self.writer
                    .push_line(p.stream, p.pid, p.generation, wall, mono, &data[start..nl]);
            }
            start = nl + 1;
            last_nl = Some(nl);
        }
        match last_nl {
            Some(nl) => {
                let meta = self.meta(p, first_seq, wall, mono, false);
                self.write_disk(&[&p.carry[..earlier], &data[..=nl]], meta);
                p.carry.clear();
                p.carry.extend_from_slice(&data[nl + 1..]);
            }
            None => p.carry.extend_from_slice(data),
        }
        // A line longer than the ring's record limit is cut into parts marked partial, so a
        // reader never has to wait for a newline that may never come. The limit is the
        // ring's own (less than `brummer_core::LogRing::MAX_LINE` in small rings, which would truncate).
        let max = self.writer.ring().max_payload();
        while p.carry.len() >= max {
            let part: Vec<u8> = p.carry.drain(..max).collect();
            let first_seq = self.writer.ring().next_seq();
            self.writer
                .push(p.stream, p.pid, p.generation, wall, mono, true, &part);
            let meta = self.meta(p, first_seq, wall, mono, true);
            self.write_disk(&[&part], meta);
        }
    }

    /// The chunk's index data: every line from `first_seq` up to the ring's head.
    fn meta(&self, p: &Pipe, first_seq: u64, wall: u64, mono: u64, pieces: bool) -> ChunkMeta {
        ChunkMeta {
            first_seq,
            lines: self.writer.ring().next_seq() - first_seq,
            wall_us: wall,
            mono_ns: mono,
            pid: p.pid,
            generation: p.generation,
            stream: p.stream,
            pieces,
        }
    }

    /// End of a pipe: a last line without newline is still a line.
    fn flush_carry(&mut self, p: &mut Pipe) {
        if p.carry.is_empty() {
            return;
        }
        let line = std::mem::take(&mut p.carry);
        let (wall, mono) = (wall_us(), mono_ns(self.origin));
        let first_seq = self.writer.ring().next_seq();
        self.writer
            .push_line(p.stream, p.pid, p.generation, wall, mono, &line);
        let meta = self.meta(p, first_seq, wall, mono, false);
        self.write_disk(&[&line, b"\n"], meta);
    }

    fn write_disk(&mut self, parts: &[&[u8]], meta: ChunkMeta) {
        let counters = &self.entry.counters;
        let Some(disk) = self.disk.as_mut() else {
            counters
                .disk_seq
                .store(meta.first_seq + meta.lines, Ordering::Release);
            return;
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        match disk.append(parts, &meta) {
            Ok(()) => {
                if self.disk_failing {
                    self.disk_failing = false;
                    tracing::info!(process = %self.entry.name, "disk log writable again");
                }
            }
            Err(e) => {
                counters
                    .disk_errors
                    .fetch_add(total as u64, Ordering::Relaxed);
                if !self.disk_failing {
                    self.disk_failing = true;
                    tracing::error!(process = %self.entry.name, cause = %e, "cannot write disk log; lines stay in memory only");
                }
            }
        }
        // Every line before this one is now on disk or lost to it: readers may look there.
        let next = meta.first_seq + meta.lines;
        counters.disk_seq.store(next, Ordering::Release);
        let (max_bytes, max_files) = {
            let def = self.entry.def.load();
            (def.logs.max_bytes, def.logs.max_files)
        };
        if disk.size() >= max_bytes {
            match disk.rotate(next, max_files) {
                Ok(()) => {
                    counters.rotations.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(process = %self.entry.name, cause = %e, "cannot rotate disk log");
                }
            }
        }
    }
}
