//! Durable storage: one trait, one implementation per database engine.
//!
//! Everything Hypergraph knows lives behind [`Store`]: components (content-addressed bytes),
//! deployments (versioned names), runs, steps, attempts, the journal of every host call, and log
//! lines. The CLI, the worker and (later) the HTTP API all read the same tables; there is no second
//! trace store.
//!
//! Contracts every implementation keeps:
//! - **Atomic completion.** [`Store::complete_steps`] commits each completion (status, output, error,
//!   journal, logs, key-value writes, run status) in one transaction: after a crash either all of
//!   it is visible or none. Key-value writes of a failed attempt are never applied.
//! - **Fencing.** A completion is applied only if the step is still `running` under the same attempt
//!   number; a stale attempt (its lease expired and the step was claimed again) gets
//!   [`CommitOutcome::Fenced`] and changes nothing.
//! - **Key-value isolation.** A completion ending its attempt is applied only if every key-value
//!   read it lists ([`Completion::kv_reads`]) still holds, checked in the same transaction after
//!   the completions before it in the batch; otherwise it gets [`CommitOutcome::Conflict`],
//!   nothing of it is written, and the step is queued again under the same attempt number. Every
//!   committed write stamps its key with a new version from a store-wide counter.
//! - **Nothing outlives its step.** When a step ends (succeeded, failed or cancelled, not queued
//!   for a retry), its unfinished descendants (children it started and did not join, their
//!   children, ...) are cancelled in the same transaction.
//! - **Exactly one claimant.** [`Store::claim_steps`] hands a queued step (or a running step whose
//!   lease has expired) to exactly one caller, across threads and processes, bumping its attempt.
//!   A lease also ends early when the worker holding it is dead (silent for more than
//!   [`hypergraph_core::worker::DEAD_AFTER_BEATS`] of its heartbeat intervals) or stopped.
//! - **Workers are visible.** Every worker registers ([`Store::register_worker`]), heartbeats
//!   and marks its clean stop; every attempt records the worker that ran it and the hypergraph
//!   version it registered; [`Store::workers`] reads them back with their state.
//! - **Time is a parameter.** A store reads "now" from the [`hypergraph_core::time::Clock`] it
//!   was opened with (the system clock unless told otherwise, e.g.
//!   [`sqlite::SqliteStore::open_with_clock`]): every timestamp it writes on its own and every
//!   comparison with now (expired leases, `retry_at`, schedule-to-start and run deadlines, timers,
//!   event-wait deadlines) uses it, so tests drive time with a `ManualClock`. Timestamps a caller
//!   passes in (a completion's `completed_at`, a run's `created_at` and deadlines) are stored as
//!   given.
//! - **Decisions are shared.** Every decision a write makes (what a claim hands out, whether a
//!   step that lost its lease is reclaimed or failed, how completions are fenced and applied,
//!   when a run ends, which deadlines expired, which waits are over and which parents wake, what
//!   a cancel cascades to, where a resume cuts, the errors the store records) lives in
//!   [`decide`], written against the async [`decide::Tx`] primitives a backend implements.
//! - **Wake-ups are hints.** A backend that delivers wake-ups to other processes
//!   ([`Store::subscribe`]) sends them after the commit they announce, never inside it; losing
//!   one costs latency, never correctness.
//! - **One contract, one suite.** With the `conformance` feature, `conformance` holds a test
//!   suite generic over a backend, expanded by `conformance_suite!` into one test per contract;
//!   every backend passes it unchanged.
//! - Timestamps are microseconds since the Unix epoch (UTC); JSON columns hold text.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod copy;
pub mod decide;
pub mod location;
pub mod options;
pub mod postgres;
mod rows;
pub mod sqlite;
mod transient;
pub mod wake;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;

pub use hypergraph_core::model::*;
pub use hypergraph_core::time::{micros_after, now_micros, span, Micros};
pub use options::{Durability, OpenOptions};
/// The sqlx this crate is built on (for tools and tests that query a database directly).
pub use sqlx;
pub use transient::is_transient;

/// Opens the database at `location` with the backend it names (see
/// [`location::DbLocation::parse`]), reading the time from the system clock, with
/// [`Durability::Strict`].
pub async fn open(location: &location::DbLocation) -> Result<Arc<dyn Store>> {
    open_with(location, &OpenOptions::default()).await
}

/// [`open`] with the time read from `clock`.
pub async fn open_with_clock(
    location: &location::DbLocation,
    clock: Arc<dyn hypergraph_core::time::Clock>,
) -> Result<Arc<dyn Store>> {
    let options = OpenOptions {
        clock,
        ..OpenOptions::default()
    };
    open_with(location, &options).await
}

/// [`open`] with `options` (clock and durability).
pub async fn open_with(
    location: &location::DbLocation,
    options: &OpenOptions,
) -> Result<Arc<dyn Store>> {
    Ok(match location {
        location::DbLocation::Postgres(url) => {
            Arc::new(postgres::PgStore::open_with(url, options).await?)
        }
        sqlite => Arc::new(sqlite::SqliteStore::open_location_with(sqlite, options).await?),
    })
}

/// The storage contract. See the module docs for the guarantees every implementation keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores component bytes under their digest; storing the same digest twice is a no-op.
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()>;
    /// The bytes of a stored component.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>>;

    /// Binds `name` to `digest`. Returns the existing latest version unchanged when it already has
    /// this digest, kind and policy, else creates version `latest + 1` (1 for a new name).
    async fn deploy(
        &self,
        name: &str,
        digest: &str,
        kind: DeploymentKind,
        policy: &Policy,
    ) -> Result<Deployment>;
    /// The newest version of a deployment.
    async fn latest_deployment(&self, name: &str) -> Result<Option<Deployment>>;
    /// One specific version of a deployment.
    async fn deployment_version(&self, name: &str, version: i64) -> Result<Option<Deployment>>;
    /// The newest version of every deployment, by name.
    async fn deployments(&self) -> Result<Vec<Deployment>>;

    /// Enqueues runs (each with its single step, status `queued`) in one transaction.
    async fn submit_runs(&self, runs: &[NewRun]) -> Result<()>;
    /// Claims up to `max` steps for `worker_id`: running ones whose lease expired (or whose
    /// worker is dead or stopped) first (looked for at most every
    /// [`decide::claim::Sweeper::LEASES_INTERVAL`] of this handle's clock), then queued ones
    /// (oldest first). Each returned step is `running` with `attempt` bumped, `assigned_at` =
    /// now and a lease until now + `lease`.
    async fn claim_steps(
        &self,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>>;
    /// Extends the leases of the given (step, attempt) pairs still owned by this worker.
    async fn renew_leases(
        &self,
        worker_id: &str,
        steps: &[(String, u32)],
        lease: Duration,
    ) -> Result<()>;
    /// Commits completions; each one is atomic and fenced (see module docs). Outcomes are returned
    /// in the order of `completions`.
    async fn complete_steps(&self, completions: &[Completion]) -> Result<Vec<CommitOutcome>>;
    /// [`Store::complete_steps`], then [`Store::claim_steps`] for `worker_id` in the same
    /// transaction where the backend can (so children a completion created, or a workflow it
    /// woke, are claimed without another round trip).
    async fn complete_and_claim(
        &self,
        completions: &[Completion],
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<CommitOutcome>, Vec<ClaimedStep>)> {
        let outcomes = self.complete_steps(completions).await?;
        let claimed = self.claim_steps(worker_id, max, lease).await?;
        Ok((outcomes, claimed))
    }

    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;
    /// One run with all its steps and attempts.
    async fn run(&self, id: &str) -> Result<Option<RunDetail>> {
        self.run_view(id, &StepQuery::default()).await
    }
    /// One run with the steps `steps` selects (and their attempts), and every step counted by
    /// status: reading a run with 100,000 children this way costs what the page costs.
    async fn run_view(&self, id: &str, steps: &StepQuery) -> Result<Option<RunDetail>>;
    /// The status of a run (cheap; used to wait for completion).
    async fn run_status(&self, id: &str) -> Result<Option<Status>>;
    /// The outcome of a run in one query (what `run --wait` prints).
    async fn run_result(&self, id: &str) -> Result<Option<RunResult>>;
    /// All log lines of a run, by step, attempt and sequence.
    async fn run_logs(&self, id: &str) -> Result<Vec<RunLogLine>>;
    /// The journal of one attempt, in sequence order.
    async fn journal(&self, step_id: &str, attempt: u32) -> Result<Vec<JournalRecord>>;

    /// The status, output and error of each step in `ids`, in that order.
    async fn step_outcomes(&self, ids: &[String]) -> Result<Vec<StepOutcome>>;
    /// The sequence number of the newest event (0 when none was sent).
    async fn last_event_seq(&self) -> Result<i64>;
    /// The oldest event named `name` newer than `after`: its sequence number and payload.
    async fn next_event(&self, name: &str, after: i64) -> Result<Option<(i64, String)>>;
    /// Records an event (payload: JSON text) and wakes every step waiting for its name. Returns
    /// its sequence number and how many steps it woke.
    async fn send_event(&self, name: &str, payload: &str) -> Result<(i64, u64)>;
    /// Cancels run `id` and every unfinished step of it (children included); running attempts are
    /// fenced off and their workers interrupt them. `None` when there is no such run.
    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>>;
    /// Of the given (step, attempt) pairs, those whose step was cancelled.
    async fn cancelled_steps(&self, steps: &[(String, u32)]) -> Result<Vec<(String, u32)>>;
    /// Re-queues the failed and cancelled steps of a failed or cancelled run, keeping every
    /// completed step and its output. A workflow step continues in a new attempt from its
    /// journal up to the first join that saw a failed child, so it waits for the re-run
    /// children and reuses everything else. `pins` moves the run and its re-queued steps to
    /// another version of their deployment (by deployment name). Returns how many steps were
    /// re-queued, or `None` when there is no such run.
    async fn resume_run(
        &self,
        id: &str,
        pins: &HashMap<String, (i64, String)>,
    ) -> Result<Option<u64>>;

    /// The value stored under `key` in `scope`, with its version (see [`KvRead`]).
    async fn kv_get(&self, scope: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>>;
    /// The keys of `scope` starting with `prefix`, in byte order, at most `limit`, read in one
    /// snapshot with the prefix's key count and newest version.
    async fn kv_list(&self, scope: &str, prefix: &str, limit: u32) -> Result<KvListing>;

    /// Registers a worker process as it starts: its identity and settings, this database's
    /// schema version, last seen now, not stopped. Registering an id again replaces its row.
    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()>;
    /// Records a heartbeat of worker `id`: last seen now.
    async fn heartbeat_worker(&self, id: &str) -> Result<()>;
    /// Marks worker `id` stopped (it shut down cleanly) now; it shows as `stopped` from then
    /// on, and any step it still holds is reclaimed without waiting for its lease.
    async fn stop_worker(&self, id: &str) -> Result<()>;
    /// The workers last seen within `seen_within` of now, and every worker holding a running
    /// step however long ago it was seen, newest start first: each with its state at now
    /// ([`WorkerState::at`]), the running steps it holds (oldest claim first), and how many
    /// attempts it reported the end of within [`hypergraph_core::worker::RECENT`] before now
    /// and when it last did.
    async fn workers(&self, seen_within: Duration) -> Result<Vec<WorkerView>>;

    /// Wake-ups from other processes sharing this database: announcements, sent after they
    /// commit, that steps may be claimable or runs may have ended (see [`wake`]). `None` when
    /// the backend delivers none (SQLite, whose writers share one process, which wakes its own
    /// workers and waiters): other processes' work is then found by polling alone. Wake-ups
    /// are hints that may be lost, so a subscriber still polls, at most as slowly as
    /// [`wake::Wakeups::listening`] allows. Call from within a Tokio runtime.
    fn subscribe(&self) -> Option<wake::Wakeups> {
        None
    }

    /// Releases the store's connections and leaves the database self-contained (SQLite: the
    /// write-ahead log checkpointed into the file). Call it once, when the process is done.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
