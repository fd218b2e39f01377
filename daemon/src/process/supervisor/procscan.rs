//! The one /proc scanner every stop shares (issue 7): at most one scan runs at a time, on a
//! blocking thread, and each finished scan serves every stop that asked for one before the
//! scan began. So N programs stopping at once cost a few scans of /proc, not N or more.
//!
//! Freshness is by generation: scans are numbered in the order they begin. A caller asking
//! at a moment when `started` scans have begun needs scan `started + 1` or later; that scan
//! begins after the request, so it sees every process forked before the request (such as
//! the children a program forked before its stop signal was sent). The lock below is held
//! for a few integer operations only, never across `.await` or the scan itself.

use super::procfs::Table;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How long a caller waits for its scan before checking that a scan is still under way.
/// A scan is never abandoned (a long one just takes longer); this only restarts scanning
/// if the scanning thread died (a panic) or its task was never run (runtime shutdown).
const STALL_CHECK: Duration = Duration::from_secs(1);

/// Cheap to clone; every clone shares the same scanner.
#[derive(Clone)]
pub struct ProcScanner {
    inner: Arc<Inner>,
}

struct Inner {
    gens: Mutex<Gens>,
    /// The last finished scan. Written only by the scanning thread; callers wait on it.
    latest: watch::Sender<Arc<Table>>,
}

#[derive(Default)]
struct Gens {
    /// Scans begun so far (the generation of the newest one).
    started: u64,
    /// The highest generation a caller waits for.
    wanted: u64,
    /// A scanning thread is at work (it begins the next scan itself while `wanted` is
    /// ahead of `started`).
    running: bool,
}

impl Default for ProcScanner {
    fn default() -> Self {
        ProcScanner {
            inner: Arc::new(Inner {
                gens: Mutex::default(),
                latest: watch::Sender::new(Arc::new(Table::default())),
            }),
        }
    }
}

impl ProcScanner {
    /// A table of /proc read entirely after this call began. Cancel-safe: a dropped
    /// caller leaves at most one extra scan behind.
    pub async fn fresh(&self) -> Arc<Table> {
        let mut rx = self.inner.latest.subscribe();
        let need = {
            let mut g = self.gens();
            let need = g.started + 1;
            g.wanted = g.wanted.max(need);
            need
        };
        loop {
            self.ensure_running();
            let got =
                tokio::time::timeout(STALL_CHECK, rx.wait_for(|t| t.generation >= need)).await;
            match got {
                Ok(Ok(table)) => return Arc::clone(&table),
                // Cannot happen while `self` holds the sender; scan here rather than fail.
                Ok(Err(_)) => return Arc::new(Table::scan(need)),
                Err(_) => continue,
            }
        }
    }

    fn gens(&self) -> std::sync::MutexGuard<'_, Gens> {
        // Gens holds plain counters that every update leaves consistent: a panic
        // elsewhere while it was held does not make them wrong.
        self.inner
            .gens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the scanning thread unless it runs (it stops when no caller waits).
    fn ensure_running(&self) {
        {
            let mut g = self.gens();
            if g.running || g.wanted <= g.started {
                return;
            }
            g.running = true;
        }
        // Created before the spawn: if the closure is dropped unrun (runtime shutting
        // down) or unwinds, the guard clears `running` so the next caller restarts it.
        let guard = Running {
            inner: Arc::clone(&self.inner),
            armed: true,
        };
        tokio::task::spawn_blocking(move || scan_while_wanted(guard));
    }
}

/// Clears `running` if the scanning thread ends without doing so itself.
struct Running {
    inner: Arc<Inner>,
    /// False once the thread has cleared `running` itself: by then another thread may
    /// have been started and set it again, which this guard must not undo.
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed {
            let mut g = self
                .inner
                .gens
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            g.running = false;
            // The scan that died may have been some caller's; asking for one more makes
            // the next `ensure_running` start again.
            g.wanted = g.wanted.max(g.started + 1);
        }
    }
}

/// Scans back to back while some caller waits for a generation not yet begun.
fn scan_while_wanted(mut guard: Running) {
    loop {
        let generation = {
            let mut g = guard
                .inner
                .gens
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if g.wanted <= g.started {
                // Cleared under the same lock a caller's `ensure_running` takes, so no
                // request can slip between this check and the thread ending.
                g.running = false;
                guard.armed = false;
                return;
            }
            g.started += 1;
            g.started
        };
        let table = Table::scan(generation);
        guard.inner.latest.send_replace(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_is_read_after_the_request() {
        let s = ProcScanner::default();
        let a = s.fresh().await;
        let b = s.fresh().await;
        assert!(b.generation > a.generation);
        // A child forked after the first table exists must be in the next one.
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let c = s.fresh().await;
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            c.get(pid).is_some(),
            "child {pid} missing from a later table"
        );
        assert!(a.get(pid).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scanning_thread_that_died_mid_scan_is_replaced() {
        let s = ProcScanner::default();
        // As if a thread were scanning (2 scans begun): a caller now waits for scan 3.
        *s.gens() = Gens {
            started: 2,
            wanted: 0,
            running: true,
        };
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.fresh().await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.gens().wanted < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the caller never asked"
            );
            tokio::task::yield_now().await;
        }
        // That thread begins scan 3, the caller's, and unwinds before publishing it.
        s.gens().started = 3;
        drop(Running {
            inner: Arc::clone(&s.inner),
            armed: true,
        });
        let t = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the caller got a table from a new scanning thread")
            .expect("caller task");
        assert!(t.generation >= 4, "{}", t.generation);
        assert!(t.len() > 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_scans() {
        let s = ProcScanner::default();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let s = s.clone();
            set.spawn(async move { s.fresh().await.generation });
        }
        let mut gens = Vec::new();
        while let Some(g) = set.join_next().await {
            gens.push(g.expect("caller task"));
        }
        gens.sort_unstable();
        gens.dedup();
        // Each scan serves everyone who asked before it began: callers that all asked
        // while one scan ran share the next, so 200 callers need a handful of scans.
        assert!(gens.len() < 20, "200 callers caused {} scans", gens.len());
    }
}
