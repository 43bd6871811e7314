//! The [`Tx`] primitives on the writer connection, inside the caller's `BEGIN IMMEDIATE`
//! transaction: each is one or a few SQL statements and decides nothing (the decisions are in
//! [`crate::decide`]). They run synchronously, so their futures are ready when first polled
//! (see [`super::decided`]).

use super::*;
use crate::decide::complete::StepEnd;
use crate::decide::{
    waits, Changed, ExpiredLease, JournalRow, LateStart, LeaseHolder, LogRow, RawClaim,
    ResumableStep, Tx,
};
use crate::rows::RUN_SHOWN_STATUS;

/// What a claiming `UPDATE` returns, as [`steps_of`] reads it.
const CLAIM_RETURNING: &str = "RETURNING id, run_id, task, deployment, version, digest, input, \
                               attempt, created_at, activations, policy, reruns";

/// One write transaction of a [`SqliteStore`]: its writer connection inside `BEGIN IMMEDIATE`,
/// and the store for its policy cache.
pub(super) struct SqliteTx<'a> {
    pub(super) store: &'a SqliteStore,
    pub(super) conn: &'a Connection,
}

impl Tx for SqliteTx<'_> {
    async fn expired_leases(&mut self, now: Micros, max: usize) -> Result<Vec<ExpiredLease>> {
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

    async fn step_policy(
        &mut self,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)> {
        self.store
            .step_policy(self.conn, deployment, version, overrides)
    }

    async fn count_lost_lease(&mut self, ids: &[&str]) -> Result<()> {
        execute_for_ids(self.conn, ids, |list| {
            [format!(
                "UPDATE steps SET lost_leases = lost_leases + 1 WHERE id IN ({list})"
            )]
        })
    }

    async fn reclaim(
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

    async fn claim_queued(
        &mut self,
        worker_id: &str,
        now: Micros,
        lease_until: Micros,
        max: usize,
    ) -> Result<Vec<RawClaim>> {
        // The subquery and the update are one statement under the write lock: nobody else can
        // claim the same rows in between.
        steps_of(
            self.conn,
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
            (worker_id, now, lease_until, max as i64),
            now,
        )
    }

    async fn record_claims(&mut self, ids: &[&str]) -> Result<()> {
        execute_for_ids(self.conn, ids, |list| {
            [
                format!(
                    "INSERT INTO attempts (step_id, attempt, status, worker_id, assigned_at, \
                     hypergraph_version) \
                     SELECT id, attempt, 'running', worker_id, assigned_at, \
                     (SELECT version FROM workers WHERE workers.id = steps.worker_id) \
                     FROM steps WHERE id IN ({list}) ON CONFLICT (step_id, attempt) DO UPDATE \
                     SET status = 'running', worker_id = excluded.worker_id, \
                     assigned_at = excluded.assigned_at, \
                     hypergraph_version = excluded.hypergraph_version"
                ),
                // The run of a claimed step is marked claimed (`rows::RUN_SHOWN_STATUS`) by
                // its first claim only: a run claimed before (a reclaim, a child) is left alone.
                format!(
                    "UPDATE runs SET claimed_at = claims.assigned_at \
                     FROM (SELECT run_id, MIN(assigned_at) AS assigned_at FROM steps \
                     WHERE id IN ({list}) GROUP BY run_id) AS claims \
                     WHERE runs.id = claims.run_id AND runs.claimed_at IS NULL"
                ),
            ]
        })
    }

    async fn lease_holders(&mut self, now: Micros) -> Result<Vec<LeaseHolder>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT id, last_seen_at, heartbeat_ms, stopped_at FROM workers WHERE id IN \
                 (SELECT worker_id FROM steps WHERE status = 'running' AND lease_expires_at >= ?)",
            )?
            .query_map([now], |r| {
                Ok(LeaseHolder {
                    worker_id: r.get(0)?,
                    last_seen_at: r.get(1)?,
                    heartbeat_ms: r.get(2)?,
                    stopped_at: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    async fn end_leases(&mut self, workers: &[&str], now: Micros) -> Result<u64> {
        let mut ended = 0;
        for chunk in chunks(workers) {
            let list = placeholders(chunk.len());
            let expired = now - 1;
            let mut params: Vec<&dyn ToSql> = vec![&expired, &now];
            params.extend(chunk.iter().map(|id| id as &dyn ToSql));
            ended += self
                .conn
                .prepare_cached(&format!(
                    "UPDATE steps SET lease_expires_at = ? WHERE status = 'running' \
                     AND lease_expires_at >= ? AND worker_id IN ({list})"
                ))?
                .execute(params.as_slice())? as u64;
        }
        Ok(ended)
    }

    async fn resume_journal(&mut self, step_id: &str) -> Result<(Vec<JournalRecord>, u32)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT attempt, seq, kind, data FROM journal WHERE step_id = ?1 AND attempt = \
             (SELECT MAX(attempt) FROM journal WHERE step_id = ?1) ORDER BY seq",
        )?;
        let mut attempt = 0;
        let records = stmt
            .query_map([step_id], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    JournalRecord {
                        seq: r.get(1)?,
                        kind: r.get(2)?,
                        data: r.get(3)?,
                    },
                ))
            })?
            .map(|row| {
                let (a, record) = row?;
                attempt = a;
                Ok(record)
            })
            .collect::<Result<_>>()?;
        Ok((records, attempt))
    }

    async fn end_timed_waits(&mut self, at: Micros) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE steps SET wait = NULL, wait_event = NULL \
                 WHERE wait IN ('timer', 'event') AND wake_at <= ?",
            )?
            .execute([at])?;
        Ok(())
    }

    // (The unary `+` in the deadline queries makes SQLite use the deadline indexes, which hold
    // only steps and runs that have a deadline, rather than the status indexes, which hold
    // every queued step or run.)
    async fn sweep_due(&mut self, at: Micros) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM steps WHERE start_deadline <= ?1 \
                 AND +status = 'queued' AND +wait IS NULL) \
                 OR EXISTS (SELECT 1 FROM runs WHERE deadline <= ?1 \
                 AND +status IN ('queued', 'running')) \
                 OR EXISTS (SELECT 1 FROM steps WHERE wait IN ('timer', 'event') \
                 AND wake_at <= ?1)",
            )?
            .query_row([at], |r| r.get(0))?)
    }

    async fn fail_late_starts(
        &mut self,
        at: Micros,
        now: Micros,
        error: &str,
    ) -> Result<Vec<LateStart>> {
        let late = self
            .conn
            .prepare_cached(
                "UPDATE steps SET status = 'failed', error = ?1, completed_at = ?2, \
                 start_deadline = NULL \
                 WHERE +status = 'queued' AND +wait IS NULL AND start_deadline <= ?3 \
                 RETURNING id, parent_id, run_id",
            )?
            .query_map((error, now, at), |r| {
                Ok(LateStart {
                    step_id: r.get(0)?,
                    parent_id: r.get(1)?,
                    run_id: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(late)
    }

    async fn runs_past_deadline(&mut self, at: Micros) -> Result<Vec<String>> {
        let overdue = self
            .conn
            .prepare_cached(
                "SELECT id FROM runs WHERE deadline <= ? AND +status IN ('queued', 'running')",
            )?
            .query_map([at], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(overdue)
    }

    async fn run_status(&mut self, run_id: &str) -> Result<Option<(Status, String)>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {RUN_SHOWN_STATUS}, deployment FROM runs WHERE id = ?"
            ))?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .map(|(status, deployment)| Ok((status_of(status)?, deployment)))
            .transpose()
    }

    async fn end_run(
        &mut self,
        run_id: &str,
        status: Status,
        error: &str,
        now: Micros,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET status = ?, error = ?, completed_at = ? \
                 WHERE id = ? AND status IN ('queued', 'running')",
            )?
            .execute((status.as_str(), error, now, run_id))?;
        Ok(())
    }

    async fn unfinished_steps(&mut self, run_id: &str) -> Result<Vec<String>> {
        let ids = self
            .conn
            .prepare_cached(
                "SELECT id FROM steps WHERE run_id = ? AND status IN ('queued', 'running')",
            )?
            .query_map([run_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    async fn unfinished_children(&mut self, parents: &[&str]) -> Result<Vec<String>> {
        let mut children = Vec::new();
        for chunk in chunks(parents) {
            let sql = format!(
                "SELECT id FROM steps WHERE parent_id IN ({}) AND status IN ('queued', 'running')",
                placeholders(chunk.len())
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| r.get(0))?;
            for id in rows {
                children.push(id?);
            }
        }
        Ok(children)
    }

    async fn cancel_steps(&mut self, ids: &[String], now: Micros, error: &str) -> Result<u64> {
        let mut cancelled = 0;
        for chunk in chunks(ids) {
            let list = placeholders(chunk.len());
            let mut params: Vec<&dyn ToSql> = vec![&now, &error];
            params.extend(chunk.iter().map(|id| id as &dyn ToSql));
            self.conn
                .prepare_cached(&format!(
                    "UPDATE attempts SET status = 'cancelled', completed_at = ?, error = ? \
                     WHERE status = 'running' AND step_id IN ({list})"
                ))?
                .execute(params.as_slice())?;
            cancelled += self
                .conn
                .prepare_cached(&format!(
                    "UPDATE steps SET status = 'cancelled', completed_at = ?, error = ?, \
                     wait = NULL, wait_event = NULL, lease_expires_at = NULL \
                     WHERE status IN ('queued', 'running') AND id IN ({list})"
                ))?
                .execute(params.as_slice())? as u64;
        }
        Ok(cancelled)
    }

    async fn kv_version(&mut self, scope: &str, key: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT version FROM kv WHERE scope = ? AND key = ?")?
            .query_row((scope, key), |r| r.get(0))
            .optional()?)
    }

    async fn kv_prefix(&mut self, scope: &str, prefix: &str) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM kv \
                 WHERE scope = ? AND key >= ? AND substr(key, 1, ?) = ?",
            )?
            .query_row(
                (scope, prefix, prefix.chars().count() as i64, prefix),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
    }

    async fn apply_kv_writes(&mut self, writes: &[KvWrite], now: Micros) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let conn = self.conn;
        let stamp: i64 = conn
            .prepare_cached("UPDATE kv_clock SET stamp = stamp + 1 WHERE id = 1 RETURNING stamp")?
            .query_row([], |r| r.get(0))?;
        for write in writes {
            match &write.value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO kv (scope, key, value, updated_at, version) \
                         VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE \
                         SET value = excluded.value, updated_at = excluded.updated_at, \
                         version = excluded.version",
                    )?
                    .execute((&write.scope, &write.key, value.as_slice(), now, stamp))?,
                None => conn
                    .prepare_cached("DELETE FROM kv WHERE scope = ? AND key = ?")?
                    .execute((&write.scope, &write.key))?,
            };
        }
        Ok(())
    }

    async fn requeue_conflicted(&mut self, step_id: &str, attempt: u32) -> Result<bool> {
        let requeued = self
            .conn
            .prepare_cached(
                "UPDATE steps SET status = 'queued', rerun = 1, reruns = reruns + 1, \
                 worker_id = NULL, assigned_at = NULL, started_at = NULL, lease_expires_at = NULL \
                 WHERE id = ? AND attempt = ? AND status = 'running'",
            )?
            .execute((step_id, attempt))?;
        if requeued == 0 {
            return Ok(false);
        }
        self.conn
            .prepare_cached(
                "UPDATE attempts SET status = 'queued', reruns = reruns + 1 \
                 WHERE step_id = ? AND attempt = ?",
            )?
            .execute((step_id, attempt))?;
        Ok(true)
    }

    async fn step_status(&mut self, step_id: &str) -> Result<Option<Status>> {
        self.conn
            .prepare_cached("SELECT status FROM steps WHERE id = ?")?
            .query_row([step_id], |r| r.get(0))
            .optional()?
            .map(status_of)
            .transpose()
    }

    async fn fence_and_complete(&mut self, ends: &[StepEnd<'_>]) -> Result<Vec<Changed>> {
        let mut changed = Vec::with_capacity(ends.len());
        for chunk in chunks(ends) {
            let sql = values_sql(
                "UPDATE steps SET status = v.column3, output = v.column4, error = v.column5, \
                 started_at = v.column6, completed_at = v.column7, worker_id = v.column8, \
                 wait = v.column9, wait_event = v.column10, wake_at = v.column11, \
                 activations = CASE WHEN v.column3 = 'running' OR v.column9 IS NOT NULL \
                 THEN activations + 1 ELSE activations END, \
                 lease_expires_at = CASE WHEN v.column3 = 'running' THEN lease_expires_at END \
                 FROM (VALUES ",
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                chunk.len(),
            ) + ") AS v WHERE steps.id = v.column1 AND steps.attempt = v.column2 \
                 AND steps.status = 'running' \
                 RETURNING steps.id, steps.parent_id IS NULL, steps.activations";
            let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 11);
            for end in chunk {
                params.extend([
                    &end.e.c.step_id as &dyn ToSql,
                    &end.e.c.attempt,
                    &end.status,
                    &end.e.output,
                    &end.e.error,
                    &end.e.c.started_at,
                    &end.completed_at,
                    &end.e.c.worker_id,
                    &end.wait,
                    &end.wait_event,
                    &end.wake_at,
                ]);
            }
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params.as_slice(), |r| {
                Ok(Changed {
                    step_id: r.get(0)?,
                    root: r.get(1)?,
                    activations: r.get(2)?,
                })
            })?;
            for row in rows {
                changed.push(row?);
            }
        }
        Ok(changed)
    }

    async fn mirror_attempts(&mut self, ids: &[&str]) -> Result<()> {
        execute_for_ids(self.conn, ids, |list| {
            [format!(
                "UPDATE attempts SET status = CASE \
                 WHEN s.status = 'queued' AND s.wait IS NOT NULL THEN 'running' \
                 WHEN s.status = 'queued' THEN 'failed' ELSE s.status END, \
                 worker_id = s.worker_id, \
                 started_at = COALESCE(attempts.started_at, s.started_at), \
                 completed_at = s.completed_at, error = s.error \
                 FROM steps s WHERE s.id = attempts.step_id AND s.attempt = attempts.attempt \
                 AND s.id IN ({list})"
            )]
        })
    }

    async fn end_runs_with_root(&mut self, ids: &[&str]) -> Result<()> {
        // (The unary `+` keeps SQLite from driving the lookup by the `parent_id` index, which
        // holds every root step.)
        execute_for_ids(self.conn, ids, |list| {
            [format!(
                "UPDATE runs SET (status, output, error, completed_at) = \
                 (SELECT s.status, s.output, s.error, s.completed_at FROM steps s \
                 WHERE s.run_id = runs.id AND s.parent_id IS NULL) \
                 WHERE id IN (SELECT run_id FROM steps WHERE id IN ({list}) \
                 AND +parent_id IS NULL AND +status IN ('succeeded', 'failed', 'cancelled'))"
            )]
        })
    }

    async fn insert_children(&mut self, completions: &[&Completion], now: Micros) -> Result<()> {
        let rows: Vec<(&Completion, &NewChild, String, Option<String>, i64)> = completions
            .iter()
            .flat_map(|c| {
                let joined = waits::joined_at_start(c);
                c.children.iter().map(move |child| {
                    let input = serde_json::to_string(&child.input).expect("values serialize");
                    let policy = child
                        .policy
                        .as_ref()
                        .map(|p| serde_json::to_string(p).expect("policies serialize"));
                    let awaited = i64::from(joined.contains(child.step_id.as_str()));
                    (*c, child, input, policy, awaited)
                })
            })
            .collect();
        insert_rows(
            self.conn,
            "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
             attempt, created_at, parent_id, child_index, policy, start_deadline, name, \
             awaited) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?)",
            &rows,
            |(c, child, input, policy, awaited)| {
                vec![
                    &child.step_id,
                    &c.run_id,
                    &child.task,
                    &child.deployment,
                    &child.version,
                    &child.digest,
                    input,
                    &now as &dyn ToSql,
                    &c.step_id,
                    &child.index,
                    policy,
                    &child.start_deadline,
                    &child.name,
                    awaited,
                ]
            },
        )
    }

    async fn insert_journal(&mut self, rows: &[JournalRow<'_>]) -> Result<()> {
        insert_rows(
            self.conn,
            "INSERT INTO journal (step_id, attempt, seq, kind, data) VALUES ",
            "(?, ?, ?, ?, ?)",
            rows,
            |(step_id, attempt, j)| vec![step_id, attempt, &j.seq, &j.kind, &j.data],
        )
    }

    async fn insert_logs(&mut self, rows: &[LogRow<'_>]) -> Result<()> {
        insert_rows(
            self.conn,
            "INSERT INTO logs (step_id, attempt, seq, at, stream, level, message) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?)",
            rows,
            |(step_id, attempt, l)| {
                vec![
                    step_id, attempt, &l.seq, &l.at, &l.stream, &l.level, &l.message,
                ]
            },
        )
    }

    async fn await_unfinished(&mut self, ids: &[String]) -> Result<i64> {
        let mut unfinished = 0i64;
        for chunk in chunks(ids) {
            let sql = format!(
                "UPDATE steps SET awaited = 1 WHERE id IN ({}) \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled') RETURNING id",
                placeholders(chunk.len())
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(chunk))?;
            while rows.next()?.is_some() {
                unfinished += 1;
            }
        }
        Ok(unfinished)
    }

    async fn set_pending(&mut self, step_id: &str, attempt: u32, pending: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE steps SET pending = ? WHERE id = ? AND attempt = ?")?
            .execute((pending, step_id, attempt))?;
        Ok(())
    }

    async fn end_wait(&mut self, step_id: &str, attempt: u32) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL, pending = 0 \
                 WHERE id = ? AND attempt = ?",
            )?
            .execute((step_id, attempt))?;
        Ok(())
    }

    async fn event_sent_after(&mut self, name: &str, after: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM events WHERE name = ? AND seq > ? LIMIT 1")?
            .exists((name, after))?)
    }

    async fn count_down_parents(&mut self, finished: &[&str]) -> Result<Vec<(String, i64)>> {
        let mut parents = Vec::new();
        for chunk in chunks(finished) {
            let sql = format!(
                "UPDATE steps SET pending = steps.pending - c.finished FROM \
                 (SELECT parent_id, COUNT(*) AS finished FROM steps \
                 WHERE id IN ({}) AND awaited = 1 GROUP BY parent_id) AS c \
                 WHERE steps.id = c.parent_id AND steps.wait = 'children' \
                 RETURNING steps.id, steps.pending",
                placeholders(chunk.len())
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            for row in rows {
                parents.push(row?);
            }
        }
        Ok(parents)
    }

    async fn end_child_waits(&mut self, ids: &[String]) -> Result<()> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        execute_for_ids(self.conn, &ids, |list| {
            [format!(
                "UPDATE steps SET wait = NULL, pending = 0 \
                 WHERE wait = 'children' AND id IN ({list})"
            )]
        })
    }

    async fn insert_event(&mut self, name: &str, payload: &str, now: Micros) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached(
                "INSERT INTO events (name, payload, created_at) VALUES (?, ?, ?) RETURNING seq",
            )?
            .query_row((name, payload, now), |r| r.get(0))?)
    }

    async fn end_event_waits(&mut self, name: &str) -> Result<u64> {
        let woken = self
            .conn
            .prepare_cached(
                "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
                 WHERE wait = 'event' AND wait_event = ?",
            )?
            .execute([name])?;
        Ok(woken as u64)
    }

    async fn resumable_steps(&mut self, run_id: &str) -> Result<Vec<ResumableStep>> {
        let steps = self
            .conn
            .prepare_cached(
                "SELECT id, attempt, activations, deployment FROM steps \
                 WHERE run_id = ? AND status IN ('failed', 'cancelled') \
                 ORDER BY created_at, child_index",
            )?
            .query_map([run_id], |r| {
                Ok(ResumableStep {
                    step_id: r.get(0)?,
                    attempt: r.get(1)?,
                    activations: r.get(2)?,
                    deployment: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(steps)
    }

    async fn children_of(&mut self, step_id: &str) -> Result<Vec<String>> {
        let ids = self
            .conn
            .prepare_cached("SELECT id FROM steps WHERE parent_id = ?")?
            .query_map([step_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    async fn unposition_children(&mut self, parent: &str, from: u32) -> Result<Vec<String>> {
        let ids = self
            .conn
            .prepare_cached(
                "UPDATE steps SET child_index = NULL WHERE parent_id = ? AND child_index >= ? \
                 RETURNING id",
            )?
            .query_map((parent, from), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    async fn new_attempt(&mut self, step_id: &str, attempt: u32) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO attempts (step_id, attempt, status) VALUES (?, ?, 'queued')",
            )?
            .execute((step_id, attempt))?;
        Ok(())
    }

    async fn requeue_step(&mut self, step_id: &str, attempt: Option<u32>) -> Result<()> {
        const RESET: &str = "status = 'queued', wait = NULL, wait_event = NULL, wake_at = NULL, \
                             pending = 0, output = NULL, error = NULL, completed_at = NULL, \
                             lease_expires_at = NULL";
        match attempt {
            Some(attempt) => self
                .conn
                .prepare_cached(&format!(
                    "UPDATE steps SET {RESET}, attempt = ?, activations = 1 WHERE id = ?"
                ))?
                .execute((attempt, step_id))?,
            None => self
                .conn
                .prepare_cached(&format!("UPDATE steps SET {RESET} WHERE id = ?"))?
                .execute([step_id])?,
        };
        Ok(())
    }

    async fn requeue_run(&mut self, run_id: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET status = 'queued', output = NULL, error = NULL, \
                 completed_at = NULL, claimed_at = NULL WHERE id = ?",
            )?
            .execute([run_id])?;
        Ok(())
    }

    async fn pin_step(&mut self, step_id: &str, version: i64, digest: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE steps SET version = ?, digest = ? WHERE id = ?")?
            .execute((version, digest, step_id))?;
        Ok(())
    }

    async fn pin_run(&mut self, run_id: &str, version: i64, digest: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET version = ?, digest = ? WHERE id = ?")?
            .execute((version, digest, run_id))?;
        Ok(())
    }
}
