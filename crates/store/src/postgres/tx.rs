//! The [`Tx`] primitives on one PostgreSQL transaction: each is one statement (or a lock and a
//! statement) and decides nothing (the decisions are in [`crate::decide`]).
//!
//! What SQLite gets from its single write lock, these primitives get from row and advisory locks
//! taken as they go (see the module docs of `postgres`): claims and sweeps skip rows another
//! transaction holds (`FOR UPDATE SKIP LOCKED`), so claimants never wait on each other; fencing
//! is the `WHERE` clause of one `UPDATE`, re-checked by PostgreSQL on the newest row version
//! after a concurrent writer commits; the first key-value read or write of a transaction locks
//! the `kv_clock` row, serializing key-value completions; checking for an event and sending one
//! take the event name's advisory lock; reading a run's status locks the run.
//!
//! Lists are bound as arrays (`= ANY($1)`, `UNNEST(...)`), so a batch of any size is one
//! statement of a fixed shape.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::postgres::{PgHasArrayType, PgRow};
use sqlx::{PgConnection, Postgres, Row};

use super::PgStore;
use crate::decide::complete::StepEnd;
use crate::decide::{
    waits, Changed, ExpiredLease, JournalRow, LateStart, LeaseHolder, LogRow, RawClaim,
    ResumableStep, Tx,
};
use crate::rows::{json_of, status_of, u32_of, RUN_SHOWN_STATUS};
use crate::{
    ClaimedStep, Completion, DeploymentKind, JournalRecord, KvWrite, Micros, Policy, Status,
};

/// What a claiming `UPDATE` returns, as [`claimed_of`] reads it.
const CLAIM_RETURNING: &str = "RETURNING id, run_id, task, deployment, version, digest, input, \
                               attempt, created_at, activations, policy, reruns";

/// The advisory-lock namespace of event names.
const EVENT_LOCK: i32 = 1;

/// A step id bound in a `text[]` array: `&str` or `String`.
trait Id: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + PgHasArrayType + Sync {}

impl<T> Id for T where
    T: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + PgHasArrayType + Sync
{
}

/// One write transaction of a [`PgStore`]: a connection inside `BEGIN` (at `READ COMMITTED`),
/// and the store for its policy cache.
pub(super) struct PgTx<'a> {
    pub(super) store: &'a PgStore,
    pub(super) conn: &'a mut PgConnection,
    /// Whether this transaction holds the `kv_clock` row lock (taken once, held to the end).
    kv_locked: bool,
}

impl<'a> PgTx<'a> {
    /// The primitives on `conn`, which must be inside a transaction the caller commits.
    pub(super) fn new(store: &'a PgStore, conn: &'a mut PgConnection) -> Self {
        PgTx {
            store,
            conn,
            kv_locked: false,
        }
    }

    /// Locks the store-wide `kv_clock` row for the rest of the transaction, once: key-value
    /// completions are serialized on it, so what one checks holds until it commits.
    async fn lock_kv(&mut self) -> Result<()> {
        if !self.kv_locked {
            sqlx::query("SELECT stamp FROM kv_clock WHERE id = 1 FOR UPDATE")
                .execute(&mut *self.conn)
                .await?;
            self.kv_locked = true;
        }
        Ok(())
    }

    /// Takes the transaction-scoped advisory lock of event `name`: sending an event and checking
    /// a wait for one are serialized per name, so a wait never misses an event sent at the same
    /// time.
    async fn lock_event(&mut self, name: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(EVENT_LOCK)
            .bind(name)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Runs `sql` with `ids` bound as `$1` (a `text[]`), unless `ids` is empty; returns the
    /// number of rows it changed.
    async fn execute_for_ids<S: Id>(&mut self, sql: &'static str, ids: &[S]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(sql)
            .bind(ids)
            .execute(&mut *self.conn)
            .await?
            .rows_affected())
    }

    /// The first column (text) of the rows `sql` returns with `ids` bound as `$1`, unless `ids`
    /// is empty.
    async fn ids_for_ids<S: Id>(&mut self, sql: &'static str, ids: &[S]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(sql)
            .bind(ids)
            .fetch_all(&mut *self.conn)
            .await?)
    }
}

impl Tx for PgTx<'_> {
    async fn expired_leases(&mut self, now: Micros, max: usize) -> Result<Vec<ExpiredLease>> {
        // Rows another claimant holds are skipped, not waited for.
        sqlx::query(
            "SELECT id, attempt, lost_leases, deployment, version, policy, run_id, worker_id \
             FROM steps WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(max as i64)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| {
            Ok(ExpiredLease {
                step_id: r.try_get(0)?,
                attempt: u32_of(r.try_get(1)?)?,
                lost_leases: u32_of(r.try_get(2)?)?,
                deployment: r.try_get(3)?,
                version: r.try_get(4)?,
                overrides: r.try_get(5)?,
                run_id: r.try_get(6)?,
                worker_id: r.try_get(7)?,
            })
        })
        .collect()
    }

    async fn step_policy(
        &mut self,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)> {
        self.store
            .step_policy(self.conn, deployment, version, overrides)
            .await
    }

    async fn count_lost_lease(&mut self, ids: &[&str]) -> Result<()> {
        self.execute_for_ids(
            "UPDATE steps SET lost_leases = lost_leases + 1 WHERE id = ANY($1)",
            ids,
        )
        .await?;
        Ok(())
    }

    async fn reclaim(
        &mut self,
        ids: &[&str],
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        error: &str,
    ) -> Result<Vec<RawClaim>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = sqlx::query(&format!(
            "UPDATE steps SET status = 'running', attempt = attempt + 1, rerun = 0, \
             lost_leases = lost_leases + 1, worker_id = $1, assigned_at = $2, \
             started_at = NULL, lease_expires_at = $3 WHERE id = ANY($4) {CLAIM_RETURNING}"
        ))
        .bind(worker_id)
        .bind(now)
        .bind(lease_until)
        .bind(ids)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| claimed_of(r, now))
        .collect::<Result<Vec<_>>>()?;
        let stepped: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
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
        .bind(error)
        .bind(&stepped)
        .bind(&lost)
        .execute(&mut *self.conn)
        .await?;
        Ok(claimed)
    }

    async fn claim_queued(
        &mut self,
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        max: usize,
    ) -> Result<Vec<RawClaim>> {
        // Rows another claimant holds are skipped, not waited for.
        let mut claimed = sqlx::query(&format!(
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
        .bind(max as i64)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| claimed_of(r, now))
        .collect::<Result<Vec<_>>>()?;
        // `RETURNING` follows no order; the contract is oldest first.
        claimed.sort_by(|(a, ..), (b, ..)| {
            (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id))
        });
        Ok(claimed)
    }

    async fn record_claims(&mut self, ids: &[&str]) -> Result<()> {
        // One statement: the attempts are recorded in a data-modifying CTE. The run of a claimed
        // step is marked claimed (`rows::RUN_SHOWN_STATUS`) by its first claim only: a run
        // claimed before (a reclaim, a child) is left alone rather than rewritten (and its row
        // lock left free).
        self.execute_for_ids(
            "WITH recorded AS (INSERT INTO attempts (step_id, attempt, status, worker_id, \
             assigned_at, hypergraph_version) \
             SELECT id, attempt, 'running', worker_id, assigned_at, \
             (SELECT version FROM workers WHERE workers.id = steps.worker_id) FROM steps \
             WHERE id = ANY($1) ON CONFLICT (step_id, attempt) DO UPDATE \
             SET status = 'running', worker_id = excluded.worker_id, \
             assigned_at = excluded.assigned_at, \
             hypergraph_version = excluded.hypergraph_version) \
             UPDATE runs SET claimed_at = steps.assigned_at FROM steps \
             WHERE steps.id = ANY($1) AND runs.id = steps.run_id AND runs.claimed_at IS NULL",
            ids,
        )
        .await?;
        Ok(())
    }

    async fn lease_holders(&mut self, now: Micros) -> Result<Vec<LeaseHolder>> {
        sqlx::query(
            "SELECT id, last_seen_at, heartbeat_ms, stopped_at FROM workers WHERE id IN \
             (SELECT worker_id FROM steps WHERE status = 'running' AND lease_expires_at >= $1)",
        )
        .bind(now)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| {
            Ok(LeaseHolder {
                worker_id: r.try_get(0)?,
                last_seen_at: r.try_get(1)?,
                heartbeat_ms: u64::try_from(r.try_get::<i64, _>(2)?)?,
                stopped_at: r.try_get(3)?,
            })
        })
        .collect()
    }

    async fn end_leases(&mut self, workers: &[&str], now: Micros) -> Result<u64> {
        if workers.is_empty() {
            return Ok(0);
        }
        // Rows another transaction holds (a claim reclaiming them) are left for the next sweep.
        Ok(sqlx::query(
            "UPDATE steps SET lease_expires_at = $1 WHERE id IN \
             (SELECT id FROM steps WHERE status = 'running' AND lease_expires_at >= $2 \
             AND worker_id = ANY($3) FOR UPDATE SKIP LOCKED)",
        )
        .bind(now - 1)
        .bind(now)
        .bind(workers)
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }

    async fn resume_journal(&mut self, step_id: &str) -> Result<(Vec<JournalRecord>, u32)> {
        let rows = sqlx::query(
            "SELECT attempt, seq, kind, data FROM journal WHERE step_id = $1 AND attempt = \
             (SELECT MAX(attempt) FROM journal WHERE step_id = $1) ORDER BY seq",
        )
        .bind(step_id)
        .fetch_all(&mut *self.conn)
        .await?;
        let mut attempt = 0;
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            attempt = u32_of(r.try_get(0)?)?;
            records.push(JournalRecord {
                seq: u32_of(r.try_get(1)?)?,
                kind: r.try_get(2)?,
                data: r.try_get(3)?,
            });
        }
        Ok((records, attempt))
    }

    async fn end_timed_waits(&mut self, at: Micros) -> Result<()> {
        // Rows another transaction holds are left for the next sweep.
        sqlx::query(
            "UPDATE steps SET wait = NULL, wait_event = NULL WHERE id IN \
             (SELECT id FROM steps WHERE wait IN ('timer', 'event') AND wake_at <= $1 \
             FOR UPDATE SKIP LOCKED)",
        )
        .bind(at)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn sweep_due(&mut self, at: Micros) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM steps WHERE start_deadline <= $1 \
             AND status = 'queued' AND wait IS NULL) \
             OR EXISTS (SELECT 1 FROM runs WHERE deadline <= $1 \
             AND status IN ('queued', 'running')) \
             OR EXISTS (SELECT 1 FROM steps WHERE wait IN ('timer', 'event') AND wake_at <= $1)",
        )
        .bind(at)
        .fetch_one(&mut *self.conn)
        .await?)
    }

    async fn fail_late_starts(
        &mut self,
        at: Micros,
        now: Micros,
        error: &str,
    ) -> Result<Vec<LateStart>> {
        // Rows another transaction holds are left for the next sweep.
        sqlx::query(
            "UPDATE steps SET status = 'failed', error = $1, completed_at = $2, \
             start_deadline = NULL \
             WHERE id IN (SELECT id FROM steps WHERE start_deadline <= $3 AND status = 'queued' \
             AND wait IS NULL FOR UPDATE SKIP LOCKED) RETURNING id, parent_id, run_id",
        )
        .bind(error)
        .bind(now)
        .bind(at)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| {
            Ok(LateStart {
                step_id: r.try_get(0)?,
                parent_id: r.try_get(1)?,
                run_id: r.try_get(2)?,
            })
        })
        .collect()
    }

    async fn runs_past_deadline(&mut self, at: Micros) -> Result<Vec<String>> {
        // Rows another transaction holds are left for the next sweep.
        Ok(sqlx::query_scalar(
            "SELECT id FROM runs WHERE deadline <= $1 AND status IN ('queued', 'running') \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(at)
        .fetch_all(&mut *self.conn)
        .await?)
    }

    async fn run_status(&mut self, run_id: &str) -> Result<Option<(Status, String)>> {
        // Locked: what is decided from it (cancel, resume, a deadline) holds until commit.
        sqlx::query(&format!(
            "SELECT {RUN_SHOWN_STATUS}, deployment FROM runs WHERE id = $1 FOR UPDATE"
        ))
        .bind(run_id)
        .fetch_optional(&mut *self.conn)
        .await?
        .map(|r| Ok((status_of(r.try_get(0)?)?, r.try_get(1)?)))
        .transpose()
    }

    async fn end_run(
        &mut self,
        run_id: &str,
        status: Status,
        error: &str,
        now: Micros,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = $1, error = $2, completed_at = $3 \
             WHERE id = $4 AND status IN ('queued', 'running')",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(run_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn unfinished_steps(&mut self, run_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM steps WHERE run_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(run_id)
        .fetch_all(&mut *self.conn)
        .await?)
    }

    async fn unfinished_children(&mut self, parents: &[&str]) -> Result<Vec<String>> {
        self.ids_for_ids(
            "SELECT id FROM steps WHERE parent_id = ANY($1) AND status IN ('queued', 'running')",
            parents,
        )
        .await
    }

    async fn cancel_steps(&mut self, ids: &[String], now: Micros, error: &str) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        sqlx::query(
            "UPDATE attempts SET status = 'cancelled', completed_at = $1, error = $2 \
             WHERE status = 'running' AND step_id = ANY($3)",
        )
        .bind(now)
        .bind(error)
        .bind(ids)
        .execute(&mut *self.conn)
        .await?;
        Ok(sqlx::query(
            "UPDATE steps SET status = 'cancelled', completed_at = $1, error = $2, wait = NULL, \
             wait_event = NULL, lease_expires_at = NULL \
             WHERE status IN ('queued', 'running') AND id = ANY($3)",
        )
        .bind(now)
        .bind(error)
        .bind(ids)
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }

    async fn kv_version(&mut self, scope: &str, key: &str) -> Result<Option<i64>> {
        self.lock_kv().await?;
        Ok(
            sqlx::query_scalar("SELECT version FROM kv WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *self.conn)
                .await?,
        )
    }

    async fn kv_versions(&mut self, keys: &[(&str, &str)]) -> Result<Vec<Option<i64>>> {
        let mut versions = vec![None; keys.len()];
        if keys.is_empty() {
            return Ok(versions);
        }
        self.lock_kv().await?;
        let (scope, key): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        let found: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT v.i, kv.version FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY \
             AS v(scope, key, i) JOIN kv ON kv.scope = v.scope AND kv.key = v.key",
        )
        .bind(&scope)
        .bind(&key)
        .fetch_all(&mut *self.conn)
        .await?;
        for (i, version) in found {
            versions[usize::try_from(i - 1)?] = Some(version);
        }
        Ok(versions)
    }

    async fn kv_prefix(&mut self, scope: &str, prefix: &str) -> Result<(i64, i64)> {
        self.lock_kv().await?;
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM kv \
             WHERE scope = $1 AND key >= $2 AND starts_with(key, $2)",
        )
        .bind(scope)
        .bind(prefix)
        .fetch_one(&mut *self.conn)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn apply_kv_writes(&mut self, writes: &[KvWrite], now: Micros) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        // The last write of each key wins, as if they were applied in order.
        let mut last: HashMap<(&str, &str), Option<&[u8]>> = HashMap::new();
        for write in writes {
            last.insert(
                (write.scope.as_str(), write.key.as_str()),
                write.value.as_deref(),
            );
        }
        let (mut set_scope, mut set_key, mut set_value) = (Vec::new(), Vec::new(), Vec::new());
        let (mut del_scope, mut del_key) = (Vec::new(), Vec::new());
        for ((scope, key), value) in last {
            match value {
                Some(value) => {
                    set_scope.push(scope);
                    set_key.push(key);
                    set_value.push(value);
                }
                None => {
                    del_scope.push(scope);
                    del_key.push(key);
                }
            }
        }
        // The clock's lock first, by a statement of its own unless this transaction holds it
        // already: waiting for it inside a writing statement would leave that statement a
        // snapshot from before the previous holder committed, and a delete would miss a key that
        // holder had just written. Then the deletes (rare), and one statement that takes the
        // next stamp and upserts the keys written.
        self.lock_kv().await?;
        if !del_key.is_empty() {
            sqlx::query(
                "DELETE FROM kv USING UNNEST($1::text[], $2::text[]) AS d(scope, key) \
                 WHERE kv.scope = d.scope AND kv.key = d.key",
            )
            .bind(&del_scope)
            .bind(&del_key)
            .execute(&mut *self.conn)
            .await?;
        }
        sqlx::query(
            "WITH stamp AS (UPDATE kv_clock SET stamp = stamp + 1 WHERE id = 1 RETURNING stamp) \
             INSERT INTO kv (scope, key, value, updated_at, version) \
             SELECT v.scope, v.key, v.value, $1, stamp.stamp \
             FROM UNNEST($2::text[], $3::text[], $4::bytea[]) AS v(scope, key, value), stamp \
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, version = excluded.version",
        )
        .bind(now)
        .bind(&set_scope)
        .bind(&set_key)
        .bind(&set_value)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn requeue_conflicted(&mut self, step_id: &str, attempt: u32) -> Result<bool> {
        let requeued = sqlx::query(
            "UPDATE steps SET status = 'queued', rerun = 1, reruns = reruns + 1, \
             worker_id = NULL, assigned_at = NULL, started_at = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
        )
        .bind(step_id)
        .bind(i64::from(attempt))
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        if requeued == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE attempts SET status = 'queued', reruns = reruns + 1 \
             WHERE step_id = $1 AND attempt = $2",
        )
        .bind(step_id)
        .bind(i64::from(attempt))
        .execute(&mut *self.conn)
        .await?;
        Ok(true)
    }

    async fn step_status(&mut self, step_id: &str) -> Result<Option<Status>> {
        sqlx::query_scalar::<_, String>("SELECT status FROM steps WHERE id = $1")
            .bind(step_id)
            .fetch_optional(&mut *self.conn)
            .await?
            .map(status_of)
            .transpose()
    }

    async fn fence_and_complete(&mut self, ends: &[StepEnd<'_>]) -> Result<Vec<Changed>> {
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        let n = ends.len();
        let (mut id, mut attempt, mut status, mut output, mut error) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut started_at, mut completed_at, mut worker_id, mut wait, mut wait_event) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut wake_at = Vec::with_capacity(n);
        for end in ends {
            let c = end.e.c;
            id.push(c.step_id.as_str());
            attempt.push(i64::from(c.attempt));
            status.push(end.status);
            output.push(end.e.output.as_deref());
            error.push(end.e.error.as_deref());
            started_at.push(c.started_at);
            completed_at.push(end.completed_at);
            worker_id.push(c.worker_id.as_str());
            wait.push(end.wait);
            wait_event.push(end.wait_event);
            wake_at.push(end.wake_at);
        }
        let rows = sqlx::query(
            "UPDATE steps SET status = v.status, output = v.output, error = v.error, \
             started_at = v.started_at, completed_at = v.completed_at, worker_id = v.worker_id, \
             wait = v.wait, wait_event = v.wait_event, wake_at = v.wake_at, \
             activations = CASE WHEN v.status = 'running' OR v.wait IS NOT NULL \
             THEN steps.activations + 1 ELSE steps.activations END, \
             lease_expires_at = CASE WHEN v.status = 'running' THEN steps.lease_expires_at END \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[]) \
             AS v(id, attempt, status, output, error, started_at, completed_at, worker_id, wait, \
             wait_event, wake_at) \
             WHERE steps.id = v.id AND steps.attempt = v.attempt AND steps.status = 'running' \
             RETURNING steps.id, steps.parent_id IS NULL, steps.activations",
        )
        .bind(&id)
        .bind(&attempt)
        .bind(&status)
        .bind(&output)
        .bind(&error)
        .bind(&started_at)
        .bind(&completed_at)
        .bind(&worker_id)
        .bind(&wait)
        .bind(&wait_event)
        .bind(&wake_at)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Changed {
                    step_id: r.try_get(0)?,
                    root: r.try_get(1)?,
                    activations: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn mirror_attempts(&mut self, ids: &[&str]) -> Result<()> {
        self.execute_for_ids(
            "UPDATE attempts SET status = CASE \
             WHEN s.status = 'queued' AND s.wait IS NOT NULL THEN 'running' \
             WHEN s.status = 'queued' THEN 'failed' ELSE s.status END, \
             worker_id = s.worker_id, \
             started_at = COALESCE(attempts.started_at, s.started_at), \
             completed_at = s.completed_at, error = s.error \
             FROM steps s WHERE s.id = attempts.step_id AND s.attempt = attempts.attempt \
             AND s.id = ANY($1)",
            ids,
        )
        .await?;
        Ok(())
    }

    async fn end_runs_with_root(&mut self, ids: &[&str]) -> Result<()> {
        self.execute_for_ids(
            // Root steps are found by id only: `parent_id IS NULL` in the condition made
            // generic plans made without statistics read every root step of the table through
            // `steps_parent_id` (~100 ms a call at 10,000 runs).
            "UPDATE runs SET (status, output, error, completed_at) = \
             (s.status, s.output, s.error, s.completed_at) FROM steps s \
             WHERE s.id = ANY($1) AND runs.id = s.run_id \
             AND s.status IN ('succeeded', 'failed', 'cancelled')",
            ids,
        )
        .await?;
        Ok(())
    }

    async fn insert_children(&mut self, completions: &[&Completion], now: Micros) -> Result<()> {
        let (mut id, mut run_id, mut task, mut deployment) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut version, mut digest, mut input, mut parent) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut index, mut policy, mut deadline, mut name) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut awaited = Vec::new();
        for c in completions {
            let joined = waits::joined_at_start(c);
            for child in &c.children {
                awaited.push(i64::from(joined.contains(child.step_id.as_str())));
                id.push(child.step_id.as_str());
                run_id.push(c.run_id.as_str());
                task.push(child.task.as_str());
                deployment.push(child.deployment.as_str());
                version.push(child.version);
                digest.push(child.digest.as_str());
                input.push(serde_json::to_string(&child.input)?);
                parent.push(c.step_id.as_str());
                index.push(i64::from(child.index));
                policy.push(
                    child
                        .policy
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()?,
                );
                deadline.push(child.start_deadline);
                name.push(child.name.as_deref());
            }
        }
        if id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
             attempt, created_at, parent_id, child_index, policy, start_deadline, name, \
             awaited) \
             SELECT id, run_id, task, deployment, version, digest, input, 'queued', 0, $13, \
             parent_id, child_index, policy, start_deadline, name, awaited \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
             $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::bigint[], \
             $12::text[], $14::bigint[]) AS v(id, run_id, task, deployment, version, digest, \
             input, parent_id, child_index, policy, start_deadline, name, awaited)",
        )
        .bind(&id)
        .bind(&run_id)
        .bind(&task)
        .bind(&deployment)
        .bind(&version)
        .bind(&digest)
        .bind(&input)
        .bind(&parent)
        .bind(&index)
        .bind(&policy)
        .bind(&deadline)
        .bind(&name)
        .bind(now)
        .bind(&awaited)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_journal(&mut self, rows: &[JournalRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let (mut step, mut attempt, mut seq, mut kind, mut data) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (step_id, a, j) in rows {
            step.push(*step_id);
            attempt.push(i64::from(*a));
            seq.push(i64::from(j.seq));
            kind.push(j.kind.as_str());
            data.push(j.data.as_str());
        }
        sqlx::query(
            "INSERT INTO journal (step_id, attempt, seq, kind, data) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
        )
        .bind(&step)
        .bind(&attempt)
        .bind(&seq)
        .bind(&kind)
        .bind(&data)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_logs(&mut self, rows: &[LogRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let (mut step, mut attempt, mut seq, mut at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut stream, mut level, mut message) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (step_id, a, l) in rows {
            step.push(*step_id);
            attempt.push(i64::from(*a));
            seq.push(i64::from(l.seq));
            at.push(l.at);
            stream.push(l.stream.as_str());
            level.push(l.level.as_str());
            message.push(l.message.as_str());
        }
        sqlx::query(
            "INSERT INTO logs (step_id, attempt, seq, at, stream, level, message) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
             $5::text[], $6::text[], $7::text[])",
        )
        .bind(&step)
        .bind(&attempt)
        .bind(&seq)
        .bind(&at)
        .bind(&stream)
        .bind(&level)
        .bind(&message)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn await_unfinished(&mut self, ids: &[String]) -> Result<i64> {
        // Marking a child awaited locks its row: a child finishing concurrently either committed
        // before (it is not counted) or sees the mark when it counts its parents down.
        Ok(self
            .execute_for_ids(
                "UPDATE steps SET awaited = 1 WHERE id = ANY($1) \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                ids,
            )
            .await? as i64)
    }

    async fn set_pending(&mut self, step_id: &str, attempt: u32, pending: i64) -> Result<()> {
        sqlx::query("UPDATE steps SET pending = $1 WHERE id = $2 AND attempt = $3")
            .bind(pending)
            .bind(step_id)
            .bind(i64::from(attempt))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn end_wait(&mut self, step_id: &str, attempt: u32) -> Result<()> {
        sqlx::query(
            "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL, pending = 0 \
             WHERE id = $1 AND attempt = $2",
        )
        .bind(step_id)
        .bind(i64::from(attempt))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn event_sent_after(&mut self, name: &str, after: i64) -> Result<bool> {
        self.lock_event(name).await?;
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE name = $1 AND seq > $2)")
                .bind(name)
                .bind(after)
                .fetch_one(&mut *self.conn)
                .await?,
        )
    }

    async fn count_down_parents(&mut self, finished: &[&str]) -> Result<Vec<(String, i64)>> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE steps SET pending = steps.pending - c.finished \
             FROM (SELECT parent_id, COUNT(*) AS finished FROM steps \
             WHERE id = ANY($1) AND awaited = 1 GROUP BY parent_id) AS c \
             WHERE steps.id = c.parent_id AND steps.wait = 'children' \
             RETURNING steps.id, steps.pending",
        )
        .bind(finished)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    async fn end_child_waits(&mut self, ids: &[String]) -> Result<()> {
        self.execute_for_ids(
            "UPDATE steps SET wait = NULL, pending = 0 WHERE wait = 'children' AND id = ANY($1)",
            ids,
        )
        .await?;
        Ok(())
    }

    async fn insert_event(&mut self, name: &str, payload: &str, now: Micros) -> Result<i64> {
        self.lock_event(name).await?;
        Ok(sqlx::query_scalar(
            "INSERT INTO events (name, payload, created_at) VALUES ($1, $2, $3) RETURNING seq",
        )
        .bind(name)
        .bind(payload)
        .bind(now)
        .fetch_one(&mut *self.conn)
        .await?)
    }

    async fn end_event_waits(&mut self, name: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
             WHERE wait = 'event' AND wait_event = $1",
        )
        .bind(name)
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }

    async fn resumable_steps(&mut self, run_id: &str) -> Result<Vec<ResumableStep>> {
        sqlx::query(
            "SELECT id, attempt, activations, deployment FROM steps \
             WHERE run_id = $1 AND status IN ('failed', 'cancelled') \
             ORDER BY created_at, child_index NULLS FIRST",
        )
        .bind(run_id)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(|r| {
            Ok(ResumableStep {
                step_id: r.try_get(0)?,
                attempt: u32_of(r.try_get(1)?)?,
                activations: r.try_get(2)?,
                deployment: r.try_get(3)?,
            })
        })
        .collect()
    }

    async fn children_of(&mut self, step_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM steps WHERE parent_id = $1")
                .bind(step_id)
                .fetch_all(&mut *self.conn)
                .await?,
        )
    }

    async fn unposition_children(&mut self, parent: &str, from: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE steps SET child_index = NULL WHERE parent_id = $1 AND child_index >= $2 \
             RETURNING id",
        )
        .bind(parent)
        .bind(i64::from(from))
        .fetch_all(&mut *self.conn)
        .await?)
    }

    async fn new_attempt(&mut self, step_id: &str, attempt: u32) -> Result<()> {
        sqlx::query("INSERT INTO attempts (step_id, attempt, status) VALUES ($1, $2, 'queued')")
            .bind(step_id)
            .bind(i64::from(attempt))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn requeue_step(&mut self, step_id: &str, attempt: Option<u32>) -> Result<()> {
        // With no attempt given, `attempt` and `activations` keep their values.
        sqlx::query(
            "UPDATE steps SET status = 'queued', wait = NULL, wait_event = NULL, wake_at = NULL, \
             pending = 0, output = NULL, error = NULL, completed_at = NULL, \
             lease_expires_at = NULL, attempt = COALESCE($1, attempt), \
             activations = CASE WHEN $1 IS NULL THEN activations ELSE 1 END WHERE id = $2",
        )
        .bind(attempt.map(i64::from))
        .bind(step_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn requeue_run(&mut self, run_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = 'queued', output = NULL, error = NULL, \
             completed_at = NULL, claimed_at = NULL WHERE id = $1",
        )
        .bind(run_id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn pin_step(&mut self, step_id: &str, version: i64, digest: &str) -> Result<()> {
        sqlx::query("UPDATE steps SET version = $1, digest = $2 WHERE id = $3")
            .bind(version)
            .bind(digest)
            .bind(step_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn pin_run(&mut self, run_id: &str, version: i64, digest: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET version = $1, digest = $2 WHERE id = $3")
            .bind(version)
            .bind(digest)
            .bind(run_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
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
