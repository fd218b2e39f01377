//! The log thread: every capture task (`capture`) runs on one current-thread runtime on an
//! OS thread of its own, and writes its disk log there too.
//!
//! Why one thread, measured on W3 (one program flooding 1,000,000 lines of 100 bytes, on
//! this 2-core machine where the producer itself needs a core): with the capture tasks on
//! the multi-thread runtime and the disk writes on a separate writer thread, every chunk
//! crossed cores twice (read on one worker, the task migrated, written on the writer
//! thread), and each cost two cross-thread wake-ups. Reading, cutting, storing and writing
//! a chunk on one thread keeps it in that core's cache and took less CPU *and* less time.
//! The blocking page-cache write stalls only this thread: never the control socket, D-Bus
//! or the supervisors, which stay on the main runtime.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Owner of the log thread. Dropping it ends the thread (its runtime drops what is left).
pub struct LogThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl LogThread {
    pub fn start() -> std::io::Result<LogThread> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("brummerd-logs".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
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
            handle,
            _stop: stop,
        })
    }

    /// Where capture tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
