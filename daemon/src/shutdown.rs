//! The one shutdown signal every long-lived task watches, and the tracker that tells the
//! top loop when they have all ended.
//!
//! Tasks are spawned through [`Shutdown::spawn`] (or `spawn_on` for a log thread): each
//! runs until it ends by itself or the token is cancelled, whichever comes first, and the
//! tracker counts it until then (its drop guard). Cancelling drops the task's future at
//! its next `.await`, so a task must keep its state consistent at every await point, as
//! any cancel-safe future does; nothing is aborted from outside. [`Shutdown::child`] gives
//! a narrower token (one stream of one connection) that the parent's cancel reaches too.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns put off until [`Later::run`]: a re-exec makes every program (entry, ring, state)
/// and publishes them before any of their tasks is spawned, so that `status` answers as
/// soon as they are published and spawning a thousand tasks is not on that path.
///
/// Spawns bound for another runtime (a log thread) are grouped by runtime and made there,
/// from one task: a spawn from outside a current-thread runtime wakes its thread each
/// time, a spawn from inside it only queues.
#[derive(Default)]
pub struct Later {
    here: Vec<Box<dyn FnOnce() + Send>>,
    there: BTreeMap<usize, Group>,
}

/// The spawns of one other runtime, and the tracker that counts the task making them.
struct Group {
    tracker: Shutdown,
    handle: Handle,
    spawns: Vec<Box<dyn FnOnce() + Send>>,
}

impl Later {
    pub fn push(&mut self, spawn: impl FnOnce() + Send + 'static) {
        self.here.push(Box::new(spawn));
    }

    /// `spawn`, run on runtime `handle` (known as `key`) with the others pushed for it.
    /// `tracker` counts the task that runs them until it has (so a wait on it cannot end
    /// between that task and the tasks it spawns).
    pub fn push_on(
        &mut self,
        key: usize,
        tracker: &Shutdown,
        handle: &Handle,
        spawn: impl FnOnce() + Send + 'static,
    ) {
        self.there
            .entry(key)
            .or_insert_with(|| Group {
                tracker: tracker.clone(),
                handle: handle.clone(),
                spawns: Vec::new(),
            })
            .spawns
            .push(Box::new(spawn));
    }

    /// Spawns everything: each other runtime's group (one task there runs them in the order
    /// pushed), then the rest in the order pushed.
    pub fn run(self) {
        for group in self.there.into_values() {
            let spawns = group.spawns;
            group.tracker.spawn_on(
                async move {
                    for spawn in spawns {
                        spawn();
                    }
                },
                &group.handle,
            );
        }
        for spawn in self.here {
            spawn();
        }
    }
}

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A token cancelled with this one (or on its own), whose tasks the same tracker counts.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            token: self.token.child_token(),
            tasks: self.tasks.clone(),
        }
    }

    /// Tells every task watching this token (and its children) to end.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once [`trigger`](Self::trigger) was called.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Runs `task` on the current runtime until it ends or the token is cancelled.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            token.run_until_cancelled(task).await;
        })
    }

    /// Like [`spawn`](Self::spawn), on another runtime (a log thread).
    pub fn spawn_on<F>(&self, task: F, handle: &Handle) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn_on(
            async move {
                token.run_until_cancelled(task).await;
            },
            handle,
        )
    }

    /// Waits, at most `limit`, until every task spawned through this tracker has ended;
    /// false when some were still running. No task can be added afterwards.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_trigger_ends_every_task_and_wait_sees_them_gone() {
        let s = Shutdown::new();
        let child = s.child();
        let (tx, rx) = oneshot::channel::<()>();
        // Both would run for ever; only the token ends them.
        s.spawn(std::future::pending());
        child.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        assert_eq!(s.running(), 2);
        s.trigger();
        assert!(child.is_triggered());
        assert!(s.wait(Duration::from_secs(60)).await);
        assert_eq!(s.running(), 0);
        // The child's future was dropped, so its sender is gone.
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn a_child_token_ends_only_its_own_tasks() {
        let s = Shutdown::new();
        let child = s.child();
        let (tx, rx) = oneshot::channel::<()>();
        s.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        let h = child.spawn(std::future::pending());
        child.trigger();
        h.await.expect("the child's task ends without panicking");
        assert!(!s.is_triggered());
        assert_eq!(s.running(), 1);
        s.trigger();
        assert!(rx.await.is_err());
    }

    /// What `Later::push_on` is for: the spawns of one other runtime are made on its own
    /// thread (where a spawn only queues), in the order pushed, after `run` returns; and
    /// the tracker counts them, so a wait on it ends only once they have ended.
    #[test]
    fn spawns_pushed_for_another_runtime_are_made_on_its_thread_in_order() {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let other = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            handle_tx
                .send(rt.handle().clone())
                .expect("the test waits for the handle");
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        });
        let other_id = other.thread().id();
        let handle = handle_rx.recv().expect("the other runtime's handle");
        let tracker = Shutdown::new();
        let (made_tx, made_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let mut later = Later::default();
        for i in 0..5 {
            let (made, tracker2, handle2) = (made_tx.clone(), tracker.clone(), handle.clone());
            let mut release = release_rx.clone();
            later.push_on(7, &tracker, &handle, move || {
                tracker2.spawn_on(
                    async move {
                        let _ = release.wait_for(|r| *r).await;
                    },
                    &handle2,
                );
                made.send((i, std::thread::current().id()))
                    .expect("the test listens");
            });
        }
        later.run();
        let made: Vec<_> = (0..5)
            .map(|_| {
                made_rx
                    .recv_timeout(Duration::from_secs(60))
                    .expect("every spawn is made")
            })
            .collect();
        assert_eq!(
            made.iter().map(|m| m.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(made.iter().all(|m| m.1 == other_id));
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        main.block_on(async {
            // The five spawned tasks wait for the release (the task that made them may
            // still be counted for a moment).
            assert!(tracker.running() >= 5);
            release_tx.send(true).expect("the tasks listen");
            assert!(tracker.wait(Duration::from_secs(60)).await);
            assert_eq!(tracker.running(), 0);
        });
        let _ = stop_tx.send(());
        other.join().expect("the other runtime's thread ends");
    }
}
