//! Worker processes as the database sees them: who they are, whether they are alive, and what
//! they hold and did.
//!
//! Every `serve` / `worker` process registers a [`WorkerInfo`] when it starts, heartbeats (its
//! last-seen time) every [`WorkerInfo::heartbeat_ms`] while it runs, and marks itself stopped when
//! it shuts down cleanly. Whether a worker is alive is decided here, once for every backend and
//! every reader, by [`WorkerState::at`] from its last heartbeat, its own interval, whether it
//! stopped, and the time (a parameter, so tests drive it with a manual clock):
//!
//! - `live`: heard from within [`STALE_AFTER_BEATS`] heartbeat intervals;
//! - `stale`: silent for more than [`STALE_AFTER_BEATS`] intervals, up to [`DEAD_AFTER_BEATS`]
//!   (stalled, overloaded, paused, or on its way to dead);
//! - `dead`: silent for more than [`DEAD_AFTER_BEATS`] intervals; the steps it holds are claimed
//!   again without waiting for their leases to expire;
//! - `stopped`: it shut down cleanly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Micros;

/// How often a worker heartbeats unless told otherwise (`serve --heartbeat`).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

/// The shortest heartbeat interval a worker accepts: shorter ones would make a database write
/// out of every few milliseconds of every worker.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// A worker silent for more than this many of its heartbeat intervals is `stale`.
pub const STALE_AFTER_BEATS: i64 = 3;

/// A worker silent for more than this many of its heartbeat intervals is `dead`, and its leases
/// are reclaimed early.
pub const DEAD_AFTER_BEATS: i64 = 6;

/// The window of [`WorkerView::completed_recently`].
pub const RECENT: Duration = Duration::from_secs(60);

/// A worker process, as it registers itself when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per process: `<host>/<pid>/<random suffix>`; recorded with every attempt it runs.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// The hypergraph version the process runs.
    pub version: String,
    /// Steps it executes at once.
    pub concurrency: u32,
    /// How often it heartbeats, in milliseconds; its state is judged against it.
    pub heartbeat_ms: u64,
    pub started_at: Micros,
}

/// Whether a worker is alive, as [`WorkerState::at`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Heard from within [`STALE_AFTER_BEATS`] heartbeat intervals.
    Live,
    /// Silent for more than [`STALE_AFTER_BEATS`] intervals, at most [`DEAD_AFTER_BEATS`].
    Stale,
    /// Silent for more than [`DEAD_AFTER_BEATS`] intervals.
    Dead,
    /// Shut down cleanly.
    Stopped,
}

impl WorkerState {
    /// The state at `now` of a worker last heard from at `last_seen_at`, heartbeating every
    /// `heartbeat_ms` milliseconds (at least 1), and stopped at `stopped_at` if it shut down.
    pub fn at(
        now: Micros,
        last_seen_at: Micros,
        heartbeat_ms: u64,
        stopped_at: Option<Micros>,
    ) -> WorkerState {
        if stopped_at.is_some() {
            return WorkerState::Stopped;
        }
        let beat = i64::try_from(heartbeat_ms.max(1))
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let silent = now.saturating_sub(last_seen_at);
        if silent > beat.saturating_mul(DEAD_AFTER_BEATS) {
            WorkerState::Dead
        } else if silent > beat.saturating_mul(STALE_AFTER_BEATS) {
            WorkerState::Stale
        } else {
            WorkerState::Live
        }
    }

    /// Whether the leases a worker in this state holds are void: it is dead or stopped, so no
    /// attempt of it is running any more (a dead worker that comes back has its late results
    /// fenced off, as after any lost lease).
    pub fn is_gone(self) -> bool {
        matches!(self, WorkerState::Dead | WorkerState::Stopped)
    }

    /// `live`, `stale`, `dead` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Live => "live",
            WorkerState::Stale => "stale",
            WorkerState::Dead => "dead",
            WorkerState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running step a worker holds (its lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStep {
    pub step_id: String,
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    pub lease_expires_at: Option<Micros>,
}

/// A worker as the store reads it back (what `hypergraph workers list` shows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    #[serde(flatten)]
    pub info: WorkerInfo,
    /// The schema version of the database when it registered (its binary's).
    pub schema_version: i64,
    /// Its last heartbeat (its stop, once stopped).
    pub last_seen_at: Micros,
    pub stopped_at: Option<Micros>,
    /// Its state when it was read ([`WorkerState::at`]).
    pub state: WorkerState,
    /// The running steps it holds, oldest claim first.
    pub holding: Vec<HeldStep>,
    /// Attempts it ran to their end (reported a result for) within [`RECENT`] before it was read.
    pub completed_recently: u64,
    /// When it last reported the end of an attempt.
    pub last_completed_at: Option<Micros>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_multiples_of_the_workers_own_heartbeat() {
        let seen = 1_000_000_000;
        let at = |after_ms: i64, beat_ms: u64| {
            WorkerState::at(seen + after_ms * 1000, seen, beat_ms, None)
        };
        assert_eq!(at(0, 1000), WorkerState::Live);
        assert_eq!(at(3000, 1000), WorkerState::Live);
        assert_eq!(at(3001, 1000), WorkerState::Stale);
        assert_eq!(at(6000, 1000), WorkerState::Stale);
        assert_eq!(at(6001, 1000), WorkerState::Dead);
        // A shorter interval dies sooner.
        assert_eq!(at(601, 100), WorkerState::Dead);
        assert_eq!(at(6001, 2000), WorkerState::Stale);
        assert_eq!(at(12_000, 2000), WorkerState::Stale);
        assert_eq!(at(12_001, 2000), WorkerState::Dead);
        // A clock a little behind the heartbeat is not silence.
        assert_eq!(at(-5, 1000), WorkerState::Live);
        assert_eq!(at(0, 0), WorkerState::Live);
        assert_eq!(
            WorkerState::at(seen + 1, seen, 1000, Some(seen)),
            WorkerState::Stopped
        );
        assert!(WorkerState::Dead.is_gone() && WorkerState::Stopped.is_gone());
        assert!(!WorkerState::Live.is_gone() && !WorkerState::Stale.is_gone());
        assert_eq!(
            serde_json::to_value(WorkerState::Stale).unwrap(),
            serde_json::json!("stale")
        );
    }
}
