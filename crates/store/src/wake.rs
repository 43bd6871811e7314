//! Wake-ups from other processes: hints that work may be claimable or that runs may have ended,
//! committed by another process on the same database (see [`crate::Store::subscribe`]).
//!
//! A wake-up is only a hint, sent after the commit it announces: whoever receives one reads the
//! database to find out what changed, and whoever relies on them still polls, more slowly, for
//! what was never announced (a lost connection, a writer that does not announce, a timer that
//! came due). [`Wakeups::listening`] says whether wake-ups are being delivered at all, so a
//! poller can choose its interval.

use tokio::sync::{broadcast, watch};

/// Wake-ups buffered per subscriber before it counts as fallen behind ([`Wake::Lost`]).
pub const BUFFERED: usize = 1024;

/// What another process committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Steps may have become claimable (runs submitted, children created, workflows woken,
    /// steps re-queued).
    Work,
    /// These runs may have ended (a step of each ended, or the run was cancelled).
    Runs(Vec<String>),
    /// Wake-ups may have been lost (the listener connected or reconnected, lost its connection,
    /// or this subscriber fell behind): anything may have changed.
    Lost,
}

/// The sending side of [`Wakeups`], held by a backend that delivers them.
pub struct WakeSender {
    wakes: broadcast::Sender<Wake>,
    listening: watch::Sender<bool>,
}

impl Default for WakeSender {
    fn default() -> Self {
        WakeSender {
            wakes: broadcast::channel(BUFFERED).0,
            listening: watch::channel(false).0,
        }
    }
}

impl WakeSender {
    /// Delivers `wake` to every current subscriber (none: it is dropped).
    pub fn send(&self, wake: Wake) {
        let _ = self.wakes.send(wake);
    }

    /// Records whether wake-ups are being delivered; a change to either state also sends
    /// [`Wake::Lost`] (while they were not delivered, or from now on, nothing is announced).
    pub fn set_listening(&self, listening: bool) {
        if self.listening.send_replace(listening) != listening {
            self.send(Wake::Lost);
        }
    }

    /// A new subscription: the wake-ups sent from now on.
    pub fn subscribe(&self) -> Wakeups {
        Wakeups {
            wakes: self.wakes.subscribe(),
            listening: self.listening.subscribe(),
        }
    }
}

/// A subscription to the wake-ups of other processes (see [`crate::Store::subscribe`]).
pub struct Wakeups {
    wakes: broadcast::Receiver<Wake>,
    listening: watch::Receiver<bool>,
}

impl Wakeups {
    /// The next wake-up: [`Wake::Lost`] when this subscriber fell more than [`BUFFERED`]
    /// behind; `None` once the store was dropped (a closed store sends nothing more).
    pub async fn recv(&mut self) -> Option<Wake> {
        match self.wakes.recv().await {
            Ok(wake) => Some(wake),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Wake::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Whether wake-ups are being delivered right now (the backend is connected and listening).
    /// While it is false, announcements are lost and only polling finds other processes' work.
    pub fn listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// A handle that reads [`Wakeups::listening`] without receiving wake-ups.
    pub fn listening_handle(&self) -> watch::Receiver<bool> {
        self.listening.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_wakes_and_listening_changes() {
        let sender = WakeSender::default();
        let mut wakeups = sender.subscribe();
        assert!(!wakeups.listening());
        sender.set_listening(true);
        assert!(wakeups.listening());
        sender.set_listening(true);
        sender.send(Wake::Work);
        sender.set_listening(false);
        assert_eq!(wakeups.recv().await, Some(Wake::Lost));
        assert_eq!(wakeups.recv().await, Some(Wake::Work));
        assert_eq!(wakeups.recv().await, Some(Wake::Lost));
        for _ in 0..=BUFFERED {
            sender.send(Wake::Work);
        }
        assert_eq!(wakeups.recv().await, Some(Wake::Lost), "fell behind");
        drop(sender);
        while let Some(wake) = wakeups.recv().await {
            assert_eq!(wake, Wake::Work);
        }
    }
}
