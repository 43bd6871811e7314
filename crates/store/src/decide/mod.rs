//! Scheduling decisions, made once for every backend.
//!
//! A backend stores and fetches; the code here decides. It is written against [`Tx`]: the
//! primitive reads and writes of one open write transaction, which a backend implements without
//! any policy of its own (SQLite: `sqlite::tx::SqliteTx`, on its writer connection inside `BEGIN
//! IMMEDIATE`; PostgreSQL: `postgres::tx::PgTx`, on a pooled connection inside `BEGIN`, taking
//! row and advisory locks as it goes). A decision function runs entirely inside the transaction it is
//! given, so what it reads and what it writes commit together or not at all; the caller opens
//! the transaction, awaits the decision and commits (or rolls back when it fails).
//!
//! What is decided here, by module:
//! - [`claim`]: what a claim hands out (steps whose lease expired first, then queued ones),
//!   whether a step that lost its lease is claimed again or failed, when claims also sweep
//!   deadlines and timers and end the leases of dead workers ([`claim::Sweeper`]), which timers
//!   fired.
//! - [`complete`]: how a batch of completions is applied: validation, fencing by attempt,
//!   key-value conflicts, how a completion leaves its step, when a run ends (with its root step),
//!   and every consequence of a commit (children, waits, parents woken, abandoned descendants
//!   cancelled, journal and logs).
//! - [`waits`]: when a wait is over (join-all waits for every child, join-any for one; an event
//!   already sent), which waiting parents wake when children finish, what an event wakes.
//! - [`deadlines`]: which schedule-to-start and run deadlines expired, and what fails with them.
//! - [`cancel`]: what a cancel, a run's failure or a step's end cascades to.
//! - [`resume`]: which steps of a run re-queue, where a workflow's journal is cut
//!   (`hypergraph_core::journal::resume_cut`), which children are superseded, pins.
//! - [`errors`]: the errors the store records on its own.
//!
//! Every backend implements [`Tx`] and the read queries of [`crate::Store`]; the decisions and
//! the conformance suite are shared.
//!
//! # Async
//!
//! [`Tx`]'s methods are `async fn`s, so a backend whose driver awaits every statement (sqlx,
//! for PostgreSQL) implements them directly, and every decision is an `async fn` generic over
//! [`Tx`]. A backend with a synchronous connection (SQLite, through rusqlite) returns futures
//! that never suspend and drives a decision with a single poll, without a runtime or a thread
//! hop (see `sqlite::decided`). A decision's future is `Send` whenever the backend's primitive
//! futures are (checked below for a `Send` backend), so an async backend's store methods can
//! await it on a multi-threaded runtime.

pub mod cancel;
pub mod claim;
pub mod complete;
pub mod deadlines;
pub mod errors;
pub mod resume;
pub mod waits;

use anyhow::Result;

use crate::{
    ClaimedStep, Completion, DeploymentKind, JournalRecord, KvWrite, LogRecord, Micros, Policy,
    Status,
};
use complete::StepEnd;

/// A step claimed inside a [`Tx`], before its policy is resolved: the step, how many workflow
/// activations it has had (more than 0: it resumes from its journal) and its own policy
/// overrides (JSON, a DAG step's `[step.policy]`).
pub type RawClaim = (ClaimedStep, i64, Option<String>);

/// A running step whose lease expired, as [`Tx::expired_leases`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The step and its run.
    pub step_id: String,
    pub run_id: String,
    /// The attempt that lost its lease.
    pub attempt: u32,
    /// Leases the step lost before this one.
    pub lost_leases: u32,
    /// The deployment version the step runs.
    pub deployment: String,
    pub version: i64,
    /// The step's own policy overrides (JSON).
    pub overrides: Option<String>,
    /// The worker that held the lease.
    pub worker_id: Option<String>,
}

/// A registered worker holding running steps, as [`Tx::lease_holders`] reads it: what
/// [`crate::WorkerState::at`] needs to tell whether it is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The worker.
    pub worker_id: String,
    /// Its last heartbeat.
    pub last_seen_at: Micros,
    /// Its heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
    /// When it stopped cleanly, if it did.
    pub stopped_at: Option<Micros>,
}

/// A queued step that missed its schedule-to-start deadline, as [`Tx::fail_late_starts`]
/// returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateStart {
    /// The step.
    pub step_id: String,
    /// The workflow step that started it (`None`: the root step of its run).
    pub parent_id: Option<String>,
    /// Its run.
    pub run_id: String,
}

/// A failed or cancelled step of a run being resumed, as [`Tx::resumable_steps`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumableStep {
    /// The step.
    pub step_id: String,
    /// Its latest attempt.
    pub attempt: u32,
    /// Its workflow activations (more than 0: a workflow with a journal to resume from).
    pub activations: i64,
    /// The deployment it runs.
    pub deployment: String,
}

/// A step [`Tx::fence_and_complete`] changed, as it is after the change: what decides which
/// consequences of its end can apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The step.
    pub step_id: String,
    /// Whether it is the root step of its run (it has no parent).
    pub root: bool,
    /// Its workflow activations (checkpoints and suspensions committed). A step with none has
    /// started no children before this completion.
    pub activations: i64,
}

/// One journal record of an attempt, to insert: `(step_id, attempt, record)`.
pub type JournalRow<'a> = (&'a str, u32, &'a JournalRecord);

/// One log line of an attempt, to insert: `(step_id, attempt, line)`.
pub type LogRow<'a> = (&'a str, u32, &'a LogRecord);

/// The primitives of one open write transaction of a backend. Every method reads or writes
/// exactly what it says, decides nothing, and sees the writes made before it in the same
/// transaction; nothing is visible to other transactions until the caller commits. Errors
/// abort the transaction (the caller rolls back). Methods taking a list of ids do nothing for
/// an empty list, and split long lists as the backend's statement limits require.
///
/// "Unfinished" means `queued` or `running`; "ended" means `succeeded`, `failed` or
/// `cancelled`. A step "waits" while `wait` is set (`children`, `timer` or `event`).
// Native `async fn` in a trait (the lint warns that callers cannot require the futures to be
// `Send` through the trait): decisions are generic over `Tx` and awaited on a concrete backend,
// where the futures' auto traits are known (see `tests::a_send_backends_decisions_are_send`).
#[allow(async_fn_in_trait)]
pub trait Tx {
    // -- Claiming --------------------------------------------------------------------------

    /// The running steps whose lease expired strictly before `now`, earliest expiry first, at
    /// most `max`.
    async fn expired_leases(&mut self, now: Micros, max: usize) -> Result<Vec<ExpiredLease>>;

    /// The policy a step runs under (its deployment version's policy overlaid with the step's
    /// `overrides`) and its deployment's kind. Fails when the deployment version does not exist.
    async fn step_policy(
        &mut self,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)>;

    /// Adds one to the lost-lease count of each step of `ids`.
    async fn count_lost_lease(&mut self, ids: &[&str]) -> Result<()>;

    /// Claims the running steps `ids` for `worker_id` under their next attempt: `assigned_at` =
    /// `now`, lease until `lease_until`, lost-lease count plus one; the attempt that lost its
    /// lease is recorded as failed at `now` with `error` (JSON text). Returns the claimed steps.
    async fn reclaim(
        &mut self,
        ids: &[&str],
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        error: &str,
    ) -> Result<Vec<RawClaim>>;

    /// Claims at most `max` queued steps that do not wait and whose `wake_at` is unset or at or
    /// before `now`, oldest (`created_at`) first, for `worker_id`: `running`, `assigned_at` =
    /// `now`, lease until `lease_until`, start deadline cleared, under the same attempt when
    /// the step is a workflow with activations or a re-execution after a key-value conflict,
    /// else under the next one. Returns the claimed steps.
    async fn claim_queued(
        &mut self,
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        max: usize,
    ) -> Result<Vec<RawClaim>>;

    /// Records the claims of the steps `ids` (just claimed): their current attempt is
    /// `running` for their worker since their `assigned_at`, with the hypergraph version that
    /// worker registered (`None` for a worker that did not register) (created or updated), and
    /// their runs not claimed before are claimed at their step's `assigned_at` (`claimed_at`,
    /// read as `running`: [`crate::rows::RUN_SHOWN_STATUS`]); a run's status stays as it was.
    async fn record_claims(&mut self, ids: &[&str]) -> Result<()>;

    /// The registered workers holding a running step whose lease has not expired at `now`
    /// (`lease_expires_at` at or after `now`), each once.
    async fn lease_holders(&mut self, now: Micros) -> Result<Vec<LeaseHolder>>;

    /// Ends the leases of the running steps held by `workers` that have not expired at `now`:
    /// their expiry becomes `now - 1`, so that [`Tx::expired_leases`] finds them from `now` on.
    /// Returns how many it ended.
    async fn end_leases(&mut self, workers: &[&str], now: Micros) -> Result<u64>;

    /// The journal of the newest attempt of `step_id` that has one, in order, and that attempt
    /// (0 and no records when there is none).
    async fn resume_journal(&mut self, step_id: &str) -> Result<(Vec<JournalRecord>, u32)>;

    /// Ends the waits of the steps waiting for a timer or an event whose `wake_at` is at or
    /// before `at` (the event name is cleared; `wake_at` stays).
    async fn end_timed_waits(&mut self, at: Micros) -> Result<()>;

    /// Whether anything a deadline sweep at `at` acts on is there: a queued step not waiting
    /// whose schedule-to-start deadline is at or before `at`, a queued or running run whose
    /// deadline is, or a step waiting for a timer or an event whose `wake_at` is (rows other
    /// transactions hold count too).
    async fn sweep_due(&mut self, at: Micros) -> Result<bool>;

    // -- Deadlines ---------------------------------------------------------------------------

    /// Fails, at `now` with `error` (JSON text), every queued step that does not wait and whose
    /// schedule-to-start deadline is at or before `at`, clearing that deadline. Returns them.
    async fn fail_late_starts(
        &mut self,
        at: Micros,
        now: Micros,
        error: &str,
    ) -> Result<Vec<LateStart>>;

    /// The unfinished runs whose deadline is at or before `at`.
    async fn runs_past_deadline(&mut self, at: Micros) -> Result<Vec<String>>;

    // -- Runs and cancellation ---------------------------------------------------------------

    /// The status and deployment of run `run_id`, `None` when there is no such run.
    async fn run_status(&mut self, run_id: &str) -> Result<Option<(Status, String)>>;

    /// Ends run `run_id`, if it is unfinished, with `status` at `now` and `error` (JSON text).
    async fn end_run(
        &mut self,
        run_id: &str,
        status: Status,
        error: &str,
        now: Micros,
    ) -> Result<()>;

    /// The unfinished steps of run `run_id`.
    async fn unfinished_steps(&mut self, run_id: &str) -> Result<Vec<String>>;

    /// The unfinished steps whose parent is one of `parents`.
    async fn unfinished_children(&mut self, parents: &[&str]) -> Result<Vec<String>>;

    /// Cancels, at `now` with `error` (JSON text), the steps of `ids` that are unfinished (their
    /// waits and leases cleared) and their running attempts. Returns how many steps it
    /// cancelled.
    async fn cancel_steps(&mut self, ids: &[String], now: Micros, error: &str) -> Result<u64>;

    // -- Completing --------------------------------------------------------------------------

    /// The version of key `key` in `scope`, `None` when it is not stored.
    async fn kv_version(&mut self, scope: &str, key: &str) -> Result<Option<i64>>;

    /// The version of each `(scope, key)` of `keys`, in order ([`Tx::kv_version`] of each; a
    /// backend whose statements cost a round trip reads them in one).
    async fn kv_versions(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Option<i64>>> {
        let mut versions = Vec::with_capacity(keys.len());
        for (scope, key) in keys {
            versions.push(self.kv_version(scope, key).await?);
        }
        Ok(versions)
    }

    /// The number of keys of `scope` starting with `prefix` and their newest version (0 when
    /// there is none).
    async fn kv_prefix(&mut self, scope: &str, prefix: &str) -> Result<(i64, i64)>;

    /// Applies key-value `writes` in order (a `None` value deletes), at `now`, stamping every
    /// key written with the next value of the store-wide version counter (taken once).
    async fn apply_kv_writes(&mut self, writes: &[KvWrite], now: Micros) -> Result<()>;

    /// Queues step `step_id` again under the same attempt, as a re-execution after a
    /// key-value conflict (worker, lease and times cleared, re-execution counted on the step
    /// and the attempt), if it is `running` under `attempt`. Returns whether it did.
    async fn requeue_conflicted(&mut self, step_id: &str, attempt: u32) -> Result<bool>;

    /// The status of step `step_id`, `None` when there is no such step.
    async fn step_status(&mut self, step_id: &str) -> Result<Option<Status>>;

    /// Writes each end of `ends` (distinct steps) to its step where the fence holds (the step
    /// is `running` under the completion's attempt): status, output, error, start and
    /// completion times, worker, wait, event and `wake_at` as given; an activation counted when
    /// the step stays running or waits; the lease kept only while it stays running. Returns the
    /// steps it changed, as they are now.
    async fn fence_and_complete(&mut self, ends: &[StepEnd<'_>]) -> Result<Vec<Changed>>;

    /// Makes the current attempt of each step of `ids` mirror its step: `running` while the
    /// step waits, `failed` while it is queued otherwise (a retry), else the step's status;
    /// worker, start (kept once set), completion time and error from the step.
    async fn mirror_attempts(&mut self, ids: &[&str]) -> Result<()>;

    /// For each step of `ids` that has ended, gives its run the step's status, output, error and
    /// completion time. Every step of `ids` must be the root step of its run (as
    /// [`Tx::fence_and_complete`] reports it); a backend need not check.
    async fn end_runs_with_root(&mut self, ids: &[&str]) -> Result<()>;

    /// Creates the children started by the committed `completions`, queued, at `now`; those
    /// their completion's own wait joins ([`waits::joined_at_start`]) awaited.
    async fn insert_children(&mut self, completions: &[&Completion], now: Micros) -> Result<()>;

    /// Inserts journal records.
    async fn insert_journal(&mut self, rows: &[JournalRow<'_>]) -> Result<()>;

    /// Inserts log lines.
    async fn insert_logs(&mut self, rows: &[LogRow<'_>]) -> Result<()>;

    // -- Waits -------------------------------------------------------------------------------

    /// Marks the unfinished steps of `ids` as awaited by their parent (their end counts down its
    /// pending count) and returns how many there are.
    async fn await_unfinished(&mut self, ids: &[String]) -> Result<i64>;

    /// Sets the number of children step `step_id` (under `attempt`) still waits for.
    async fn set_pending(&mut self, step_id: &str, attempt: u32, pending: i64) -> Result<()>;

    /// Ends the wait of step `step_id` under `attempt`: `wait`, its event and `wake_at` cleared,
    /// no children pending.
    async fn end_wait(&mut self, step_id: &str, attempt: u32) -> Result<()>;

    /// Whether an event named `name` newer than sequence number `after` exists.
    async fn event_sent_after(&mut self, name: &str, after: i64) -> Result<bool>;

    /// Counts the awaited steps of `finished` down in their parents that wait for children.
    /// Returns each parent counted down with the number of children it still waits for.
    async fn count_down_parents(&mut self, finished: &[&str]) -> Result<Vec<(String, i64)>>;

    /// Ends the waits of the steps `ids` that wait for children (no children pending).
    async fn end_child_waits(&mut self, ids: &[String]) -> Result<()>;

    /// Records an event (payload: JSON text) sent at `now`; returns its sequence number.
    async fn insert_event(&mut self, name: &str, payload: &str, now: Micros) -> Result<i64>;

    /// Ends the waits of the steps waiting for an event named `name` (event and `wake_at`
    /// cleared); returns how many.
    async fn end_event_waits(&mut self, name: &str) -> Result<u64>;

    // -- Resume ------------------------------------------------------------------------------

    /// The failed and cancelled steps of run `run_id`, by creation then child position.
    async fn resumable_steps(&mut self, run_id: &str) -> Result<Vec<ResumableStep>>;

    /// The steps whose parent is `step_id`.
    async fn children_of(&mut self, step_id: &str) -> Result<Vec<String>>;

    /// Clears the child position of the children of `parent` at position `from` or later;
    /// returns them.
    async fn unposition_children(&mut self, parent: &str, from: u32) -> Result<Vec<String>>;

    /// Creates attempt `attempt` of step `step_id`, `queued`.
    async fn new_attempt(&mut self, step_id: &str, attempt: u32) -> Result<()>;

    /// Queues step `step_id` again: no wait, event, `wake_at`, pending children, output,
    /// error, completion time or lease; with `attempt` `Some(n)`, under attempt `n` with one
    /// activation (a workflow resuming from its journal).
    async fn requeue_step(&mut self, step_id: &str, attempt: Option<u32>) -> Result<()>;

    /// Queues run `run_id` again (no output, error, completion time or claim).
    async fn requeue_run(&mut self, run_id: &str) -> Result<()>;

    /// Moves step `step_id` to `version` (component `digest`) of its deployment.
    async fn pin_step(&mut self, step_id: &str, version: i64, digest: &str) -> Result<()>;

    /// Moves run `run_id` to `version` (component `digest`) of its deployment.
    async fn pin_run(&mut self, run_id: &str, version: i64, digest: &str) -> Result<()>;
}

#[cfg(test)]
mod tests;
