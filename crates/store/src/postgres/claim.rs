//! Claiming: queued steps with `FOR UPDATE SKIP LOCKED`, steps whose lease expired (the shared
//! lost-lease decision), and the periodic sweep of deadlines and timers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{workflow, PgStore, SWEEP_INTERVAL};
use crate::decide::claim::{on_lost_lease, LostLease};
use crate::decide::errors;
use crate::rows::{json_of, u32_of};
use crate::{ClaimedStep, Completion, DeploymentKind, Micros, Policy, Status};

/// What a claiming `UPDATE` returns, as [`claimed_of`] reads it.
const CLAIM_RETURNING: &str = "RETURNING id, run_id, task, deployment, version, digest, input, \
                               attempt, created_at, activations, policy, reruns";

/// A claimed step before its policy is resolved, with its activation count and its own policy
/// overrides (JSON).
type RawClaim = (ClaimedStep, i64, Option<String>);

impl PgStore {
    /// Claims up to `max` steps inside the caller's transaction (see
    /// [`crate::Store::claim_steps`]); every [`SWEEP_INTERVAL`] it first applies deadlines and
    /// fires timers.
    pub(super) async fn claim(
        &self,
        conn: &mut PgConnection,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        if self.next_sweep.load(Ordering::Relaxed) <= now {
            self.next_sweep.store(
                crate::micros_after(now, SWEEP_INTERVAL.as_millis() as u64),
                Ordering::Relaxed,
            );
            workflow::expire(conn, now).await?;
            // Timers and event timeouts that have passed end their steps' waits.
            sqlx::query(
                "UPDATE steps SET wait = NULL, wait_event = NULL WHERE id IN \
                 (SELECT id FROM steps WHERE wait IN ('timer', 'event') AND wake_at <= $1 \
                 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        // Steps whose worker died come first: they are the oldest work, and a queue that never
        // runs dry must not starve them.
        let mut claimed = self
            .reclaim_expired(conn, worker_id, max, now, lease_until)
            .await?;
        if claimed.len() < max {
            // Rows another claimant holds are skipped, not waited for. A resumed workflow
            // continues its attempt, and so does a step re-executed after a key-value conflict;
            // anything else starts a new one.
            let rows = sqlx::query(&format!(
                "UPDATE steps SET status = 'running', \
                 attempt = CASE WHEN activations > 0 OR rerun = 1 THEN attempt \
                 ELSE attempt + 1 END, rerun = 0, \
                 worker_id = $1, assigned_at = $2, started_at = NULL, completed_at = NULL, \
                 wake_at = NULL, start_deadline = NULL, lease_expires_at = $3 \
                 WHERE id IN (SELECT id FROM steps WHERE status = 'queued' AND wait IS NULL \
                 AND (wake_at IS NULL OR wake_at <= $2) ORDER BY created_at LIMIT $4 \
                 FOR UPDATE SKIP LOCKED) {CLAIM_RETURNING}"
            ))
            .bind(worker_id)
            .bind(now)
            .bind(lease_until)
            .bind((max - claimed.len()) as i64)
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                claimed.push(claimed_of(row, now)?);
            }
        }
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        claimed.sort_by(|(a, ..), (b, ..)| {
            (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id))
        });

        let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
        sqlx::query(
            "INSERT INTO attempts (step_id, attempt, status, worker_id, assigned_at) \
             SELECT id, attempt, 'running', worker_id, assigned_at FROM steps \
             WHERE id = ANY($1) ON CONFLICT (step_id, attempt) DO UPDATE \
             SET status = 'running', worker_id = excluded.worker_id, \
             assigned_at = excluded.assigned_at",
        )
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
        // The run of a claimed step is queued or already running (a reclaim).
        sqlx::query(
            "UPDATE runs SET status = 'running' WHERE status <> 'running' \
             AND id IN (SELECT run_id FROM steps WHERE id = ANY($1))",
        )
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
        let mut steps = Vec::with_capacity(claimed.len());
        for (mut step, activations, overrides) in claimed {
            (step.policy, step.kind) = self
                .step_policy(conn, &step.deployment, step.version, overrides.as_deref())
                .await?;
            if activations > 0 {
                (step.resume, step.resume_attempt) =
                    workflow::resume_journal(conn, &step.step_id).await?;
            }
            steps.push(step);
        }
        Ok(steps)
    }

    /// Claims up to `max` running steps whose lease expired before `now` for `worker_id`, each
    /// under a new attempt leased until `lease_until`, or fails those that lost as many leases
    /// as their policy allows ([`on_lost_lease`]).
    async fn reclaim_expired(
        &self,
        conn: &mut PgConnection,
        worker_id: &str,
        max: usize,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<RawClaim>> {
        let expired = sqlx::query(
            "SELECT id, attempt, lost_leases, deployment, version, policy, run_id, worker_id \
             FROM steps WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(max as i64)
        .fetch_all(&mut *conn)
        .await?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let mut outlived = Vec::new();
        let mut reclaim: Vec<String> = Vec::new();
        for row in &expired {
            let step_id: String = row.try_get(0)?;
            let deployment: String = row.try_get(3)?;
            let overrides: Option<String> = row.try_get(5)?;
            let (policy, _) = self
                .step_policy(conn, &deployment, row.try_get(4)?, overrides.as_deref())
                .await?;
            match on_lost_lease(u32_of(row.try_get(2)?)?, &policy) {
                LostLease::Reclaim => reclaim.push(step_id),
                LostLease::Fail(lost) => outlived.push(Completion {
                    step_id,
                    attempt: u32_of(row.try_get(1)?)?,
                    worker_id: row.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                    started_at: now,
                    completed_at: now,
                    status: Status::Failed,
                    output: None,
                    error: Some(errors::outlived_workers(lost)),
                    journal: Vec::new(),
                    logs: Vec::new(),
                    kv_writes: Vec::new(),
                    kv_reads: Vec::new(),
                    run_id: row.try_get(6)?,
                    children: Vec::new(),
                    wait: None,
                    retry_at: None,
                }),
            }
        }
        if !outlived.is_empty() {
            let ids: Vec<&str> = outlived.iter().map(|c| c.step_id.as_str()).collect();
            sqlx::query("UPDATE steps SET lost_leases = lost_leases + 1 WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            self.apply_completions(conn, &crate::decide::complete::encode(&outlived)?, now)
                .await?;
        }
        if reclaim.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE steps SET status = 'running', attempt = attempt + 1, rerun = 0, \
             lost_leases = lost_leases + 1, worker_id = $1, assigned_at = $2, \
             started_at = NULL, lease_expires_at = $3 WHERE id = ANY($4) {CLAIM_RETURNING}"
        ))
        .bind(worker_id)
        .bind(now)
        .bind(lease_until)
        .bind(&reclaim)
        .fetch_all(&mut *conn)
        .await?;
        let claimed = rows
            .iter()
            .map(|r| claimed_of(r, now))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
        let lost: Vec<i64> = claimed
            .iter()
            .map(|(s, ..)| i64::from(s.attempt) - 1)
            .collect();
        sqlx::query(
            "UPDATE attempts SET status = 'failed', completed_at = $1, error = $2 \
             FROM UNNEST($3::text[], $4::bigint[]) AS v(id, attempt) \
             WHERE attempts.step_id = v.id AND attempts.attempt = v.attempt \
             AND attempts.status = 'running'",
        )
        .bind(now)
        .bind(errors::lease_lost().to_string())
        .bind(&ids)
        .bind(&lost)
        .execute(&mut *conn)
        .await?;
        Ok(claimed)
    }
}

/// A claimed step from a row of [`CLAIM_RETURNING`], assigned at `assigned_at` (its policy and
/// kind are filled in afterwards).
fn claimed_of(r: &PgRow, assigned_at: Micros) -> Result<RawClaim> {
    let attempt = u32_of(r.try_get(7)?)?;
    let step = ClaimedStep {
        step_id: r.try_get(0)?,
        run_id: r.try_get(1)?,
        task: r.try_get(2)?,
        deployment: r.try_get(3)?,
        version: r.try_get(4)?,
        digest: r.try_get(5)?,
        kind: DeploymentKind::default(),
        input: json_of(r.try_get(6)?)?,
        attempt,
        policy: Policy::default(),
        created_at: r.try_get(8)?,
        assigned_at,
        resume: Vec::new(),
        resume_attempt: attempt,
        reruns: u32_of(r.try_get(11)?)?,
    };
    Ok((step, r.try_get(9)?, r.try_get(10)?))
}
