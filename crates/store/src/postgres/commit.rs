//! Committing completions: fencing by attempt, key-value checks and writes, and everything a
//! committed completion implies (attempts, runs, children, waits, parents, abandoned
//! descendants, journal and logs), in the caller's transaction.

use std::collections::HashSet;

use anyhow::Result;
use sqlx::{PgConnection, Row};

use super::{workflow, PgStore};
use crate::decide::complete::{step_end, Encoded};
use crate::{CommitOutcome, Completion, KvRead, KvWrite, Micros, Status};

impl PgStore {
    /// Applies `encoded` completions in order inside the caller's transaction; see
    /// [`crate::Store::complete_steps`].
    pub(super) async fn apply_completions(
        &self,
        conn: &mut PgConnection,
        encoded: &[Encoded<'_>],
        now: Micros,
    ) -> Result<Vec<CommitOutcome>> {
        let mut outcomes = vec![CommitOutcome::Fenced; encoded.len()];
        // As on SQLite: a batch is split into segments in which every step appears at most
        // once; a repeated step sees the effect of the earlier completions of the batch.
        let mut committed: Vec<&Encoded> = Vec::with_capacity(encoded.len());
        let mut start = 0;
        while start < encoded.len() {
            let mut seen = HashSet::new();
            let end = encoded[start..]
                .iter()
                .position(|e| !seen.insert(e.c.step_id.as_str()))
                .map_or(encoded.len(), |p| start + p);
            let segment = &encoded[start..end];
            let mut applied: HashSet<String> = HashSet::with_capacity(segment.len());
            let mut plain = Vec::with_capacity(segment.len());
            for (i, e) in segment.iter().enumerate() {
                if e.c.kv_reads.is_empty() && e.c.kv_writes.is_empty() {
                    plain.push(e);
                    continue;
                }
                // Key-value completions are serialized on the counter row, so what one checks
                // holds until it commits.
                sqlx::query("SELECT stamp FROM kv_clock WHERE id = 1 FOR UPDATE")
                    .execute(&mut *conn)
                    .await?;
                if kv_conflict(conn, &e.c.kv_reads).await? {
                    outcomes[start + i] = requeue_conflicted(conn, e.c).await?;
                    continue;
                }
                let done = fence_and_complete(conn, &[e]).await?;
                if !done.is_empty() && e.c.status == Status::Succeeded {
                    apply_kv_writes(conn, &e.c.kv_writes, now).await?;
                }
                applied.extend(done);
            }
            applied.extend(fence_and_complete(conn, &plain).await?);
            let mut ids: Vec<&str> = Vec::with_capacity(applied.len());
            let mut ended: Vec<&str> = Vec::new();
            for (i, e) in segment.iter().enumerate() {
                if applied.contains(&e.c.step_id) {
                    outcomes[start + i] = CommitOutcome::Committed;
                    committed.push(e);
                    ids.push(&e.c.step_id);
                    if e.c.ends_step() {
                        ended.push(&e.c.step_id);
                    }
                } else if outcomes[start + i] != CommitOutcome::Conflict {
                    outcomes[start + i] = fenced_outcome(conn, &e.c.step_id).await?;
                }
            }
            if !ids.is_empty() {
                // The attempt mirrors the step: it goes on while its workflow waits or
                // lingers, and failed when the step is queued for a retry.
                sqlx::query(
                    "UPDATE attempts SET status = CASE \
                     WHEN s.status = 'queued' AND s.wait IS NOT NULL THEN 'running' \
                     WHEN s.status = 'queued' THEN 'failed' ELSE s.status END, \
                     worker_id = s.worker_id, \
                     started_at = COALESCE(attempts.started_at, s.started_at), \
                     completed_at = s.completed_at, error = s.error \
                     FROM steps s WHERE s.id = attempts.step_id AND s.attempt = attempts.attempt \
                     AND s.id = ANY($1)",
                )
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            }
            if !ended.is_empty() {
                // The run mirrors its root step once that has ended.
                sqlx::query(
                    "UPDATE runs SET (status, output, error, completed_at) = \
                     (SELECT s.status, s.output, s.error, s.completed_at FROM steps s \
                     WHERE s.run_id = runs.id AND s.parent_id IS NULL) \
                     WHERE id IN (SELECT run_id FROM steps WHERE id = ANY($1) \
                     AND parent_id IS NULL AND status IN ('succeeded', 'failed', 'cancelled'))",
                )
                .bind(&ended)
                .execute(&mut *conn)
                .await?;
            }
            start = end;
        }

        let committed_completions: Vec<&Completion> = committed.iter().map(|e| e.c).collect();
        workflow::insert_children(conn, &committed_completions, now).await?;
        workflow::settle_waits(conn, &committed_completions).await?;
        let finished: Vec<&str> = committed_completions
            .iter()
            .filter(|c| c.ends_step())
            .map(|c| c.step_id.as_str())
            .collect();
        workflow::wake_parents(conn, &finished).await?;
        workflow::cancel_abandoned(conn, &finished, now).await?;
        insert_journal_and_logs(conn, &committed_completions).await?;
        Ok(outcomes)
    }
}

/// Inserts the journal entries and log lines of committed completions.
async fn insert_journal_and_logs(conn: &mut PgConnection, committed: &[&Completion]) -> Result<()> {
    let (mut step, mut attempt, mut seq, mut kind, mut data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in committed {
        for j in &c.journal {
            step.push(c.step_id.as_str());
            attempt.push(i64::from(c.attempt));
            seq.push(i64::from(j.seq));
            kind.push(j.kind.as_str());
            data.push(j.data.as_str());
        }
    }
    if !step.is_empty() {
        sqlx::query(
            "INSERT INTO journal (step_id, attempt, seq, kind, data) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])",
        )
        .bind(&step)
        .bind(&attempt)
        .bind(&seq)
        .bind(&kind)
        .bind(&data)
        .execute(&mut *conn)
        .await?;
    }
    let (mut step, mut attempt, mut seq, mut at, mut stream, mut level, mut message) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for c in committed {
        for l in &c.logs {
            step.push(c.step_id.as_str());
            attempt.push(i64::from(c.attempt));
            seq.push(i64::from(l.seq));
            at.push(l.at);
            stream.push(l.stream.as_str());
            level.push(l.level.as_str());
            message.push(l.message.as_str());
        }
    }
    if !step.is_empty() {
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
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// True when one of `reads` no longer holds: a key's version changed (or it appeared or
/// vanished), or a prefix's key count or newest version did.
async fn kv_conflict(conn: &mut PgConnection, reads: &[KvRead]) -> Result<bool> {
    for read in reads {
        let changed = match read {
            KvRead::Key {
                scope,
                key,
                version,
            } => {
                let current: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM kv WHERE scope = $1 AND key = $2")
                        .bind(scope)
                        .bind(key)
                        .fetch_optional(&mut *conn)
                        .await?;
                current.unwrap_or(0) != *version
            }
            KvRead::Prefix {
                scope,
                prefix,
                count,
                max_version,
            } => {
                let row = sqlx::query(
                    "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM kv \
                     WHERE scope = $1 AND key >= $2 AND starts_with(key, $2)",
                )
                .bind(scope)
                .bind(prefix)
                .fetch_one(&mut *conn)
                .await?;
                (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?) != (*count, *max_version)
            }
        };
        if changed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Queues the step of a conflicting completion again under the same attempt number (see
/// [`CommitOutcome::Conflict`]), if the attempt still owns it.
async fn requeue_conflicted(conn: &mut PgConnection, c: &Completion) -> Result<CommitOutcome> {
    let requeued = sqlx::query(
        "UPDATE steps SET status = 'queued', rerun = 1, reruns = reruns + 1, \
         worker_id = NULL, assigned_at = NULL, started_at = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(&c.step_id)
    .bind(i64::from(c.attempt))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if requeued == 0 {
        return fenced_outcome(conn, &c.step_id).await;
    }
    sqlx::query(
        "UPDATE attempts SET status = 'queued', reruns = reruns + 1 \
         WHERE step_id = $1 AND attempt = $2",
    )
    .bind(&c.step_id)
    .bind(i64::from(c.attempt))
    .execute(&mut *conn)
    .await?;
    Ok(CommitOutcome::Conflict)
}

/// Applies the key-value writes of one committed completion, in order (later wins), stamping
/// every key it writes with the next version of the store-wide counter.
async fn apply_kv_writes(conn: &mut PgConnection, writes: &[KvWrite], now: Micros) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let stamp: i64 =
        sqlx::query_scalar("UPDATE kv_clock SET stamp = stamp + 1 WHERE id = 1 RETURNING stamp")
            .fetch_one(&mut *conn)
            .await?;
    for write in writes {
        match &write.value {
            Some(value) => {
                sqlx::query(
                    "INSERT INTO kv (scope, key, value, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO UPDATE \
                     SET value = excluded.value, updated_at = excluded.updated_at, \
                     version = excluded.version",
                )
                .bind(&write.scope)
                .bind(&write.key)
                .bind(value.as_slice())
                .bind(now)
                .bind(stamp)
                .execute(&mut *conn)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM kv WHERE scope = $1 AND key = $2")
                    .bind(&write.scope)
                    .bind(&write.key)
                    .execute(&mut *conn)
                    .await?
            }
        };
    }
    Ok(())
}

/// Why a completion of `step_id` was refused: the step was cancelled, or a newer attempt owns it.
async fn fenced_outcome(conn: &mut PgConnection, step_id: &str) -> Result<CommitOutcome> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM steps WHERE id = $1")
        .bind(step_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match status.as_deref() {
        Some("cancelled") => CommitOutcome::Cancelled,
        _ => CommitOutcome::Fenced,
    })
}

/// Applies the step part of `batch` (distinct steps) where the fence holds: the step is still
/// `running` under the completion's attempt. Returns the ids of the steps it changed.
async fn fence_and_complete(
    conn: &mut PgConnection,
    batch: &[&Encoded<'_>],
) -> Result<Vec<String>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let n = batch.len();
    let (mut id, mut attempt, mut status, mut output, mut error) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut started_at, mut completed_at, mut worker_id, mut wait, mut wait_event, mut wake_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in batch {
        let end = step_end(e);
        id.push(e.c.step_id.as_str());
        attempt.push(i64::from(e.c.attempt));
        status.push(end.status);
        output.push(e.output.as_deref());
        error.push(e.error.as_deref());
        started_at.push(e.c.started_at);
        completed_at.push(end.completed_at);
        worker_id.push(e.c.worker_id.as_str());
        wait.push(end.wait);
        wait_event.push(end.wait_event);
        wake_at.push(end.wake_at);
    }
    let ids = sqlx::query_scalar(
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
         RETURNING steps.id",
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
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids)
}
