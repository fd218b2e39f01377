//! The log threads: every capture task (`capture`) runs on a current-thread runtime on an
//! OS thread of its own, and writes its disk log there too. There is one such thread per
//! CPU (at most `MAX_THREADS`); processes are dealt to them in turn.
//!
//! Why a capture stays on one thread: reading, cutting, storing and writing a chunk there
//! keeps it in one core's cache, with no cross-thread wake-up between the pipe read and
//! the disk write (on the multi-thread runtime a capture task migrates between workers).
//! The blocking page-cache write stalls only its log thread: never the control socket,
//! D-Bus or the supervisors, which stay on the main runtime. Why one per CPU: a single
//! thread caps capture at one core however many programs flood at once. The measurements
//! behind both are in docs/architecture.md ("2026-11-23, later").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};

/// More threads than this only add wake-ups: the disk is one device.
const MAX_THREADS: usize = 4;

/// Owner of the log threads. Dropping it ends them (their runtimes drop what is left).
pub struct LogThreads {
    threads: Vec<LogThread>,
    next: AtomicUsize,
}

impl LogThreads {
    pub fn start() -> std::io::Result<LogThreads> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_THREADS);
        Ok(LogThreads {
            threads: (0..n)
                .map(LogThread::start)
                .collect::<std::io::Result<_>>()?,
            next: AtomicUsize::new(0),
        })
    }

    /// Where the next process's capture task goes: the threads in turn.
    pub fn next(&self) -> Arc<ThreadWake> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.threads[i].wake.clone()
    }

    /// Wakes every follower that waits on a log thread (after the registry changed).
    pub fn wake_all(&self) {
        for t in &self.threads {
            t.wake.notify.notify_waiters();
        }
    }
}

/// One log thread as its tasks see it: its runtime, and how the capture tasks there wake
/// the followers that run on the same thread.
///
/// Why followers run there: a follower on a runtime worker is woken across threads (an
/// eventfd write and a second thread's wake-up), and the scanner, woken by the same chunk,
/// may run first. A follower of processes that share one log thread runs on that thread
/// instead: the capture wakes it without a system call and lets it send before the scanner
/// and remote followers are woken (docs/architecture.md, "W6, follow latency, second
/// pass").
pub struct ThreadWake {
    /// Which log thread.
    pub index: usize,
    /// Its runtime: where the captures dealt to it and their local followers are spawned.
    pub handle: Handle,
    /// Woken once per chunk by every capture task on the thread.
    pub notify: Notify,
    /// Followers on the thread; a capture yields to them only when there are some.
    followers: AtomicUsize,
}

impl ThreadWake {
    /// Whether a follower runs on this thread now.
    pub fn has_followers(&self) -> bool {
        self.followers.load(Ordering::Relaxed) > 0
    }
}

/// Counts a follower on its log thread while it lives (also when aborted).
pub struct LocalFollower(Arc<ThreadWake>);

impl LocalFollower {
    pub fn new(wake: Arc<ThreadWake>) -> LocalFollower {
        wake.followers.fetch_add(1, Ordering::Relaxed);
        LocalFollower(wake)
    }

    pub fn wake(&self) -> &ThreadWake {
        &self.0
    }
}

impl Drop for LocalFollower {
    fn drop(&mut self) {
        self.0.followers.fetch_sub(1, Ordering::Relaxed);
    }
}

struct LogThread {
    wake: Arc<ThreadWake>,
    _stop: oneshot::Sender<()>,
}

impl LogThread {
    fn start(index: usize) -> std::io::Result<LogThread> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("brummerd-logs".into())
            .spawn(move || {
                // Time for the retries of a failing disk log (`persist`).
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Ends when the owner drops its sender.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the log thread ended before it started"))??;
        Ok(LogThread {
            wake: Arc::new(ThreadWake {
                index,
                handle,
                notify: Notify::new(),
                followers: AtomicUsize::new(0),
            }),
            _stop: stop,
        })
    }
}
