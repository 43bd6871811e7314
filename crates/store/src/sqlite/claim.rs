//! Claiming on the writer connection: the queued-step claim (one `UPDATE ... RETURNING` under
//! the write lock), the periodic sweep of deadlines and timers, and the [`Tx`] primitives the
//! shared lost-lease decision ([`decide::claim::reclaim_expired`]) runs on.

use super::*;
use crate::decide::{self, ExpiredLease, RawClaim, Tx};

impl SqliteStore {
    /// Claims up to `max` steps inside the caller's write transaction (see
    /// [`Store::claim_steps`]); every [`SWEEP_INTERVAL`] it first applies deadlines and fires
    /// timers.
    pub(super) fn claim(
        &self,
        conn: &Connection,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let sweep = self.next_sweep.load(Ordering::Relaxed) <= now;
        if sweep {
            self.next_sweep.store(
                crate::micros_after(now, SWEEP_INTERVAL.as_millis() as u64),
                Ordering::Relaxed,
            );
        }

        if sweep {
            workflow::expire(conn, now)?;
            // Timers and event timeouts that have passed end their steps' waits.
            conn.prepare_cached(
                "UPDATE steps SET wait = NULL, wait_event = NULL \
                 WHERE wait IN ('timer', 'event') AND wake_at <= ?",
            )?
            .execute([now])?;
        }
        // Steps whose worker died come first: they are the oldest work, and a queue that never
        // runs dry must not starve them.
        let mut claimed = decide::claim::reclaim_expired(
            &mut SqliteTx { store: self, conn },
            worker_id,
            max,
            now,
            lease_until,
        )?;
        if claimed.len() < max {
            // The subquery and the update are one statement under the write lock: nobody else
            // can claim the same rows in between. A resumed workflow continues its attempt, and
            // so does a step re-executed after a key-value conflict; anything else starts a new
            // one.
            let queued = steps_of(
                conn,
                &format!(
                    "UPDATE steps SET status = 'running', \
                     attempt = CASE WHEN activations > 0 OR rerun = 1 THEN attempt \
                     ELSE attempt + 1 END, rerun = 0, \
                     worker_id = ?1, assigned_at = ?2, started_at = NULL, completed_at = NULL, \
                     wake_at = NULL, start_deadline = NULL, lease_expires_at = ?3 \
                     WHERE id IN (SELECT id FROM steps WHERE status = 'queued' AND wait IS NULL \
                     AND (wake_at IS NULL OR wake_at <= ?2) ORDER BY created_at LIMIT ?4) \
                     {CLAIM_RETURNING}"
                ),
                (worker_id, now, lease_until, (max - claimed.len()) as i64),
                now,
            )?;
            claimed.extend(queued);
        }
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
        execute_for_ids(conn, &ids, |list| {
            [
                format!(
                    "INSERT INTO attempts (step_id, attempt, status, worker_id, assigned_at) \
                     SELECT id, attempt, 'running', worker_id, assigned_at FROM steps \
                     WHERE id IN ({list}) ON CONFLICT (step_id, attempt) DO UPDATE \
                     SET status = 'running', worker_id = excluded.worker_id, \
                     assigned_at = excluded.assigned_at"
                ),
                // The run of a claimed step is queued or already running (a reclaim).
                format!(
                    "UPDATE runs SET status = 'running' \
                     WHERE id IN (SELECT run_id FROM steps WHERE id IN ({list}))"
                ),
            ]
        })?;
        let mut steps = Vec::with_capacity(claimed.len());
        for (mut step, activations, overrides) in claimed {
            (step.policy, step.kind) =
                self.step_policy(conn, &step.deployment, step.version, overrides.as_deref())?;
            if activations > 0 {
                (step.resume, step.resume_attempt) = workflow::resume_journal(conn, &step.step_id)?;
            }
            steps.push(step);
        }
        Ok(steps)
    }
}

/// The [`Tx`] primitives on the writer connection, inside the caller's `BEGIN IMMEDIATE`
/// transaction.
struct SqliteTx<'a> {
    store: &'a SqliteStore,
    conn: &'a Connection,
}

impl Tx for SqliteTx<'_> {
    fn expired_leases(&mut self, now: Micros, max: usize) -> Result<Vec<ExpiredLease>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT id, attempt, lost_leases, deployment, version, policy, run_id, worker_id \
                 FROM steps WHERE status = 'running' AND lease_expires_at < ? \
                 ORDER BY lease_expires_at LIMIT ?",
            )?
            .query_map((now, max as i64), |r| {
                Ok(ExpiredLease {
                    step_id: r.get(0)?,
                    attempt: r.get(1)?,
                    lost_leases: r.get(2)?,
                    deployment: r.get(3)?,
                    version: r.get(4)?,
                    overrides: r.get(5)?,
                    run_id: r.get(6)?,
                    worker_id: r.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn step_policy(
        &mut self,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<Policy> {
        self.store
            .step_policy(self.conn, deployment, version, overrides)
            .map(|(policy, _)| policy)
    }

    fn count_lost_lease(&mut self, ids: &[&str]) -> Result<()> {
        execute_for_ids(self.conn, ids, |list| {
            [format!(
                "UPDATE steps SET lost_leases = lost_leases + 1 WHERE id IN ({list})"
            )]
        })
    }

    fn apply_completions(&mut self, completions: &[Completion], now: Micros) -> Result<()> {
        apply_completions(self.conn, &encode(completions)?, now)?;
        Ok(())
    }

    fn reclaim(
        &mut self,
        ids: &[&str],
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        error: &str,
    ) -> Result<Vec<RawClaim>> {
        let conn = self.conn;
        let mut claimed = Vec::with_capacity(ids.len());
        for chunk in chunks(ids) {
            let list = placeholders(chunk.len());
            let mut params: Vec<&dyn ToSql> = vec![&worker_id, &now, &lease_until];
            params.extend(chunk.iter().map(|id| id as &dyn ToSql));
            let stepped = steps_of(
                conn,
                &format!(
                    "UPDATE steps SET status = 'running', attempt = attempt + 1, rerun = 0, \
                     lost_leases = lost_leases + 1, worker_id = ?, assigned_at = ?, \
                     started_at = NULL, lease_expires_at = ? WHERE id IN ({list}) \
                     {CLAIM_RETURNING}"
                ),
                params.as_slice(),
                now,
            )?;
            for (step, ..) in &stepped {
                conn.prepare_cached(
                    "UPDATE attempts SET status = 'failed', completed_at = ?, error = ? \
                     WHERE step_id = ? AND attempt = ? AND status = 'running'",
                )?
                .execute((now, error, &step.step_id, step.attempt - 1))?;
            }
            claimed.extend(stepped);
        }
        Ok(claimed)
    }
}
