//! Committing completions on the writer connection: fencing by attempt, key-value checks and
//! writes, and everything a committed completion implies (attempts, runs, children, waits,
//! parents, abandoned descendants, journal and logs), in the caller's transaction.

use super::*;

pub(super) use crate::rows::{encode, Encoded};

/// Applies `encoded` completions in order inside the caller's transaction; see
/// [`Store::complete_steps`].
pub(super) fn apply_completions(
    conn: &Connection,
    encoded: &[Encoded<'_>],
    now: Micros,
) -> Result<Vec<CommitOutcome>> {
    let mut outcomes = vec![CommitOutcome::Fenced; encoded.len()];
    // Completions are applied in order. A batch is split into segments in which every step
    // appears at most once; each segment is applied with a few multi-row statements, and a
    // repeated step (a worker bug, but it must not corrupt anything) sees the effect of the
    // earlier completions of the batch, as if applied one by one.
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
        // Completions that touch key-value storage go one by one, in order: each is checked
        // against the writes of those before it. The others are applied in multi-row statements.
        type Indexed<'a, 'c> = Vec<(usize, &'a Encoded<'c>)>;
        let (with_kv, plain): (Indexed, Indexed) = segment
            .iter()
            .enumerate()
            .partition(|(_, e)| !e.c.kv_reads.is_empty() || !e.c.kv_writes.is_empty());
        for (i, e) in with_kv {
            if kv_conflict(conn, &e.c.kv_reads)? {
                outcomes[start + i] = requeue_conflicted(conn, e.c)?;
                continue;
            }
            let done = fence_and_complete(conn, &[e])?;
            if !done.is_empty() && e.c.status == Status::Succeeded {
                apply_kv_writes(conn, &e.c.kv_writes, now)?;
            }
            applied.extend(done);
        }
        let plain: Vec<&Encoded> = plain.into_iter().map(|(_, e)| e).collect();
        for chunk in chunks(&plain) {
            applied.extend(fence_and_complete(conn, chunk)?);
        }
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
                outcomes[start + i] = fenced_outcome(conn, &e.c.step_id)?;
            }
        }
        // The attempt mirrors the step: it goes on while its workflow waits or lingers, and
        // failed when the step is queued for a retry.
        execute_for_ids(conn, &ids, |list| {
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
        })?;
        // The run mirrors its root step once that has ended. (The unary `+` keeps SQLite from
        // driving the lookup by the `parent_id` index, which holds every root step.)
        execute_for_ids(conn, &ended, |list| {
            [format!(
                "UPDATE runs SET (status, output, error, completed_at) = \
                 (SELECT s.status, s.output, s.error, s.completed_at FROM steps s \
                 WHERE s.run_id = runs.id AND s.parent_id IS NULL) \
                 WHERE id IN (SELECT run_id FROM steps WHERE id IN ({list}) \
                 AND +parent_id IS NULL AND +status IN ('succeeded', 'failed', 'cancelled'))"
            )]
        })?;
        start = end;
    }

    let committed_completions: Vec<&Completion> = committed.iter().map(|e| e.c).collect();
    workflow::insert_children(conn, &committed_completions, now)?;
    workflow::settle_waits(conn, &committed_completions)?;
    let finished: Vec<&str> = committed_completions
        .iter()
        .filter(|c| c.ends_step())
        .map(|c| c.step_id.as_str())
        .collect();
    workflow::wake_parents(conn, &finished)?;
    workflow::cancel_abandoned(conn, &finished, now)?;

    let journal: Vec<(&Completion, &JournalRecord)> = committed
        .iter()
        .flat_map(|e| e.c.journal.iter().map(|j| (e.c, j)))
        .collect();
    insert_rows(
        conn,
        "INSERT INTO journal (step_id, attempt, seq, kind, data) VALUES ",
        "(?, ?, ?, ?, ?)",
        &journal,
        |(c, j)| vec![&c.step_id, &c.attempt, &j.seq, &j.kind, &j.data],
    )?;
    let logs: Vec<(&Completion, &LogRecord)> = committed
        .iter()
        .flat_map(|e| e.c.logs.iter().map(|l| (e.c, l)))
        .collect();
    insert_rows(
        conn,
        "INSERT INTO logs (step_id, attempt, seq, at, stream, level, message) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?)",
        &logs,
        |(c, l)| {
            vec![
                &c.step_id, &c.attempt, &l.seq, &l.at, &l.stream, &l.level, &l.message,
            ]
        },
    )?;
    Ok(outcomes)
}

/// True when one of `reads` no longer holds: a key's version changed (or it appeared or
/// vanished), or a prefix's key count or newest version did.
pub(super) fn kv_conflict(conn: &Connection, reads: &[KvRead]) -> Result<bool> {
    for read in reads {
        let changed = match read {
            KvRead::Key {
                scope,
                key,
                version,
            } => {
                let current: Option<i64> = conn
                    .prepare_cached("SELECT version FROM kv WHERE scope = ? AND key = ?")?
                    .query_row((scope, key), |r| r.get(0))
                    .optional()?;
                current.unwrap_or(0) != *version
            }
            KvRead::Prefix {
                scope,
                prefix,
                count,
                max_version,
            } => {
                let current: (i64, i64) = conn
                    .prepare_cached(
                        "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM kv \
                         WHERE scope = ? AND key >= ? AND substr(key, 1, ?) = ?",
                    )?
                    .query_row(
                        (scope, prefix, prefix.chars().count() as i64, prefix),
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                current != (*count, *max_version)
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
pub(super) fn requeue_conflicted(conn: &Connection, c: &Completion) -> Result<CommitOutcome> {
    let requeued = conn
        .prepare_cached(
            "UPDATE steps SET status = 'queued', rerun = 1, reruns = reruns + 1, \
             worker_id = NULL, assigned_at = NULL, started_at = NULL, lease_expires_at = NULL \
             WHERE id = ? AND attempt = ? AND status = 'running'",
        )?
        .execute((&c.step_id, c.attempt))?;
    if requeued == 0 {
        return fenced_outcome(conn, &c.step_id);
    }
    conn.prepare_cached(
        "UPDATE attempts SET status = 'queued', reruns = reruns + 1 \
         WHERE step_id = ? AND attempt = ?",
    )?
    .execute((&c.step_id, c.attempt))?;
    Ok(CommitOutcome::Conflict)
}

/// Applies the key-value writes of one committed completion, in order (later wins), stamping
/// every key it writes with the next version of the store-wide counter.
pub(super) fn apply_kv_writes(conn: &Connection, writes: &[KvWrite], now: Micros) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
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

/// Why a completion of `step_id` was refused: the step was cancelled, or a newer attempt owns it.
pub(super) fn fenced_outcome(conn: &Connection, step_id: &str) -> Result<CommitOutcome> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM steps WHERE id = ?")?
        .query_row([step_id], |r| r.get(0))
        .optional()?;
    Ok(match status.as_deref() {
        Some("cancelled") => CommitOutcome::Cancelled,
        _ => CommitOutcome::Fenced,
    })
}

/// Applies the step part of `chunk` (distinct steps) where the fence holds: the step is still
/// `running` under the completion's attempt. Returns the ids of the steps it changed.
pub(super) fn fence_and_complete(conn: &Connection, chunk: &[&Encoded<'_>]) -> Result<Vec<String>> {
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
         AND steps.status = 'running' RETURNING steps.id";
    let states: Vec<_> = chunk
        .iter()
        .map(|e| {
            let (status, wait, wait_event, wake_at) = crate::decide::complete::step_state(e.c);
            // A suspended or checkpointed attempt has not completed.
            let completed_at = (status != "running" && wait.is_none()).then_some(e.c.completed_at);
            (status, wait, wait_event, wake_at, completed_at)
        })
        .collect();
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 11);
    for (e, (status, wait, wait_event, wake_at, completed_at)) in chunk.iter().zip(&states) {
        params.extend([
            &e.c.step_id as &dyn ToSql,
            &e.c.attempt,
            status,
            &e.output,
            &e.error,
            &e.c.started_at,
            completed_at,
            &e.c.worker_id,
            wait,
            wait_event,
            wake_at,
        ]);
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let ids = stmt
        .query_map(params.as_slice(), |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}
