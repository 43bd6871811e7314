//! In-process wake-ups between submitters, workers and waiters.
//!
//! The database is the source of truth; these only save polling latency inside one process.
//! Other processes' submissions and completions are found by polling, with backoff.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{oneshot, Notify};

/// Wakes waiters of specific runs when this process commits their completion.
#[derive(Default)]
pub struct RunWaiters {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl RunWaiters {
    /// Registers interest in `run_id`; the receiver resolves when [`RunWaiters::completed`] is
    /// called for it (or is dropped).
    pub fn register(&self, run_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let senders = waiting.entry(run_id.to_string()).or_default();
        senders.retain(|s| !s.is_closed());
        senders.push(tx);
        rx
    }

    /// Wakes everyone waiting for these runs.
    pub fn completed<'a>(&self, run_ids: impl IntoIterator<Item = &'a str>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for id in run_ids {
            for tx in waiting.remove(id).unwrap_or_default() {
                let _ = tx.send(());
            }
        }
    }

    /// Forgets waiters of `run_id` that gave up (their receivers were dropped).
    pub fn forget(&self, run_id: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(senders) = waiting.get_mut(run_id) {
            senders.retain(|s| !s.is_closed());
            if senders.is_empty() {
                waiting.remove(run_id);
            }
        }
    }
}

/// The wake-ups one process shares.
#[derive(Default)]
pub struct Signals {
    /// Runs were submitted: idle workers should claim.
    pub submitted: Notify,
    /// Runs completed: their waiters should look.
    pub runs: RunWaiters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completion_wakes_only_its_waiters() {
        let waiters = RunWaiters::default();
        let mut a = waiters.register("a");
        let mut b = waiters.register("b");
        waiters.completed(["a"]);
        assert!(a.try_recv().is_ok());
        assert!(b.try_recv().is_err());
        drop(b);
        waiters.forget("b");
        assert!(waiters.waiting.lock().unwrap().is_empty());
    }
}
