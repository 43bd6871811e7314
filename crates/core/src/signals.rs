//! In-process wake-ups between submitters, workers and waiters.
//!
//! The database is the source of truth; these only save polling latency inside one process.
//! Other processes' submissions and completions are found by polling, with backoff, and, where
//! the store delivers other processes' wake-ups, forwarded into these by the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Wakes whoever waits for specific ids (runs, steps) when this process commits their end.
///
/// A waiter registers before it reads the database and waits on the returned [`Notify`] after:
/// an end committed in between is not lost, because [`Waiters::completed`] stores a permit in the
/// `Notify` that the next `notified().await` consumes.
#[derive(Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl Waiters {
    /// Registers interest in every id of `ids`; the returned `Notify` is notified once any of
    /// them completes. Call [`Waiters::forget`] for the same ids when giving up.
    pub fn register<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            waiting
                .entry(id.to_string())
                .or_default()
                .push(notify.clone());
        }
        notify
    }

    /// Wakes everyone waiting for any of these ids, and forgets them.
    pub fn completed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            for notify in waiting.remove(id).unwrap_or_default() {
                notify.notify_one();
            }
        }
    }

    /// Wakes everyone waiting for anything, and forgets them (when what ended is not known).
    pub fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for notify in waiting.into_values().flatten() {
            notify.notify_one();
        }
    }

    /// Forgets registrations for these ids whose waiters are gone (their `Notify` is only held
    /// here).
    pub fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(notifies) = waiting.get_mut(id) {
                notifies.retain(|n| Arc::strong_count(n) > 1);
                if notifies.is_empty() {
                    waiting.remove(id);
                }
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
    pub runs: Waiters,
    /// Steps finished (succeeded, failed or cancelled): workflows lingering on them should look.
    pub steps: Waiters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completion_wakes_only_its_waiters_even_before_they_wait() {
        let waiters = Waiters::default();
        let a = waiters.register(["a"]);
        let b = waiters.register(["b", "c"]);
        waiters.completed(["a"]);
        // Notified before anyone awaited: the permit is kept.
        tokio::time::timeout(std::time::Duration::from_secs(1), a.notified())
            .await
            .expect("a was woken");
        let woke_b = tokio::time::timeout(std::time::Duration::from_millis(20), b.notified());
        assert!(woke_b.await.is_err(), "b was not completed");
        waiters.completed(["c"]);
        b.notified().await;
        let c = waiters.register(["c"]);
        waiters.wake_all();
        c.notified().await;
        assert!(waiters.waiting.lock().unwrap().is_empty());
        drop((a, b));
        waiters.forget(["a", "b", "c"]);
        assert!(waiters.waiting.lock().unwrap().is_empty());
    }

    #[test]
    fn forget_keeps_live_registrations() {
        let waiters = Waiters::default();
        let live = waiters.register(["x"]);
        let gone = waiters.register(["x"]);
        drop(gone);
        waiters.forget(["x"]);
        assert_eq!(waiters.waiting.lock().unwrap()["x"].len(), 1);
        drop(live);
    }
}
