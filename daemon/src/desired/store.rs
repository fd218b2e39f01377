//! One persisted document and its writer task. Changes are made in memory (a short lock,
//! no I/O under it) and numbered; the writer task, woken through a `Notify` (which
//! coalesces any number of changes into one wake-up), writes the newest version atomically
//! on a blocking thread and publishes which version is on disk. A caller that must not
//! answer before its change is durable (`enable`, a `stop` by hand) waits for that
//! version; the supervisor tasks never wait.
//!
//! Nothing is queued: however many changes arrive while a write runs, the next write
//! carries all of them, so the pending work is bounded by one document.

use super::atomic;
use crate::shutdown::Shutdown;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{Notify, watch};

/// The outcome of the latest write.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The newest version the writer has tried to write.
    pub version: u64,
    /// Why that write failed; `None` when it is on disk.
    pub error: Option<Arc<str>>,
}

pub struct Store<T> {
    path: PathBuf,
    dir_mode: u32,
    file_mode: u32,
    /// The document and its version. Held for in-memory changes and a clone only.
    doc: Mutex<(T, u64)>,
    dirty: Notify,
    written: watch::Sender<Written>,
}

impl<T: Serialize + Clone + Send + Sync + 'static> Store<T> {
    /// A store of `doc`, version 0, which counts as written (nothing changed yet).
    pub fn new(path: PathBuf, doc: T, dir_mode: u32, file_mode: u32) -> Arc<Store<T>> {
        Arc::new(Store {
            path,
            dir_mode,
            file_mode,
            doc: Mutex::new((doc, 0)),
            dirty: Notify::new(),
            written: watch::Sender::new(Written::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, (T, u64)> {
        // A panic inside a change closure leaves a document that is still valid JSON
        // material; carrying on beats losing every later change.
        self.doc.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock().0)
    }

    /// Applies a change; `f` says whether it changed anything. Returns the version a
    /// caller waits for to know the change is on disk (the current one if nothing
    /// changed), and wakes the writer when something did.
    pub fn update(&self, f: impl FnOnce(&mut T) -> bool) -> u64 {
        let version = {
            let mut g = self.lock();
            if f(&mut g.0) {
                g.1 += 1;
            }
            g.1
        };
        if version > self.written.borrow().version {
            self.dirty.notify_one();
        }
        version
    }

    /// Marks the document to be written even though it did not change (start-up, so the
    /// file describes this brummerd from the beginning). Returns the version to wait for.
    pub fn touch(&self) -> u64 {
        self.update(|_| true)
    }

    /// Waits until `version` (or a later one) was written; the error of that write if it
    /// failed.
    pub async fn flushed(&self, version: u64) -> Result<(), Arc<str>> {
        let mut rx = self.written.subscribe();
        match rx.wait_for(|w| w.version >= version).await {
            Ok(w) => w.error.clone().map_or(Ok(()), Err),
            // The sender lives as long as `self`: cannot happen.
            Err(_) => Ok(()),
        }
    }

    /// Waits until everything changed so far is written.
    pub async fn sync(&self) -> Result<(), Arc<str>> {
        let v = self.lock().1;
        self.dirty.notify_one();
        self.flushed(v).await
    }

    /// The writer task: writes the newest version whenever woken, until shutdown.
    pub fn spawn_writer(self: &Arc<Self>, shutdown: &Shutdown) {
        let store = self.clone();
        shutdown.spawn(async move {
            loop {
                store.dirty.notified().await;
                store.write_newest().await;
            }
        });
    }

    async fn write_newest(self: &Arc<Self>) {
        let (doc, version) = self.lock().clone();
        if version <= self.written.borrow().version {
            return;
        }
        let bytes = match serde_json::to_vec_pretty(&doc) {
            Ok(b) => b,
            Err(e) => {
                self.publish(version, Some(format!("cannot encode: {e}")));
                return;
            }
        };
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            atomic::replace(&me.path, &bytes, me.dir_mode, me.file_mode)
        })
        .await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("writer thread failed: {e}")),
        };
        if let Some(e) = &error {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot write state file; the next change tries again");
        }
        self.publish(version, error);
    }

    fn publish(&self, version: u64, error: Option<String>) {
        self.written.send_replace(Written {
            version,
            error: error.map(Arc::from),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_coalesced_and_waiters_see_their_version_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.json");
        let s = Store::new(path.clone(), BTreeMap::<String, u32>::new(), 0o700, 0o600);
        let tasks = Shutdown::new();
        s.spawn_writer(&tasks);
        let mut last = 0;
        for i in 0..100 {
            last = s.update(|m| {
                m.insert(format!("k{}", i % 10), i);
                true
            });
        }
        assert_eq!(last, 100);
        s.flushed(last).await.unwrap();
        let on_disk: BTreeMap<String, u32> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk.len(), 10);
        assert_eq!(on_disk["k9"], 99);
        // Unchanged: no new version to wait for.
        assert_eq!(s.update(|_| false), 100);
        tasks.trigger();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_reported_to_its_waiter() {
        let d = tempfile::tempdir().unwrap();
        // A file where the directory should be: the write cannot succeed.
        std::fs::write(d.path().join("blocker"), b"").unwrap();
        let s = Store::new(d.path().join("blocker/x.json"), 0u32, 0o700, 0o600);
        let tasks = Shutdown::new();
        s.spawn_writer(&tasks);
        let v = s.update(|n| {
            *n = 1;
            true
        });
        assert!(s.flushed(v).await.is_err());
        tasks.trigger();
    }
}
