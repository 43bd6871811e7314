//! Time as Hypergraph stores it, and the clocks that tell it.
//!
//! Every timestamp is [`Micros`]: microseconds since the Unix epoch, UTC. Code that decides by
//! time (lease expiry, deadlines, timers, backoff) reads a [`Clock`] rather than the system
//! clock, so tests drive time with a [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// The current time in [`Micros`], read from the system clock.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as Micros)
        .unwrap_or(0)
}

/// The time `millis` milliseconds after `from`, saturating instead of overflowing.
pub fn micros_after(from: Micros, millis: u64) -> Micros {
    from.saturating_add(i64::try_from(millis.saturating_mul(1000)).unwrap_or(i64::MAX))
}

/// The time from `from` to `to` (both set), never negative: each is read from the clock of the
/// process that wrote it (a claimant reads "now" before its statements run, so a submission that
/// commits in between can look created after it was claimed; clocks of different machines
/// differ), so a span that comes out negative was too short to measure and is 0.
pub fn span(from: Option<Micros>, to: Option<Micros>) -> Option<Micros> {
    match (from, to) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).max(0)),
        _ => None,
    }
}

/// A source of the current time. Implementations are cheap to call and never go backwards by
/// more than the system clock does.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Micros;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        now_micros()
    }
}

/// A clock that moves only when told to: for tests of deadlines, backoff and lease expiry
/// without sleeping. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Micros) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Micros) {
        self.0.store(to, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_need_both_ends_and_are_never_negative() {
        assert_eq!(span(Some(10), Some(25)), Some(15));
        assert_eq!(span(Some(25), Some(10)), Some(0));
        assert_eq!(span(None, Some(10)), None);
        assert_eq!(span(Some(10), None), None);
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1_000);
        clock.advance(Duration::from_millis(2));
        assert_eq!(shared.now(), 3_000);
        shared.set(10);
        assert_eq!(clock.now(), 10);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(micros_after(i64::MAX - 1, 5), i64::MAX);
        assert_eq!(micros_after(0, 3), 3_000);
    }
}
