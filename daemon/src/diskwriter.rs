//! The disk writer: one thread that appends every process's captured chunks to its disk
//! log (`disklog`), in the order each capture task sent them, and rotates between writes.
//!
//! Why a thread of its own: writing to the page cache is a blocking copy that costs about as
//! much as reading the pipe. Done inside the capture task, it stalled a runtime worker and
//! serialised read, cut and write; a tokio task beside the capture did not help, because a
//! task woken by a task runs next on the same worker (tokio's LIFO slot). On its own thread
//! the write of one chunk overlaps with reading and cutting the next, and a slow disk stalls
//! no runtime worker. One thread for all processes keeps the writes to the one disk
//! sequential, like journald; per-process order is the channel's order.
//!
//! Bounded by construction: each capture task has at most `capture::IN_FLIGHT` batches
//! queued (it stops reading until the writer hands one back), so the channel holds at most
//! that many per process.

use crate::disklog::{ChunkMeta, DiskLog};
use crate::entry::ProcessEntry;
use atomic_waker::AtomicWaker;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Finished bytes of one read, with the buffer they live in.
pub struct Batch {
    pub buf: Vec<u8>,
    pub writes: Vec<(Range<usize>, ChunkMeta)>,
}

/// What a capture task and the writer share: batches in flight, the wake-up the writer
/// sends when it finishes one, and emptied buffers to reuse.
pub struct Flight {
    pub batches: AtomicUsize,
    pub room: AtomicWaker,
    pub spare: crossbeam_queue::ArrayQueue<Vec<u8>>,
}

impl Flight {
    pub fn new(spare: usize) -> Flight {
        Flight {
            batches: AtomicUsize::new(0),
            room: AtomicWaker::new(),
            spare: crossbeam_queue::ArrayQueue::new(spare.max(1)),
        }
    }
}

enum Msg {
    Open {
        id: u64,
        entry: Arc<ProcessEntry>,
        disk: DiskLog,
        flight: Arc<Flight>,
    },
    Batch {
        id: u64,
        batch: Batch,
    },
    Close {
        id: u64,
    },
}

/// Handle to the writer thread. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct DiskWriter {
    tx: mpsc::Sender<Msg>,
}

/// The writer thread is gone (it panicked): the caller accounts for the lines.
#[derive(Debug, thiserror::Error)]
#[error("the disk writer thread is gone")]
pub struct WriterGone(pub Option<Batch>);

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("bytes", &self.buf.len())
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl DiskWriter {
    pub fn start() -> std::io::Result<DiskWriter> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("brummerd-disk".into())
            .spawn(move || run(rx))?;
        Ok(DiskWriter { tx })
    }

    /// Hands a process's disk log to the writer; `id` names it in later calls.
    pub fn open(
        &self,
        id: u64,
        entry: Arc<ProcessEntry>,
        disk: DiskLog,
        flight: Arc<Flight>,
    ) -> Result<(), WriterGone> {
        self.tx
            .send(Msg::Open {
                id,
                entry,
                disk,
                flight,
            })
            .map_err(|_| WriterGone(None))
    }

    /// Queues a batch; the caller has counted it in its `Flight::batches`.
    pub fn write(&self, id: u64, batch: Batch) -> Result<(), WriterGone> {
        self.tx
            .send(Msg::Batch { id, batch })
            .map_err(|e| match e.0 {
                Msg::Batch { batch, .. } => WriterGone(Some(batch)),
                _ => WriterGone(None),
            })
    }

    /// Closes the process's disk log after its queued batches.
    pub fn close(&self, id: u64) {
        let _ = self.tx.send(Msg::Close { id });
    }
}

struct Open {
    entry: Arc<ProcessEntry>,
    disk: DiskLog,
    flight: Arc<Flight>,
    /// The last write failed; cleared (and logged) when writes succeed again.
    failing: bool,
}

/// Puts the calling thread in `SCHED_BATCH`: same CPU share, but its wake-ups never preempt
/// the running thread. Every chunk wakes the writer right after the capture task read it,
/// before the followers it has woken got to run; as a normal thread the writer often took
/// the CPU from the capture's runtime worker there, and a line reached `logs -f` later
/// (W6 in `docs/bench-peers.md`). Its writes are never urgent: only a full `Flight`
/// makes the capture task wait for it, and then it already has the CPU.
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid parameter
    // struct; it touches no memory of ours beyond reading `param`.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r != 0 {
        // A seccomp filter may refuse it; the writer works the same, only less politely.
        tracing::debug!(cause = %std::io::Error::last_os_error(), "disk writer stays SCHED_OTHER");
    }
}

fn run(rx: mpsc::Receiver<Msg>) {
    batch_policy();
    let mut logs: HashMap<u64, Open> = HashMap::new();
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Open {
                id,
                entry,
                disk,
                flight,
            } => {
                logs.insert(
                    id,
                    Open {
                        entry,
                        disk,
                        flight,
                        failing: false,
                    },
                );
            }
            Msg::Batch { id, mut batch } => {
                let Some(o) = logs.get_mut(&id) else {
                    continue;
                };
                for (range, meta) in &batch.writes {
                    write(o, &batch.buf[range.clone()], meta);
                }
                batch.buf.clear();
                // More buffers than spare slots (several pipes) just frees one.
                let _ = o.flight.spare.push(batch.buf);
                o.flight.batches.fetch_sub(1, Ordering::AcqRel);
                o.flight.room.wake();
            }
            Msg::Close { id } => {
                logs.remove(&id);
            }
        }
    }
}

fn write(o: &mut Open, bytes: &[u8], meta: &ChunkMeta) {
    let counters = &o.entry.counters;
    match o.disk.append(&[bytes], meta) {
        Ok(()) => {
            if o.failing {
                o.failing = false;
                tracing::info!(process = %o.entry.name, "disk log writable again");
            }
        }
        Err(e) => {
            counters
                .disk_errors
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if !o.failing {
                o.failing = true;
                tracing::error!(process = %o.entry.name, cause = %e, "cannot write disk log; lines stay in memory only");
            }
        }
    }
    // Every line before this one is now on disk or lost to it: readers may look there.
    let next = meta.first_seq + meta.lines;
    counters.disk_seq.store(next, Ordering::Release);
    let (max_bytes, max_files) = {
        let def = o.entry.def.load();
        (def.logs.max_bytes, def.logs.max_files)
    };
    if o.disk.size() >= max_bytes {
        match o.disk.rotate(next, max_files) {
            Ok(()) => {
                counters.rotations.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(process = %o.entry.name, cause = %e, "cannot rotate disk log");
            }
        }
    }
}
