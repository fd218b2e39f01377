//! Log capture: one task per process drains its children's stdout and stderr pipes, cuts
//! each read at its last newline and pushes the complete lines into the process's
//! `LogRing` in one push (the task owns the ring's only `RingWriter`); the same bytes go to
//! the disk log through `persist` (which rotates), right away or, with followers on the
//! thread, just after they sent them (`defer`).
//!
//! The task outlives any one child: a restarted child's pipes are handed over on a channel
//! while a previous child's pipes (held open by a lingering grandchild) may still be
//! draining, so every source is polled in one place. It never waits for a reader: rings
//! overwrite, followers are woken once per chunk, and the only thing that can slow it is
//! the disk. Every capture task runs on the log thread (`logthread`), which is why the
//! disk write can be a plain blocking `write` here.

use super::defer::Deferred;
use super::disk::{ChunkMeta, DiskLog};
use super::persist::{Persist, RETRY_EVERY, Target, Write};
use super::{LogPlane, ProcessLog};
use brummer_core::{RingWriter, Stamp};
use brummer_proto::Stream;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Bytes read from a pipe per system call. Larger reads amortise the wake-up, and one read
/// must keep up with a producer that fills the large pipe buffer brummerd asks for
/// (`PIPE_SIZE`, where the pipes are made) in big writes.
const READ_CHUNK: usize = 256 * 1024;

thread_local! {
    /// The read buffer of every pipe on this log thread. One per pipe kept 256 KiB for each
    /// program that ever printed a burst, and ten of them flooding at once did not fit in
    /// the cache; a pipe keeps only its unfinished line (`Pipe::carry`).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

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

/// What the capture task is told.
enum Msg {
    /// A new child's pipes.
    Attach(Source),
    /// Pipes handed over by the previous brummerd image, with their unfinished lines.
    Adopt(Vec<(OwnedFd, crate::handover::Pipe)>),
    /// Stop reading, write what is held, and hand every pipe back (re-exec).
    Detach(oneshot::Sender<Vec<(OwnedFd, crate::handover::Pipe)>>),
    /// Answer once every pipe of this run and the runs before it has ended and what it
    /// carried is in the ring and handed to the disk log.
    Settle(u32, oneshot::Sender<()>),
}

/// The supervisor task's end of the capture task.
#[derive(Clone)]
pub struct CaptureHandle {
    tx: mpsc::Sender<Msg>,
}

impl CaptureHandle {
    /// Hands a new child's pipes to the capture task. The channel has room for a few runs;
    /// a full channel means the task is gone, and the pipes are dropped with the error.
    pub fn attach(&self, source: Source) -> Result<(), &'static str> {
        self.tx
            .try_send(Msg::Attach(source))
            .map_err(|_| "log capture task is not accepting output")
    }

    /// Gives the capture task the pipes the previous image handed over. Sent before any
    /// other message, on a new task.
    pub fn adopt(&self, pipes: Vec<(OwnedFd, crate::handover::Pipe)>) -> Result<(), &'static str> {
        self.tx
            .try_send(Msg::Adopt(pipes))
            .map_err(|_| "log capture task is not accepting output")
    }

    /// Asks the capture task to end once everything it read is written (ring and disk);
    /// the answer brings its pipes, still open, with the unfinished line of each. Ask after
    /// the program's supervisor task detached, so that no new pipe follows.
    async fn ask_detach(&self) -> Option<oneshot::Receiver<Vec<(OwnedFd, crate::handover::Pipe)>>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Detach(tx)).await.ok()?;
        Some(rx)
    }

    /// Waits, at most `limit`, until the pipes of run `generation` (and of the runs before
    /// it) have ended and their last lines are in the ring, so that a stop that returns has
    /// its program's last words counted and readable. A descendant that escaped the stop and
    /// still holds a pipe is what the limit is for; returns whether everything ended.
    pub async fn settle(&self, generation: u32, limit: std::time::Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.try_send(Msg::Settle(generation, tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(())))
    }
}

/// Takes the pipes back from capture tasks of one log thread (a re-exec), each keyed by
/// the caller's index; a task that is gone gives none. Run on that thread: every task is
/// asked first, then the answers are awaited, so the hand-over crosses threads once per
/// log thread rather than twice per program.
pub async fn detach_all(
    captures: Vec<(usize, CaptureHandle)>,
) -> Vec<(usize, Vec<(OwnedFd, crate::handover::Pipe)>)> {
    let mut asked = Vec::with_capacity(captures.len());
    for (i, c) in captures {
        asked.push((i, c.ask_detach().await));
    }
    let mut pipes = Vec::with_capacity(asked.len());
    for (i, rx) in asked {
        let got = match rx {
            Some(rx) => rx.await.unwrap_or_default(),
            None => Vec::new(),
        };
        pipes.push((i, got));
    }
    pipes
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

/// Starts the capture task of one program on its log thread, counted by the plane, which
/// drains the captures at shutdown so the last lines reach the disk.
pub(super) fn spawn(
    plane: Arc<LogPlane>,
    log: Arc<ProcessLog>,
    writer: RingWriter,
    disk: std::io::Result<DiskLog>,
    target: Target,
) -> CaptureHandle {
    let persist = Persist::new(log.clone(), disk, target);
    let (handle, start) = prepare(plane, log, writer, persist);
    start();
    handle
}

/// [`spawn`], with the task spawned by the returned closure, and the disk log opened by
/// the task itself when it first writes (`Persist::deferred`).
pub(super) fn spawn_later(
    plane: Arc<LogPlane>,
    log: Arc<ProcessLog>,
    writer: RingWriter,
    target: Target,
    rotated: Option<Vec<super::disk::Segment>>,
) -> (CaptureHandle, impl FnOnce() + Send + 'static) {
    let persist = Persist::deferred(log.clone(), target, rotated);
    prepare(plane, log, writer, persist)
}

fn prepare(
    plane: Arc<LogPlane>,
    log: Arc<ProcessLog>,
    writer: RingWriter,
    persist: Persist,
) -> (CaptureHandle, impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel(4);
    let start = move || {
        let handle = log.thread.handle.clone();
        plane
            .captures
            .spawn_on(run(plane.clone(), log, writer, persist, rx), &handle);
    };
    (CaptureHandle { tx }, start)
}

struct Pipe {
    fd: AsyncFd<OwnedFd>,
    stream: Stream,
    pid: u32,
    generation: u32,
    /// The bytes of a line whose newline has not come yet. The next read appends to a copy
    /// of them in the thread's read buffer, so a line spanning two reads is contiguous for
    /// the ring and the disk.
    carry: Vec<u8>,
}

struct Sink {
    plane: Arc<LogPlane>,
    entry: Arc<ProcessLog>,
    writer: RingWriter,
    persist: Persist,
    /// The disk writes of one read, kept to reuse the allocation.
    writes: Vec<Write>,
    /// Followers run on this log thread: a small chunk's disk write may wait for them.
    followers: bool,
    /// A chunk already in the ring whose disk write waits for the followers.
    deferred: Deferred,
}

async fn run(
    plane: Arc<LogPlane>,
    entry: Arc<ProcessLog>,
    writer: RingWriter,
    persist: Persist,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut sink = Sink {
        plane,
        persist,
        entry,
        writer,
        writes: Vec::new(),
        followers: false,
        deferred: Deferred::default(),
    };
    let mut pipes: Vec<Pipe> = Vec::new();
    let mut rx_open = true;
    let mut detach = None;
    // Settle requests not answered yet: (generation, reply).
    let mut settling: Vec<(u32, oneshot::Sender<()>)> = Vec::new();
    // While the disk log fails: when to try it again.
    let mut retry: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        if !rx_open && pipes.is_empty() {
            // A last try, so lines kept for a disk that came back are not lost with us.
            sink.persist.retry();
            break;
        }
        sink.followers = sink.entry.thread.has_followers();
        if sink.persist.needs_retry() && retry.is_none() {
            retry = Some(Box::pin(tokio::time::sleep(RETRY_EVERY)));
        }
        let seq_before = sink.writer.ring().next_seq();
        // A pipe left with data after its turn: this task yields before its next turn.
        let mut more = false;
        std::future::poll_fn(|cx| {
            let mut progressed = false;
            if let Some(t) = retry.as_mut()
                && t.as_mut().poll(cx).is_ready()
                && !sink.has_pending()
            {
                retry = None;
                sink.persist.retry();
                progressed = true;
            }
            while rx_open {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Msg::Attach(src))) => {
                        for (fd, stream) in
                            [(src.stdout, Stream::Stdout), (src.stderr, Stream::Stderr)]
                        {
                            watch(
                                &mut pipes,
                                &sink.entry.name,
                                fd,
                                stream,
                                src.pid,
                                src.generation,
                                Vec::new(),
                            );
                        }
                        progressed = true;
                    }
                    Poll::Ready(Some(Msg::Adopt(handed))) => {
                        for (fd, p) in handed {
                            watch(
                                &mut pipes,
                                &sink.entry.name,
                                fd,
                                p.stream,
                                p.pid,
                                p.generation,
                                p.carry,
                            );
                        }
                        progressed = true;
                    }
                    Poll::Ready(Some(Msg::Detach(reply))) => {
                        // Nothing more is read: the next image reads the rest.
                        detach = Some(reply);
                        return Poll::Ready(());
                    }
                    Poll::Ready(Some(Msg::Settle(generation, reply))) => {
                        settling.push((generation, reply));
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
            // A deferred chunk ends the turn: nothing else may reach the ring or the disk
            // before its disk write.
            while i < pipes.len() && !sink.has_pending() {
                match drain(&mut pipes[i], &mut sink, cx) {
                    Drained::Open(n) => {
                        progressed |= n > 0;
                        i += 1;
                    }
                    Drained::More(n) => {
                        progressed |= n > 0;
                        more = true;
                        i += 1;
                    }
                    Drained::Closed => {
                        let mut p = pipes.swap_remove(i);
                        sink.flush_carry(&mut p);
                        note_closed(&sink.entry.name, &p);
                        progressed = true;
                    }
                }
            }
            if progressed || more {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        // Readers (followers, the scanner) are woken only when the ring has new lines: a
        // turn that only took pipes or answered a message gives them nothing to read, and
        // a thousand captures starting at once would otherwise wake them a thousand times.
        if sink.writer.ring().next_seq() != seq_before {
            // Followers on this thread first: they run as soon as this task yields, without
            // a system call, and send before the scanner and other followers wake on
            // another thread (which could otherwise run ahead of them on the same core).
            let wake = &sink.entry.thread;
            wake.notify.notify_waiters();
            if wake.has_followers() {
                tokio::task::yield_now().await;
                more = false;
            }
            sink.flush_pending();
            sink.plane.activity.notify_waiters();
        } else {
            sink.flush_pending();
        }
        if !settling.is_empty() && !sink.has_pending() {
            let mut i = 0;
            while i < settling.len() {
                let generation = settling[i].0;
                if pipes.iter().any(|p| p.generation <= generation) {
                    i += 1;
                } else {
                    let _ = settling.swap_remove(i).1.send(());
                }
            }
        }
        if let Some(reply) = detach.take() {
            // The next image gets the pipes and where the numbering goes on, not the ring:
            // lines kept for a failing disk have one more chance to reach it, and those that
            // do not are said lost (the next image counts them when it opens the log).
            sink.persist.retry();
            let unwritten = sink.persist.unwritten_lines();
            if unwritten > 0 {
                tracing::error!(process = %sink.entry.name, lines = unwritten, "disk log failing at hand-over: the lines kept in memory for it are lost with the re-exec");
            }
            let handed = pipes
                .drain(..)
                .map(|p| {
                    let pipe = crate::handover::Pipe {
                        fd: -1,
                        stream: p.stream,
                        pid: p.pid,
                        generation: p.generation,
                        carry: p.carry,
                    };
                    (crate::fd::unwatch_for_exec(p.fd), pipe)
                })
                .collect();
            let _ = reply.send(handed);
            tracing::debug!(process = %sink.entry.name, "log capture handed over");
            return;
        }
        if more {
            // A flooding pipe is read again only after every other task of the log thread
            // has run and the thread's I/O events have been collected: `yield_now` on the
            // current-thread runtime wakes it after the next poll of the driver. Waking
            // itself instead kept it runnable, and the driver is polled only after dozens
            // of task turns when a task is always runnable: under one program's flood, the
            // other programs' output and ends waited seconds (their closed pipes piled up).
            tokio::task::yield_now().await;
        }
    }
    tracing::debug!(process = %sink.entry.name, "log capture ended");
}

/// Starts watching one pipe; a pipe that cannot be watched is dropped with an error.
fn watch(
    pipes: &mut Vec<Pipe>,
    name: &str,
    fd: OwnedFd,
    stream: Stream,
    pid: u32,
    generation: u32,
    carry: Vec<u8>,
) {
    match crate::fd::watch_readable(fd) {
        Ok(fd) => pipes.push(Pipe {
            fd,
            stream,
            pid,
            generation,
            carry,
        }),
        Err(e) => tracing::error!(process = %name, cause = %e, "cannot watch output pipe"),
    }
}

/// Says so when a pipe ends while the child that owns it still runs: it closed its stdout
/// or stderr itself (or handed it to nobody), and brummerd will capture nothing more from
/// that stream until the next run. Usually the child has exited (a zombie until its
/// supervisor reaps it) and this says nothing.
fn note_closed(name: &str, p: &Pipe) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
        return;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some(s) if s != "Z" && s != "X") {
        tracing::info!(
            process = %name,
            pid = p.pid,
            stream = %p.stream,
            "program closed its output stream and still runs; nothing more is captured from it until its next run"
        );
    }
}

enum Drained {
    /// The pipe ran dry after this many bytes; its next readiness wakes the task.
    Open(usize),
    /// `READS_PER_TURN` reads took this many bytes and more may be waiting: the task must
    /// come back to it after a yield, as nothing will wake it for data already there.
    More(usize),
    Closed,
}

/// Reads what is available from one pipe (at most `READS_PER_TURN` reads). Registers for
/// a wake-up when the pipe runs dry.
fn drain(p: &mut Pipe, sink: &mut Sink, cx: &mut std::task::Context<'_>) -> Drained {
    let mut total = 0;
    for _ in 0..READS_PER_TURN {
        let mut guard = match p.fd.poll_read_ready(cx) {
            Poll::Ready(Ok(g)) => g,
            Poll::Ready(Err(_)) => return Drained::Closed,
            Poll::Pending => return Drained::Open(total),
        };
        // The thread's buffer, taken for this read (a `Cell` holds it between reads).
        let mut buf = SCRATCH.take();
        buf.clear();
        buf.extend_from_slice(&p.carry);
        buf.reserve(READ_CHUNK);
        // Into the spare capacity (its pages are touched only as data arrives), at most
        // READ_CHUNK bytes: `reserve` may have doubled the capacity, and a larger read would
        // make larger disk writes, which are never split across segments.
        let read = guard.try_io(|fd| {
            let spare = &mut buf.spare_capacity_mut()[..READ_CHUNK];
            let (init, _) = rustix::io::read(fd.get_ref(), spare)?;
            Ok(init.len())
        });
        if let Ok(Ok(n)) = read {
            // SAFETY: `read` initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
        }
        if let Ok(Ok(n)) = read
            && n > 0
        {
            sink.take(p, &buf);
        }
        SCRATCH.set(buf);
        match read {
            Ok(Ok(0)) => return Drained::Closed,
            Ok(Ok(n)) => {
                total += n;
                if sink.has_pending() {
                    // Its followers send it before more is read.
                    return Drained::Open(total);
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return Drained::Closed,
            // WouldBlock: readiness cleared by try_io; loop polls again and registers.
            Err(_would_block) => {}
        }
    }
    Drained::More(total)
}

impl Sink {
    /// Cuts `buf` (`p.carry` and what the last read added) at its last newline: one ring
    /// push and one disk write for the run of complete lines. What follows the last newline
    /// becomes the pipe's new carry.
    fn take(&mut self, p: &mut Pipe, buf: &[u8]) {
        let stamp = self.stamp(p);
        let data = buf;
        let carry = p.carry.len();
        let mut writes = std::mem::take(&mut self.writes);
        let first_seq = self.writer.ring().next_seq();
        // The carried bytes hold no newline: search only the new ones.
        let mut start = memchr::memrchr(b'\n', &data[carry..]).map_or(0, |nl| carry + nl + 1);
        if start > 0 {
            self.writer.push_lines(&stamp, &data[..start]);
            writes.push((0..start, self.meta(p, first_seq, &stamp, false)));
        }
        // A line longer than the ring's record limit is cut into parts marked partial, so a
        // reader never has to wait for a newline that may never come. The limit is the
        // ring's own (less than `brummer_core::LogRing::MAX_LINE` in small rings, which would truncate).
        // A part is cut only once more of the line follows it, so a line of exactly k parts
        // gives k records however the reads split it, the same as when it came in one read.
        let max = self.writer.ring().max_payload();
        while data.len() - start > max {
            let first_seq = self.writer.ring().next_seq();
            self.writer.push_piece(&stamp, &data[start..start + max]);
            writes.push((start..start + max, self.meta(p, first_seq, &stamp, true)));
            start += max;
        }
        // With followers on this thread, a small chunk goes to them first and to the disk
        // right after (`defer`).
        let ring_oldest = self.writer.ring().oldest_seq();
        if self
            .deferred
            .may_hold(self.followers, start, ring_oldest, first_seq)
        {
            self.deferred.hold(buf, start, &mut writes);
        } else {
            self.persist.write(buf, &writes);
            writes.clear();
        }
        self.writes = writes;
        p.carry.clear();
        p.carry.extend_from_slice(&buf[start..]);
    }

    fn has_pending(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Writes the deferred chunk, if any.
    fn flush_pending(&mut self) {
        self.deferred.flush(&mut self.persist);
    }

    /// What the lines of this read share: its pipe and the time it was read.
    fn stamp(&self, p: &Pipe) -> Stamp {
        Stamp {
            stream: p.stream,
            pid: p.pid,
            generation: p.generation,
            wall_us: wall_us(),
            mono_ns: mono_ns(self.plane.origin),
        }
    }

    /// The chunk's index data: every line from `first_seq` up to the ring's head.
    fn meta(&self, p: &Pipe, first_seq: u64, stamp: &Stamp, pieces: bool) -> ChunkMeta {
        ChunkMeta {
            first_seq,
            lines: self.writer.ring().next_seq() - first_seq,
            wall_us: stamp.wall_us,
            mono_ns: stamp.mono_ns,
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
        let stamp = self.stamp(p);
        let first_seq = self.writer.ring().next_seq();
        self.writer.push_lines(&stamp, &p.carry);
        let meta = self.meta(p, first_seq, &stamp, false);
        let mut buf = std::mem::take(&mut p.carry);
        buf.push(b'\n');
        let len = buf.len();
        self.persist.write(&buf, &[(0..len, meta)]);
    }
}

#[cfg(test)]
mod tests;
