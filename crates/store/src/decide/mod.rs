//! Scheduling decisions, made once for every backend.
//!
//! A backend stores and fetches; the code here decides. It is written against [`Tx`]: the
//! primitive reads and writes of one open write transaction, which a backend implements without
//! any policy of its own (the SQLite backend: `sqlite::SqliteTx`, on its writer connection inside
//! `BEGIN IMMEDIATE`). A decision function runs entirely inside the transaction it is given, so
//! what it reads and what it writes commit together or not at all.
//!
//! Moved here so far: whether a step that lost its lease is claimed again or failed
//! ([`claim`]), how a completion leaves its step ([`complete::step_state`]), whether a join is
//! already over when it is committed ([`waits`]) and the errors the store records on its own
//! ([`errors`]); the resume cut itself is `hypergraph_core::journal::resume_cut`. Still
//! expressed in the SQLite backend's SQL (to move behind [`Tx`] next, with the statements kept
//! as they are): which deadlines and timers expired (`sqlite::workflow::expire`), which parents
//! wake when children finish, what a cancel cascades to, and how a resume applies the cut.

pub mod claim;
pub mod complete;
pub mod errors;
pub mod waits;

use anyhow::Result;

use crate::{ClaimedStep, Completion, Micros, Policy};

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

/// The primitives of one open write transaction of a backend. Every method reads or writes
/// exactly what it says, decides nothing, and sees the writes made before it in the same
/// transaction; nothing is visible to other transactions until the caller commits. Errors
/// abort the transaction (the caller rolls back).
pub trait Tx {
    /// The running steps whose lease expired strictly before `now`, earliest expiry first, at
    /// most `max`.
    fn expired_leases(&mut self, now: Micros, max: usize) -> Result<Vec<ExpiredLease>>;

    /// The policy a step runs under: its deployment version's policy overlaid with the step's
    /// `overrides`. Fails when the deployment version does not exist.
    fn step_policy(
        &mut self,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<Policy>;

    /// Adds one to the lost-lease count of each step of `ids`.
    fn count_lost_lease(&mut self, ids: &[&str]) -> Result<()>;

    /// Applies `completions` exactly as [`crate::Store::complete_steps`] does (fenced by
    /// attempt, atomically, with every consequence), with `now` as the time of the writes the
    /// store makes on its own.
    fn apply_completions(&mut self, completions: &[Completion], now: Micros) -> Result<()>;

    /// Claims the running steps `ids` for `worker_id` under their next attempt: `assigned_at` =
    /// `now`, lease until `lease_until`, lost-lease count plus one; the attempt that lost its
    /// lease is recorded as failed at `now` with `error` (JSON text). Returns the claimed steps.
    fn reclaim(
        &mut self,
        ids: &[&str],
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        error: &str,
    ) -> Result<Vec<RawClaim>>;
}
