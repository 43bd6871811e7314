//! Claiming: what happens to steps whose lease expired.

use anyhow::Result;

use super::{errors, RawClaim, Tx};
use crate::{Completion, Micros, Policy, Status};
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

/// Claims up to `max` running steps whose lease expired before `now` for `worker_id`, each under
/// a new attempt leased until `lease_until` (the lost attempt is recorded as failed,
/// `lease_expired`). A step that has lost as many leases as its policy allows is failed instead,
/// like any failed step (its run fails, its parent wakes, its unjoined children are cancelled).
/// Runs inside `tx`.
pub fn reclaim_expired(
    tx: &mut impl Tx,
    worker_id: &str,
    max: usize,
    now: Micros,
    lease_until: Micros,
) -> Result<Vec<RawClaim>> {
    let expired = tx.expired_leases(now, max)?;
    if expired.is_empty() {
        return Ok(Vec::new());
    }
    let mut outlived = Vec::new();
    let mut reclaim: Vec<&str> = Vec::new();
    for step in &expired {
        let policy = tx.step_policy(&step.deployment, step.version, step.overrides.as_deref())?;
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
            }),
        }
    }
    if !outlived.is_empty() {
        let ids: Vec<&str> = outlived.iter().map(|c| c.step_id.as_str()).collect();
        tx.count_lost_lease(&ids)?;
        tx.apply_completions(&outlived, now)?;
    }
    if reclaim.is_empty() {
        return Ok(Vec::new());
    }
    let lost = errors::lease_lost().to_string();
    tx.reclaim(&reclaim, worker_id, now, lease_until, &lost)
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
