//! The SQLite side of workflows: resuming journals, child steps, waits and wake-ups, events and
//! cancellation. Functions taking a [`Connection`] run synchronously inside the caller's write
//! transaction; those taking a [`SqlitePool`] are reads.

use std::collections::{HashMap, HashSet};

use crate::decide::{errors, waits};
use anyhow::{Context as _, Result};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension};
use sqlx::{Row, SqlitePool};

use super::{
    chunks, execute_for_ids, insert_rows, json_of, opt_json, placeholders, status_of, u32_of,
};

use crate::{Cancelled, Completion, JournalRecord, NewChild, Status, StepOutcome, Wait};
use hypergraph_core::journal::{resume_cut, Entry};

/// The journal a resuming workflow continues: that of the newest attempt of `step_id` that has
/// one (the current attempt after a wait; the crashed one when this claim is a new attempt).
pub(super) fn resume_journal(
    conn: &Connection,
    step_id: &str,
) -> Result<(Vec<JournalRecord>, u32)> {
    let mut stmt = conn.prepare_cached(
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

/// Creates the children started by committed activations, queued.
pub(super) fn insert_children(
    conn: &Connection,
    committed: &[&Completion],
    now: i64,
) -> Result<()> {
    let rows: Vec<(&Completion, &NewChild, String, Option<String>)> = committed
        .iter()
        .flat_map(|c| {
            c.children.iter().map(move |child| {
                let input = serde_json::to_string(&child.input).expect("values serialize");
                let policy = child
                    .policy
                    .as_ref()
                    .map(|p| serde_json::to_string(p).expect("policies serialize"));
                (*c, child, input, policy)
            })
        })
        .collect();
    insert_rows(
        conn,
        "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
         attempt, created_at, parent_id, child_index, policy, start_deadline, name) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?)",
        &rows,
        |(c, child, input, policy)| {
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
            ]
        },
    )
}

/// Settles the waits of committed suspensions: children that finished in the meantime and events
/// already sent count at once, so a wait that is already over leaves the step claimable.
pub(super) fn settle_waits(conn: &Connection, committed: &[&Completion]) -> Result<()> {
    for c in committed {
        match &c.wait {
            Some(wait @ (Wait::Children(ids) | Wait::AnyChild(ids))) => {
                let mut pending = 0i64;
                for chunk in chunks(ids) {
                    let sql = format!(
                        "UPDATE steps SET awaited = 1 WHERE id IN ({}) \
                         AND status NOT IN ('succeeded', 'failed', 'cancelled') RETURNING id",
                        placeholders(chunk.len())
                    );
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(chunk))?;
                    while rows.next()?.is_some() {
                        pending += 1;
                    }
                }
                let pending = waits::pending_children(wait, pending);
                if pending == 0 {
                    conn.prepare_cached(
                        "UPDATE steps SET wait = NULL, pending = 0 WHERE id = ? AND attempt = ?",
                    )?
                    .execute((&c.step_id, c.attempt))?;
                } else {
                    conn.prepare_cached(
                        "UPDATE steps SET pending = ? WHERE id = ? AND attempt = ?",
                    )?
                    .execute((pending, &c.step_id, c.attempt))?;
                }
            }
            Some(Wait::Event { name, after, .. }) => {
                // The event's timeout (`wake_at`) no longer holds the step back.
                conn.prepare_cached(
                    "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
                     WHERE id = ? AND attempt = ? AND EXISTS \
                     (SELECT 1 FROM events WHERE name = ? AND seq > ?)",
                )?
                .execute((&c.step_id, c.attempt, name, after))?;
            }
            Some(Wait::Timer(_)) | None => {}
        }
    }
    Ok(())
}

/// Counts finished steps down in the workflows waiting for them, and makes every workflow whose
/// awaited children have all finished claimable again.
pub(super) fn wake_parents(conn: &Connection, finished: &[&str]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    execute_for_ids(conn, finished, |list| {
        [format!(
            "UPDATE steps SET pending = steps.pending - c.finished FROM \
             (SELECT parent_id, COUNT(*) AS finished FROM steps \
             WHERE id IN ({list}) AND awaited = 1 GROUP BY parent_id) AS c \
             WHERE steps.id = c.parent_id AND steps.wait = 'children'"
        )]
    })?;
    conn.prepare_cached(
        "UPDATE steps SET wait = NULL, pending = 0 WHERE wait = 'children' AND pending <= 0",
    )?
    .execute([])?;
    Ok(())
}

/// See [`crate::store::Store::step_outcomes`].
pub(super) fn step_outcomes(conn: &Connection, ids: &[String]) -> Result<Vec<StepOutcome>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in chunks(ids) {
        let sql = format!(
            "SELECT id, status, wait, output, error, task, digest FROM steps WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(chunk))?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let wait: Option<String> = r.get(2)?;
            let status = match status_of(r.get(1)?)? {
                Status::Queued if wait.is_some() => Status::Waiting,
                status => status,
            };
            let outcome = StepOutcome {
                task: r.get(5)?,
                digest: r.get(6)?,
                status,
                output: opt_json(r.get(3)?)?,
                error: opt_json(r.get(4)?)?,
            };
            found.insert(id, outcome);
        }
    }
    ids.iter()
        .map(|id| {
            found
                .remove(id)
                .with_context(|| format!("step {id} does not exist"))
        })
        .collect()
}

/// See [`crate::store::Store::last_event_seq`].
pub(super) async fn last_event_seq(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(pool)
        .await?
        .try_get(0)?)
}

/// See [`crate::store::Store::next_event`].
pub(super) async fn next_event(
    pool: &SqlitePool,
    name: &str,
    after: i64,
) -> Result<Option<(i64, String)>> {
    sqlx::query("SELECT seq, payload FROM events WHERE name = ? AND seq > ? ORDER BY seq LIMIT 1")
        .bind(name)
        .bind(after)
        .fetch_optional(pool)
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// See [`crate::store::Store::send_event`].
pub(super) fn send_event(
    conn: &Connection,
    name: &str,
    payload: &str,
    now: i64,
) -> Result<(i64, u64)> {
    json_of(payload.to_string()).context("an event payload must be JSON")?;
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO events (name, payload, created_at) VALUES (?, ?, ?) RETURNING seq",
        )?
        .query_row((name, payload, now), |r| r.get(0))?;
    let woken = conn
        .prepare_cached(
            "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
             WHERE wait = 'event' AND wait_event = ?",
        )?
        .execute([name])?;
    Ok((seq, woken as u64))
}

/// See [`crate::store::Store::cancel_run`].
pub(super) fn cancel_run(conn: &Connection, id: &str, now: i64) -> Result<Option<Cancelled>> {
    let error = errors::run_cancelled();
    end_run(conn, id, Status::Cancelled, &error, now)
}

/// Ends an unfinished run with `status` and `error`, cancelling its unfinished steps (their
/// workers interrupt running attempts).
fn end_run(
    conn: &Connection,
    id: &str,
    status: Status,
    error: &serde_json::Value,
    now: i64,
) -> Result<Option<Cancelled>> {
    let current: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(current) = current else {
        return Ok(None);
    };
    if status_of(current)?.is_terminal() {
        return Ok(Some(Cancelled {
            steps: 0,
            changed: false,
        }));
    }
    let unfinished: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM steps WHERE run_id = ? AND status IN ('queued', 'running')",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let error = error.to_string();
    let steps = cancel_steps(conn, &unfinished, now, &error)?;
    conn.prepare_cached("UPDATE runs SET status = ?, completed_at = ?, error = ? WHERE id = ?")?
        .execute((status.as_str(), now, &error, id))?;
    Ok(Some(Cancelled {
        steps,
        changed: true,
    }))
}

/// Cancels the unfinished descendants of steps that just ended (`ended`, none of them queued
/// for a retry): a workflow that ends takes the children it did not join with it, and theirs,
/// so nothing of a finished step runs on. Their workers interrupt running attempts.
pub(super) fn cancel_abandoned(conn: &Connection, ended: &[&str], now: i64) -> Result<()> {
    let mut abandoned: Vec<String> = Vec::new();
    for chunk in chunks(ended) {
        let sql = format!(
            "WITH RECURSIVE abandoned(id) AS ( \
             SELECT id FROM steps WHERE parent_id IN ({}) AND status IN ('queued', 'running') \
             UNION SELECT s.id FROM steps s JOIN abandoned a ON s.parent_id = a.id \
             WHERE s.status IN ('queued', 'running')) SELECT id FROM abandoned",
            placeholders(chunk.len())
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| r.get(0))?;
        for id in rows {
            abandoned.push(id?);
        }
    }
    if abandoned.is_empty() {
        return Ok(());
    }
    let error = errors::abandoned().to_string();
    cancel_steps(conn, &abandoned, now, &error)?;
    Ok(())
}

/// Cancels the steps `ids` that are still queued or running, with their running attempts, and
/// returns how many steps it cancelled.
fn cancel_steps(conn: &Connection, ids: &[String], now: i64, error: &str) -> Result<u64> {
    let mut cancelled = 0;
    for chunk in chunks(ids) {
        let list = placeholders(chunk.len());
        let mut params: Vec<&dyn ToSql> = vec![&now, &error];
        params.extend(chunk.iter().map(|id| id as &dyn ToSql));
        conn.prepare_cached(&format!(
            "UPDATE attempts SET status = 'cancelled', completed_at = ?, error = ? \
             WHERE status = 'running' AND step_id IN ({list})"
        ))?
        .execute(params.as_slice())?;
        cancelled += conn
            .prepare_cached(&format!(
                "UPDATE steps SET status = 'cancelled', completed_at = ?, error = ?, wait = NULL, \
                 wait_event = NULL, lease_expires_at = NULL \
                 WHERE status IN ('queued', 'running') AND id IN ({list})"
            ))?
            .execute(params.as_slice())? as u64;
    }
    Ok(cancelled)
}

/// Enforces schedule-to-start and run timeouts that passed by `now`: a queued step nobody
/// started in time fails (and counts as finished for a waiting workflow); a run past its deadline
/// fails and its unfinished steps are cancelled.
/// (The unary `+` makes SQLite use the deadline indexes, which hold only steps and runs that
/// have a deadline, rather than the status indexes, which hold every queued step or run.)
pub(super) fn expire(conn: &Connection, now: i64) -> Result<()> {
    let error = errors::schedule_to_start_timeout().to_string();
    let late: Vec<(String, Option<String>, String)> = conn
        .prepare_cached(
            "UPDATE steps SET status = 'failed', error = ?1, completed_at = ?2, start_deadline = NULL \
             WHERE +status = 'queued' AND +wait IS NULL AND start_deadline <= ?2 \
             RETURNING id, parent_id, run_id",
        )?
        .query_map((&error, now), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut children = Vec::new();
    for (id, parent, run_id) in &late {
        if parent.is_some() {
            children.push(id.as_str());
        } else {
            conn.prepare_cached(
                "UPDATE runs SET status = 'failed', error = ?, completed_at = ? \
                 WHERE id = ? AND status IN ('queued', 'running')",
            )?
            .execute((&error, now, run_id))?;
        }
    }
    wake_parents(conn, &children)?;
    let overdue: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM runs WHERE deadline <= ? AND +status IN ('queued', 'running')",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in overdue {
        let error = errors::run_timeout();
        end_run(conn, &id, Status::Failed, &error, now)?;
    }
    Ok(())
}

/// See [`crate::store::Store::cancelled_steps`].
pub(super) async fn cancelled_steps(
    pool: &SqlitePool,
    steps: &[(String, u32)],
) -> Result<Vec<(String, u32)>> {
    let mut cancelled = Vec::new();
    for chunk in chunks(steps) {
        let sql = format!(
            "SELECT id, attempt FROM steps WHERE status = 'cancelled' AND id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (id, _) in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(pool).await? {
            let id: String = r.try_get(0)?;
            let attempt = u32_of(r.try_get(1)?)?;
            if chunk.iter().any(|(s, a)| *s == id && *a == attempt) {
                cancelled.push((id, attempt));
            }
        }
    }
    Ok(cancelled)
}

/// See [`crate::store::Store::resume_run`].
pub(super) fn resume_run(
    conn: &Connection,
    id: &str,
    pins: &HashMap<String, (i64, String)>,
) -> Result<Option<u64>> {
    let run: Option<(String, String)> = conn
        .prepare_cached("SELECT status, deployment FROM runs WHERE id = ?")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, deployment)) = run else {
        return Ok(None);
    };
    let status = status_of(status)?;
    anyhow::ensure!(
        matches!(status, Status::Failed | Status::Cancelled),
        "run {id} is {status}: only failed or cancelled runs can be resumed"
    );
    let steps: Vec<(String, u32, i64, String)> = conn
        .prepare_cached(
            "SELECT id, attempt, activations, deployment FROM steps \
             WHERE run_id = ? AND status IN ('failed', 'cancelled') ORDER BY created_at, child_index",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    const RESET: &str = "status = 'queued', wait = NULL, wait_event = NULL, wake_at = NULL, \
                         pending = 0, output = NULL, error = NULL, completed_at = NULL, \
                         lease_expires_at = NULL";
    let mut superseded: HashSet<String> = HashSet::new();
    let mut requeued = 0;
    for (step_id, attempt, activations, step_deployment) in &steps {
        // Children are created after their workflow, so a workflow comes first.
        if superseded.contains(step_id) {
            // And so are its own children.
            let below = conn
                .prepare_cached("SELECT id FROM steps WHERE parent_id = ?")?
                .query_map([step_id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            superseded.extend(below);
            continue;
        }
        requeued += 1;
        if *activations > 0 {
            // A workflow: a new attempt that inherits its journal up to the first join that saw
            // a failure, so the re-queued children are waited for and the rest is reused.
            let (records, _) = resume_journal(conn, step_id)?;
            let entries = records
                .iter()
                .map(Entry::from_record)
                .collect::<Result<Vec<_>>>()?;
            let cut = resume_cut(&entries);
            let kept = &records[..cut];
            // Children started after the cut belong to the abandoned continuation: the resumed
            // workflow starts its own from that position on, so these lose their position (and
            // are not re-run).
            let started = entries[..cut]
                .iter()
                .filter(|e| e.started_child().is_some())
                .count() as u32;
            let dropped = conn
                .prepare_cached(
                    "UPDATE steps SET child_index = NULL WHERE parent_id = ? AND child_index >= ? \
                     RETURNING id",
                )?
                .query_map((step_id, started), |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            superseded.extend(dropped);
            let next = attempt + 1;
            conn.prepare_cached(
                "INSERT INTO attempts (step_id, attempt, status) VALUES (?, ?, 'queued')",
            )?
            .execute((step_id, next))?;
            insert_rows(
                conn,
                "INSERT INTO journal (step_id, attempt, seq, kind, data) VALUES ",
                "(?, ?, ?, ?, ?)",
                kept,
                |r| vec![step_id as &dyn ToSql, &next, &r.seq, &r.kind, &r.data],
            )?;
            conn.prepare_cached(&format!(
                "UPDATE steps SET {RESET}, attempt = ?, activations = 1 WHERE id = ?"
            ))?
            .execute((next, step_id))?;
        } else {
            conn.prepare_cached(&format!("UPDATE steps SET {RESET} WHERE id = ?"))?
                .execute([step_id])?;
        }
        if let Some((version, digest)) = pins.get(step_deployment) {
            conn.prepare_cached("UPDATE steps SET version = ?, digest = ? WHERE id = ?")?
                .execute((version, digest, step_id))?;
        }
    }
    conn.prepare_cached(
        "UPDATE runs SET status = 'queued', output = NULL, error = NULL, completed_at = NULL \
         WHERE id = ?",
    )?
    .execute([id])?;
    if let Some((version, digest)) = pins.get(&deployment) {
        conn.prepare_cached("UPDATE runs SET version = ?, digest = ? WHERE id = ?")?
            .execute((version, digest, id))?;
    }
    Ok(Some(requeued))
}
