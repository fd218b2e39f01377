//! Log capture: one task per process drains its children's stdout and stderr pipes, cuts
//! the bytes into lines, pushes each line into the process's `LogRing` (the task owns the
//! ring's only `RingWriter`) and appends the same bytes to the active disk segment
//! `NAME.log` plus one index record per write (`disklog`), rotating between two writes.
//!
//! The task outlives any one child: a restarted child's pipes are handed over on a channel
//! while a previous child's pipes (held open by a lingering grandchild) may still be
//! draining, so every source is polled in one place. It never waits for a reader: rings
//! overwrite, followers are woken once per chunk, and the only thing that can slow it is
//! the disk. The disk writes run on the disk writer thread (`diskwriter`), fed in order,
//! so reading and cutting one chunk overlaps with writing the previous one; at most
//! `IN_FLIGHT` chunks per process wait for it.

use crate::disklog::{ChunkMeta, DiskLog};
use crate::diskwriter::{Batch, DiskWriter, Flight};
use crate::entry::ProcessEntry;
use brummer_core::RingWriter;
use brummer_proto::Stream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Bytes read from a pipe per system call. Larger reads amortise the wake-up; 256 KiB keeps
/// up with a producer writing 64 KiB chunks into a 1 MiB pipe.
const READ_CHUNK: usize = 256 * 1024;

/// Reads done for one pipe before the others get their turn, so one flooding child cannot
/// starve the other stream.
const READS_PER_TURN: usize = 8;

/// Chunks on their way to disk per process (one being written, one waiting). When both are
/// taken the capture task stops reading until the writer frees one: the disk slows the
/// capture exactly as much as it did when the capture task wrote itself, no more.
pub const IN_FLIGHT: usize = 2;

/// Names a process's disk log in messages to the disk writer.
static NEXT_DISK_ID: AtomicU64 = AtomicU64::new(1);

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

/// Starts the capture task of one process (and its disk writer) in `tasks`, which the
/// daemon drains at shutdown so the last lines reach the disk.
pub fn spawn_capture(
    tasks: &mut JoinSet<()>,
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<(DiskLog, DiskWriter)>,
    origin: Instant,
) -> CaptureHandle {
    let (tx, rx) = mpsc::channel(4);
    tasks.spawn(run(entry, writer, disk, rx, origin));
    CaptureHandle { tx }
}

struct Pipe {
    fd: AsyncFd<OwnedFd>,
    stream: Stream,
    pid: u32,
    generation: u32,
    /// Read buffer, allocated at the first data. It starts with the bytes of a line whose
    /// newline has not come yet (`carry` of them); reads append after them, so a line
    /// spanning two reads is contiguous for the ring and the disk.
    buf: Vec<u8>,
}

/// The capture task's end of the disk writer.
struct ToDisk {
    writer: DiskWriter,
    id: u64,
    flight: Arc<Flight>,
}

struct Sink {
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<ToDisk>,
    origin: Instant,
}

async fn run(
    entry: Arc<ProcessEntry>,
    writer: RingWriter,
    disk: Option<(DiskLog, DiskWriter)>,
    mut rx: mpsc::Receiver<Source>,
    origin: Instant,
) {
    let disk = disk.and_then(|(log, writer)| {
        let id = NEXT_DISK_ID.fetch_add(1, Ordering::Relaxed);
        let flight = Arc::new(Flight::new(IN_FLIGHT));
        match writer.open(id, entry.clone(), log, flight.clone()) {
            Ok(()) => Some(ToDisk { writer, id, flight }),
            Err(e) => {
                tracing::error!(process = %entry.name, cause = %e, "output kept in memory only");
                None
            }
        }
    });
    let mut sink = Sink {
        entry,
        writer,
        disk,
        origin,
    };
    let mut pipes: Vec<Pipe> = Vec::new();
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
                                    buf: Vec::new(),
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
                match drain(&mut pipes[i], &mut sink, cx) {
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
    // Done once the writer has written what is queued (the daemon's shutdown waits for this).
    if let Some(d) = sink.disk.take() {
        std::future::poll_fn(|cx| {
            d.flight.room.register(cx.waker());
            if d.flight.batches.load(Ordering::Acquire) == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        d.writer.close(d.id);
    }
    tracing::debug!(process = %sink.entry.name, "log capture ended");
}

enum Drained {
    Open(usize),
    Closed,
}

/// Reads what is available from one pipe (at most `READS_PER_TURN` reads). Registers for
/// a wake-up when the pipe runs dry or the disk writer has no room.
fn drain(p: &mut Pipe, sink: &mut Sink, cx: &mut std::task::Context<'_>) -> Drained {
    let mut total = 0;
    for _ in 0..READS_PER_TURN {
        if !sink.room(cx) {
            return Drained::Open(total);
        }
        let mut guard = match p.fd.poll_read_ready(cx) {
            Poll::Ready(Ok(g)) => g,
            Poll::Ready(Err(_)) => return Drained::Closed,
            Poll::Pending => return Drained::Open(total),
        };
        if p.buf.capacity() == 0 {
            p.buf = sink.buffer();
        }
        let carry = p.buf.len();
        // Into the spare capacity: pages of the buffer are touched only as data arrives.
        match guard.try_io(|fd| {
            rustix::io::read(fd.get_ref(), rustix::buffer::spare_capacity(&mut p.buf))
                .map_err(Into::into)
        }) {
            Ok(Ok(0)) => return Drained::Closed,
            Ok(Ok(n)) => {
                total += n;
                sink.take(p, carry);
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
    /// True when a batch may be handed to the disk writer; otherwise registers for the
    /// wake-up the writer sends when it finishes one.
    fn room(&self, cx: &mut std::task::Context<'_>) -> bool {
        let Some(d) = &self.disk else { return true };
        if d.flight.batches.load(Ordering::Acquire) < IN_FLIGHT {
            return true;
        }
        d.flight.room.register(cx.waker());
        // Re-check: the writer may have finished between the load and the register.
        d.flight.batches.load(Ordering::Acquire) < IN_FLIGHT
    }

    fn buffer(&self) -> Vec<u8> {
        self.disk
            .as_ref()
            .and_then(|d| d.flight.spare.pop())
            .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    /// Cuts what the last read added to `p.buf` (after `carry` bytes of an unfinished
    /// line) into lines: a ring record per line, one disk write for the run of complete
    /// lines. What follows the last newline stays at the start of the pipe's buffer.
    fn take(&mut self, p: &mut Pipe, carry: usize) {
        let wall = wall_us();
        let mono = mono_ns(self.origin);
        let data = &p.buf[..];
        let mut writes = Vec::new();
        let first_seq = self.writer.ring().next_seq();
        let mut start = 0;
        // The carried bytes hold no newline: search only the new ones.
        for nl in memchr::memchr_iter(b'\n', &data[carry..]) {
            let nl = carry + nl;
            self.writer
                .push_line(p.stream, p.pid, p.generation, wall, mono, &data[start..nl]);
            start = nl + 1;
        }
        if start > 0 {
            writes.push((0..start, self.meta(p, first_seq, wall, mono, false)));
        }
        // A line longer than the ring's record limit is cut into parts marked partial, so a
        // reader never has to wait for a newline that may never come. The limit is the
        // ring's own (less than `brummer_core::LogRing::MAX_LINE` in small rings, which would truncate).
        // A part is cut only once more of the line follows it, so a line of exactly k parts
        // gives k records however the reads split it, the same as when it came in one read.
        let max = self.writer.ring().max_payload();
        while data.len() - start > max {
            let first_seq = self.writer.ring().next_seq();
            self.writer.push(
                p.stream,
                p.pid,
                p.generation,
                wall,
                mono,
                true,
                &data[start..start + max],
            );
            writes.push((
                start..start + max,
                self.meta(p, first_seq, wall, mono, true),
            ));
            start += max;
        }
        if writes.is_empty() {
            return;
        }
        if self.disk.is_none() {
            lost_to_disk(&self.entry, &writes);
            p.buf.drain(..start);
            return;
        }
        // The unfinished line moves to the start of a fresh buffer; the old one goes to disk.
        let mut next = self.buffer();
        next.extend_from_slice(&p.buf[start..]);
        let buf = std::mem::replace(&mut p.buf, next);
        self.ship(Batch { buf, writes });
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
        if p.buf.is_empty() {
            return;
        }
        let (wall, mono) = (wall_us(), mono_ns(self.origin));
        let first_seq = self.writer.ring().next_seq();
        self.writer
            .push_line(p.stream, p.pid, p.generation, wall, mono, &p.buf);
        let meta = self.meta(p, first_seq, wall, mono, false);
        let mut buf = std::mem::take(&mut p.buf);
        buf.push(b'\n');
        let len = buf.len();
        self.ship(Batch {
            buf,
            writes: vec![(0..len, meta)],
        });
    }

    fn ship(&mut self, batch: Batch) {
        match &self.disk {
            Some(d) => {
                d.flight.batches.fetch_add(1, Ordering::AcqRel);
                if let Err(e) = d.writer.write(d.id, batch) {
                    d.flight.batches.fetch_sub(1, Ordering::AcqRel);
                    tracing::error!(process = %self.entry.name, cause = %e, "output kept in memory only");
                    if let Some(batch) = e.0 {
                        lost_to_disk(&self.entry, &batch.writes);
                    }
                }
            }
            None => lost_to_disk(&self.entry, &batch.writes),
        }
    }
}

/// Lines that will never reach the disk: readers must not wait for them there.
fn lost_to_disk(entry: &ProcessEntry, writes: &[(std::ops::Range<usize>, ChunkMeta)]) {
    if let Some((_, last)) = writes.last() {
        entry
            .counters
            .disk_seq
            .store(last.first_seq + last.lines, Ordering::Release);
    }
}
