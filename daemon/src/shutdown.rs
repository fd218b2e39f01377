//! The one shutdown signal every long-lived task watches, and the tracker that tells the
//! top loop when they have all ended.
//!
//! Tasks are spawned through [`Shutdown::spawn`] (or `spawn_on` for a log thread): each
//! runs until it ends by itself or the token is cancelled, whichever comes first, and the
//! tracker counts it until then (its drop guard). Cancelling drops the task's future at
//! its next `.await`, so a task must keep its state consistent at every await point, as
//! any cancel-safe future does; nothing is aborted from outside. [`Shutdown::child`] gives
//! a narrower token (one stream of one connection) that the parent's cancel reaches too.

use std::future::Future;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns put off until [`Later::run`]: a re-exec makes every program (entry, ring, state)
/// and publishes them before any of their tasks is spawned, so that `status` answers as
/// soon as they are published and spawning a thousand tasks is not on that path.
#[derive(Default)]
pub struct Later(Vec<Box<dyn FnOnce() + Send>>);

impl Later {
    pub fn push(&mut self, spawn: impl FnOnce() + Send + 'static) {
        self.0.push(Box::new(spawn));
    }

    /// Spawns everything, in the order pushed.
    pub fn run(self) {
        for spawn in self.0 {
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
}
