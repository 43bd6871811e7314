//! Wake-ups from other processes ([`Store::subscribe`]), forwarded into one handle's in-process
//! [`Signals`]: a submission or a completion committed elsewhere wakes this process's idle
//! workers and waiters as one committed here does.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::signals::Signals;
use crate::store::wake::{Wake, Wakeups};
use crate::store::Store;

/// Forwarding that runs until it is dropped.
pub(crate) struct Remote {
    listening: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Remote {
    /// Starts forwarding the wake-ups of `store` into `signals`; `None` when the store delivers
    /// none.
    pub(crate) fn start(store: &dyn Store, signals: Arc<Signals>) -> Option<Remote> {
        let wakeups = store.subscribe()?;
        Some(Remote {
            listening: wakeups.listening_handle(),
            task: tokio::spawn(forward(wakeups, signals)),
        })
    }

    /// Whether other processes' wake-ups are being delivered right now.
    pub(crate) fn listening(&self) -> bool {
        *self.listening.borrow()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Passes every wake-up on: work wakes idle workers, ended runs their waiters, and lost wake-ups
/// everyone.
async fn forward(mut wakeups: Wakeups, signals: Arc<Signals>) {
    while let Some(wake) = wakeups.recv().await {
        match wake {
            Wake::Work => signals.submitted.notify_waiters(),
            Wake::Runs(ids) => signals.runs.completed(ids.iter().map(String::as_str)),
            Wake::Lost => {
                signals.submitted.notify_waiters();
                signals.runs.wake_all();
                signals.steps.wake_all();
            }
        }
    }
}
