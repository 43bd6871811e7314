//! Claiming: what a claim hands out, when it sweeps, and what happens to steps whose lease
//! expired.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Result;

use super::{errors, RawClaim, Tx};
use crate::{ClaimedStep, Completion, Micros, Policy, Status, WorkerState};
use hypergraph_core::limits::max_lost_leases;

/// What becomes of a step that just lost a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostLease {
    /// It is claimed again under a new attempt.
    Reclaim,
    /// It has lost this many leases, its policy's limit: it fails with `lease_expired`.
    Fail(u32),
}

/// Decides the fate of a step that lost a lease after losing `lost_before` ones: a step that has
/// now lost `max_lost_leases` (policy, default [`hypergraph_core::limits`]) fails, else it is
/// claimed again.
pub fn on_lost_lease(lost_before: u32, policy: &Policy) -> LostLease {
    let lost = lost_before + 1;
    if lost < max_lost_leases(policy) {
        LostLease::Reclaim
    } else {
        LostLease::Fail(lost)
    }
}

/// What a claim sweeps before it claims (see [`Sweeper`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Apply the deadlines that expired ([`super::deadlines::expire`]) and end the waits of
    /// timers and event timeouts that passed.
    pub deadlines: bool,
    /// End the leases held by dead or stopped workers ([`end_leases_of_gone_workers`]).
    pub workers: bool,
    /// Look for running steps whose lease expired and claim them again ([`reclaim_expired`]).
    pub leases: bool,
}

/// When claims also sweep. Deadlines and timers are swept when at least
/// [`Sweeper::INTERVAL`] passed since the last such sweep of this store handle, expired leases
/// when at least [`Sweeper::LEASES_INTERVAL`] passed (a lease lasts seconds, so a step waits
/// for its lease to expire far longer than for the next look), the leases of gone workers when
/// at least [`Sweeper::WORKERS_INTERVAL`] passed (a worker is dead only after several heartbeats
/// of seconds, so a coarser cadence loses nothing), with a look at expired leases to claim what
/// they held; all on its first claim.
/// So the sweep costs little however often workers claim, and a step is never claimed while a
/// deadline that expired more than an interval ago still holds it (see [`claim`] for why the
/// sweep runs on the claim path).
#[derive(Debug)]
pub struct Sweeper {
    next: AtomicI64,
    next_leases: AtomicI64,
    next_workers: AtomicI64,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper {
            next: AtomicI64::new(i64::MIN),
            next_leases: AtomicI64::new(i64::MIN),
            next_workers: AtomicI64::new(i64::MIN),
        }
    }
}

impl Sweeper {
    /// How often claims also apply deadlines and fire timers.
    pub const INTERVAL: Duration = Duration::from_millis(10);

    /// How often claims also look for expired leases (a look costs a query, and most claims
    /// find none).
    pub const LEASES_INTERVAL: Duration = Duration::from_millis(100);

    /// How often claims also end the leases of dead and stopped workers.
    pub const WORKERS_INTERVAL: Duration = Duration::from_secs(1);

    /// What a claim at `now` sweeps; each part swept is next due an interval later.
    pub fn due(&self, now: Micros) -> Sweep {
        let workers = Self::take(&self.next_workers, now, Self::WORKERS_INTERVAL);
        let leases = Self::take(&self.next_leases, now, Self::LEASES_INTERVAL);
        Sweep {
            deadlines: Self::take(&self.next, now, Self::INTERVAL),
            workers,
            leases: leases || workers,
        }
    }

    /// Whether `next` is due at `now`; when it is, moves it `interval` past `now`.
    fn take(next: &AtomicI64, now: Micros, interval: Duration) -> bool {
        if next.load(Ordering::Relaxed) > now {
            return false;
        }
        next.store(
            crate::micros_after(now, interval.as_millis() as u64),
            Ordering::Relaxed,
        );
        true
    }
}

/// Ends the leases of the running steps held by workers that are gone at `now`: dead (silent
/// for more than [`hypergraph_core::worker::DEAD_AFTER_BEATS`] of their heartbeat intervals)
/// or stopped ([`WorkerState::is_gone`]), so they are reclaimed now rather than when their
/// leases would have expired. A worker that is only slow keeps its leases; one that comes back
/// after being found dead has its late results fenced off, as after any lost lease. Returns
/// how many leases it ended. Runs inside `tx`.
pub async fn end_leases_of_gone_workers(tx: &mut impl Tx, now: Micros) -> Result<u64> {
    let holders = tx.lease_holders(now).await?;
    let gone: Vec<&str> = holders
        .iter()
        .filter(|w| WorkerState::at(now, w.last_seen_at, w.heartbeat_ms, w.stopped_at).is_gone())
        .map(|w| w.worker_id.as_str())
        .collect();
    if gone.is_empty() {
        return Ok(0);
    }
    tx.end_leases(&gone, now).await
}

/// Claims up to `max` steps for `worker_id` at `now`, each leased until `lease_until` (see
/// [`crate::Store::claim_steps`]), inside `tx`.
///
/// It first sweeps what `sweep` says (see [`Sweeper`]): the deadlines that expired by `now` and
/// the waits of timers and event timeouts that passed, and the leases of workers that are gone
/// ([`end_leases_of_gone_workers`], which [`reclaim_expired`] then claims), and whether it looks
/// for expired leases at all. The sweep runs here, in the claiming transaction, rather than on a
/// schedule of the runtime's own: the claim query does not look at
/// deadlines, so what keeps a claim from handing out a step whose schedule-to-start deadline
/// expired (or whose run is past its deadline) more than a sweep interval ago is that the
/// transaction that claims applies them first; a sweep on another schedule would widen that
/// window to its own period and add a write transaction per period in every worker process,
/// busy or idle. The cadence itself is shared ([`Sweeper`]), so every backend sweeps alike.
///
/// Steps that lost their lease come first ([`reclaim_expired`], when the sweep looks for them):
/// they are the oldest work, and a queue that never runs dry must not starve them. Then queued
/// steps, oldest first. Each claimed step gets its policy and kind, and a workflow with
/// activations its journal to resume from.
pub async fn claim(
    tx: &mut impl Tx,
    worker_id: &str,
    max: usize,
    now: Micros,
    lease_until: Micros,
    sweep: Sweep,
) -> Result<Vec<ClaimedStep>> {
    // One query finds whether there is anything to sweep (there mostly is not).
    if sweep.deadlines && tx.sweep_due(now).await? {
        super::deadlines::expire(tx, now).await?;
        // Timers and event timeouts that have passed end their steps' waits.
        tx.end_timed_waits(now).await?;
    }
    if sweep.workers {
        end_leases_of_gone_workers(tx, now).await?;
    }
    let mut claimed = if sweep.leases {
        reclaim_expired(tx, worker_id, max, now, lease_until).await?
    } else {
        Vec::new()
    };
    if claimed.len() < max {
        let queued = tx
            .claim_queued(worker_id, now, lease_until, max - claimed.len())
            .await?;
        claimed.extend(queued);
    }
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
    tx.record_claims(&ids).await?;
    let mut steps = Vec::with_capacity(claimed.len());
    for (mut step, activations, overrides) in claimed {
        (step.policy, step.kind) = tx
            .step_policy(&step.deployment, step.version, overrides.as_deref())
            .await?;
        if activations > 0 {
            (step.resume, step.resume_attempt) = tx.resume_journal(&step.step_id).await?;
        }
        steps.push(step);
    }
    Ok(steps)
}

/// Claims up to `max` running steps whose lease expired before `now` for `worker_id`, each under
/// a new attempt leased until `lease_until` (the lost attempt is recorded as failed,
/// `lease_expired`). A step that has lost as many leases as its policy allows is failed instead,
/// like any failed step (its run fails, its parent wakes, its unjoined children are cancelled).
/// Runs inside `tx`.
pub async fn reclaim_expired(
    tx: &mut impl Tx,
    worker_id: &str,
    max: usize,
    now: Micros,
    lease_until: Micros,
) -> Result<Vec<RawClaim>> {
    let expired = tx.expired_leases(now, max).await?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let mut outlived = Vec::new();
    let mut reclaim: Vec<&str> = Vec::new();
    for step in &expired {
        let (policy, _) = tx
            .step_policy(&step.deployment, step.version, step.overrides.as_deref())
            .await?;
        match on_lost_lease(step.lost_leases, &policy) {
            LostLease::Reclaim => reclaim.push(&step.step_id),
            LostLease::Fail(lost) => outlived.push(Completion {
                step_id: step.step_id.clone(),
                attempt: step.attempt,
                worker_id: step.worker_id.clone().unwrap_or_default(),
                started_at: now,
                completed_at: now,
                status: Status::Failed,
                output: None,
                error: Some(errors::outlived_workers(lost)),
                journal: Vec::new(),
                logs: Vec::new(),
                kv_writes: Vec::new(),
                kv_reads: Vec::new(),
                run_id: step.run_id.clone(),
                children: Vec::new(),
                wait: None,
                retry_at: None,
                reruns: 0,
            }),
        }
    }
    if !outlived.is_empty() {
        let ids: Vec<&str> = outlived.iter().map(|c| c.step_id.as_str()).collect();
        tx.count_lost_lease(&ids).await?;
        super::complete::apply(tx, &super::complete::encode(&outlived)?, now).await?;
    }
    if reclaim.is_empty() {
        return Ok(Vec::new());
    }
    let lost = errors::lease_lost().to_string();
    tx.reclaim(&reclaim, worker_id, now, lease_until, &lost)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_fails_when_it_has_lost_its_policys_number_of_leases() {
        let policy = Policy {
            max_lost_leases: Some(3),
            ..Policy::default()
        };
        assert_eq!(on_lost_lease(0, &policy), LostLease::Reclaim);
        assert_eq!(on_lost_lease(1, &policy), LostLease::Reclaim);
        assert_eq!(on_lost_lease(2, &policy), LostLease::Fail(3));
        let once = Policy {
            max_lost_leases: Some(1),
            ..Policy::default()
        };
        assert_eq!(on_lost_lease(0, &once), LostLease::Fail(1));
    }
}
