//! Workflows on PostgreSQL: resuming journals, child steps, waits and wake-ups, events,
//! deadlines and cancellation, inside the caller's transaction.

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result};
use sqlx::{PgConnection, Row};

use crate::decide::{errors, waits};
use crate::rows::{json_of, status_of};
use crate::{Cancelled, Completion, JournalRecord, Micros, Status, Wait};
use hypergraph_core::journal::{resume_cut, Entry};

/// The advisory-lock namespace of event names (see the module docs of `postgres`).
const EVENT_LOCK: i32 = 1;

/// Takes the transaction-scoped advisory lock of event `name`: sending an event and committing a
/// wait for one are serialized per name, so a wait never misses an event sent at the same time.
async fn lock_event(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(EVENT_LOCK)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The journal a resuming workflow continues: that of the newest attempt of `step_id` that has
/// one (the current attempt after a wait; the crashed one when this claim is a new attempt).
pub(super) async fn resume_journal(
    conn: &mut PgConnection,
    step_id: &str,
) -> Result<(Vec<JournalRecord>, u32)> {
    let rows = sqlx::query(
        "SELECT attempt, seq, kind, data FROM journal WHERE step_id = $1 AND attempt = \
         (SELECT MAX(attempt) FROM journal WHERE step_id = $1) ORDER BY seq",
    )
    .bind(step_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut attempt = 0;
    let mut records = Vec::with_capacity(rows.len());
    for r in &rows {
        attempt = crate::rows::u32_of(r.try_get(0)?)?;
        records.push(JournalRecord {
            seq: crate::rows::u32_of(r.try_get(1)?)?,
            kind: r.try_get(2)?,
            data: r.try_get(3)?,
        });
    }
    Ok((records, attempt))
}

/// Creates the children started by committed activations, queued.
pub(super) async fn insert_children(
    conn: &mut PgConnection,
    committed: &[&Completion],
    now: Micros,
) -> Result<()> {
    let mut id = Vec::new();
    let mut run_id = Vec::new();
    let mut task = Vec::new();
    let mut deployment = Vec::new();
    let mut version = Vec::new();
    let mut digest = Vec::new();
    let mut input = Vec::new();
    let mut parent = Vec::new();
    let mut index = Vec::new();
    let mut policy = Vec::new();
    let mut deadline = Vec::new();
    let mut name = Vec::new();
    for c in committed {
        for child in &c.children {
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
         attempt, created_at, parent_id, child_index, policy, start_deadline, name) \
         SELECT id, run_id, task, deployment, version, digest, input, 'queued', 0, $13, \
         parent_id, child_index, policy, start_deadline, name \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
         $7::text[], $8::text[], $9::bigint[], $10::text[], $11::bigint[], $12::text[]) \
         AS v(id, run_id, task, deployment, version, digest, input, parent_id, child_index, \
         policy, start_deadline, name)",
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Settles the waits of committed suspensions: children that finished in the meantime and events
/// already sent count at once, so a wait that is already over leaves the step claimable.
pub(super) async fn settle_waits(conn: &mut PgConnection, committed: &[&Completion]) -> Result<()> {
    for c in committed {
        match &c.wait {
            Some(wait @ (Wait::Children(ids) | Wait::AnyChild(ids))) => {
                // Marking a child awaited locks its row: a child finishing concurrently either
                // committed before (it is not counted) or sees the mark (it counts down).
                let unfinished = sqlx::query(
                    "UPDATE steps SET awaited = 1 WHERE id = ANY($1) \
                     AND status NOT IN ('succeeded', 'failed', 'cancelled') RETURNING id",
                )
                .bind(ids)
                .fetch_all(&mut *conn)
                .await?
                .len() as i64;
                let pending = waits::pending_children(wait, unfinished);
                sqlx::query(
                    "UPDATE steps SET pending = $1, wait = CASE WHEN $1 = 0 THEN NULL ELSE wait END \
                     WHERE id = $2 AND attempt = $3",
                )
                .bind(pending)
                .bind(&c.step_id)
                .bind(i64::from(c.attempt))
                .execute(&mut *conn)
                .await?;
            }
            Some(Wait::Event { name, after, .. }) => {
                lock_event(conn, name).await?;
                // The event's timeout (`wake_at`) no longer holds the step back.
                sqlx::query(
                    "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
                     WHERE id = $1 AND attempt = $2 AND EXISTS \
                     (SELECT 1 FROM events WHERE name = $3 AND seq > $4)",
                )
                .bind(&c.step_id)
                .bind(i64::from(c.attempt))
                .bind(name)
                .bind(after)
                .execute(&mut *conn)
                .await?;
            }
            Some(Wait::Timer(_)) | None => {}
        }
    }
    Ok(())
}

/// Counts finished steps down in the workflows waiting for them, and makes every workflow whose
/// awaited children have all finished claimable again.
pub(super) async fn wake_parents(conn: &mut PgConnection, finished: &[&str]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE steps SET pending = GREATEST(steps.pending - c.finished, 0), \
         wait = CASE WHEN steps.pending - c.finished <= 0 THEN NULL ELSE steps.wait END \
         FROM (SELECT parent_id, COUNT(*) AS finished FROM steps \
         WHERE id = ANY($1) AND awaited = 1 GROUP BY parent_id) AS c \
         WHERE steps.id = c.parent_id AND steps.wait = 'children'",
    )
    .bind(finished)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// See [`crate::Store::send_event`].
pub(super) async fn send_event(
    conn: &mut PgConnection,
    name: &str,
    payload: &str,
    now: Micros,
) -> Result<(i64, u64)> {
    json_of(payload.to_string()).context("an event payload must be JSON")?;
    lock_event(conn, name).await?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (name, payload, created_at) VALUES ($1, $2, $3) RETURNING seq",
    )
    .bind(name)
    .bind(payload)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let woken = sqlx::query(
        "UPDATE steps SET wait = NULL, wait_event = NULL, wake_at = NULL \
         WHERE wait = 'event' AND wait_event = $1",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((seq, woken))
}

/// See [`crate::Store::cancel_run`].
pub(super) async fn cancel_run(
    conn: &mut PgConnection,
    id: &str,
    now: Micros,
) -> Result<Option<Cancelled>> {
    end_run(conn, id, Status::Cancelled, &errors::run_cancelled(), now).await
}

/// Ends an unfinished run with `status` and `error`, cancelling its unfinished steps (their
/// workers interrupt running attempts).
async fn end_run(
    conn: &mut PgConnection,
    id: &str,
    status: Status,
    error: &serde_json::Value,
    now: Micros,
) -> Result<Option<Cancelled>> {
    let current: Option<String> =
        sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(current) = current else {
        return Ok(None);
    };
    if status_of(current)?.is_terminal() {
        return Ok(Some(Cancelled {
            steps: 0,
            changed: false,
        }));
    }
    let unfinished: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM steps WHERE run_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let error = error.to_string();
    let steps = cancel_steps(conn, &unfinished, now, &error).await?;
    sqlx::query("UPDATE runs SET status = $1, completed_at = $2, error = $3 WHERE id = $4")
        .bind(status.as_str())
        .bind(now)
        .bind(&error)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(Cancelled {
        steps,
        changed: true,
    }))
}

/// Cancels the unfinished descendants of steps that just ended (`ended`, none of them queued
/// for a retry): a workflow that ends takes the children it did not join with it, and theirs.
pub(super) async fn cancel_abandoned(
    conn: &mut PgConnection,
    ended: &[&str],
    now: Micros,
) -> Result<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let abandoned: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE abandoned(id) AS ( \
         SELECT id FROM steps WHERE parent_id = ANY($1) AND status IN ('queued', 'running') \
         UNION SELECT s.id FROM steps s JOIN abandoned a ON s.parent_id = a.id \
         WHERE s.status IN ('queued', 'running')) SELECT id FROM abandoned",
    )
    .bind(ended)
    .fetch_all(&mut *conn)
    .await?;
    if abandoned.is_empty() {
        return Ok(());
    }
    cancel_steps(conn, &abandoned, now, &errors::abandoned().to_string()).await?;
    Ok(())
}

/// Cancels the steps `ids` that are still queued or running, with their running attempts, and
/// returns how many steps it cancelled.
async fn cancel_steps(
    conn: &mut PgConnection,
    ids: &[String],
    now: Micros,
    error: &str,
) -> Result<u64> {
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
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "UPDATE steps SET status = 'cancelled', completed_at = $1, error = $2, wait = NULL, \
         wait_event = NULL, lease_expires_at = NULL \
         WHERE status IN ('queued', 'running') AND id = ANY($3)",
    )
    .bind(now)
    .bind(error)
    .bind(ids)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Enforces schedule-to-start and run timeouts that passed by `now`: a queued step nobody
/// started in time fails (and counts as finished for a waiting workflow); a run past its
/// deadline fails and its unfinished steps are cancelled. Rows another transaction holds are
/// left for the next sweep.
pub(super) async fn expire(conn: &mut PgConnection, now: Micros) -> Result<()> {
    let error = errors::schedule_to_start_timeout().to_string();
    let late = sqlx::query(
        "UPDATE steps SET status = 'failed', error = $1, completed_at = $2, start_deadline = NULL \
         WHERE id IN (SELECT id FROM steps WHERE start_deadline <= $2 AND status = 'queued' \
         AND wait IS NULL FOR UPDATE SKIP LOCKED) RETURNING id, parent_id, run_id",
    )
    .bind(&error)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut children = Vec::new();
    for r in &late {
        let id: String = r.try_get(0)?;
        let parent: Option<String> = r.try_get(1)?;
        if parent.is_some() {
            children.push(id);
        } else {
            sqlx::query(
                "UPDATE runs SET status = 'failed', error = $1, completed_at = $2 \
                 WHERE id = $3 AND status IN ('queued', 'running')",
            )
            .bind(&error)
            .bind(now)
            .bind(r.try_get::<String, _>(2)?)
            .execute(&mut *conn)
            .await?;
        }
    }
    let children: Vec<&str> = children.iter().map(String::as_str).collect();
    wake_parents(conn, &children).await?;
    let overdue: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE deadline <= $1 AND status IN ('queued', 'running') \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for id in overdue {
        end_run(conn, &id, Status::Failed, &errors::run_timeout(), now).await?;
    }
    Ok(())
}

/// See [`crate::Store::resume_run`].
pub(super) async fn resume_run(
    conn: &mut PgConnection,
    id: &str,
    pins: &HashMap<String, (i64, String)>,
) -> Result<Option<u64>> {
    let run = sqlx::query("SELECT status, deployment FROM runs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(run) = run else {
        return Ok(None);
    };
    let status = status_of(run.try_get(0)?)?;
    let deployment: String = run.try_get(1)?;
    anyhow::ensure!(
        matches!(status, Status::Failed | Status::Cancelled),
        "run {id} is {status}: only failed or cancelled runs can be resumed"
    );
    let steps = sqlx::query(
        "SELECT id, attempt, activations, deployment FROM steps \
         WHERE run_id = $1 AND status IN ('failed', 'cancelled') \
         ORDER BY created_at, child_index NULLS FIRST",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    const RESET: &str = "status = 'queued', wait = NULL, wait_event = NULL, wake_at = NULL, \
                         pending = 0, output = NULL, error = NULL, completed_at = NULL, \
                         lease_expires_at = NULL";
    let mut superseded: HashSet<String> = HashSet::new();
    let mut requeued = 0;
    for row in &steps {
        let step_id: String = row.try_get(0)?;
        let attempt: i64 = row.try_get(1)?;
        let activations: i64 = row.try_get(2)?;
        let step_deployment: String = row.try_get(3)?;
        // Children are created after their workflow, so a workflow comes first.
        if superseded.contains(&step_id) {
            // And so are its own children.
            let below: Vec<String> =
                sqlx::query_scalar("SELECT id FROM steps WHERE parent_id = $1")
                    .bind(&step_id)
                    .fetch_all(&mut *conn)
                    .await?;
            superseded.extend(below);
            continue;
        }
        requeued += 1;
        if activations > 0 {
            // A workflow: a new attempt that inherits its journal up to the first join that
            // saw a failure, so the re-queued children are waited for and the rest is reused.
            let (records, _) = resume_journal(conn, &step_id).await?;
            let entries = records
                .iter()
                .map(Entry::from_record)
                .collect::<Result<Vec<_>>>()?;
            let cut = resume_cut(&entries);
            let kept = &records[..cut];
            // Children started after the cut belong to the abandoned continuation.
            let started = entries[..cut]
                .iter()
                .filter(|e| e.started_child().is_some())
                .count() as i64;
            let dropped: Vec<String> = sqlx::query_scalar(
                "UPDATE steps SET child_index = NULL WHERE parent_id = $1 AND child_index >= $2 \
                 RETURNING id",
            )
            .bind(&step_id)
            .bind(started)
            .fetch_all(&mut *conn)
            .await?;
            superseded.extend(dropped);
            let next = attempt + 1;
            sqlx::query(
                "INSERT INTO attempts (step_id, attempt, status) VALUES ($1, $2, 'queued')",
            )
            .bind(&step_id)
            .bind(next)
            .execute(&mut *conn)
            .await?;
            let seq: Vec<i64> = kept.iter().map(|r| i64::from(r.seq)).collect();
            let kind: Vec<&str> = kept.iter().map(|r| r.kind.as_str()).collect();
            let data: Vec<&str> = kept.iter().map(|r| r.data.as_str()).collect();
            sqlx::query(
                "INSERT INTO journal (step_id, attempt, seq, kind, data) \
                 SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::text[], $5::text[])",
            )
            .bind(&step_id)
            .bind(next)
            .bind(&seq)
            .bind(&kind)
            .bind(&data)
            .execute(&mut *conn)
            .await?;
            sqlx::query(&format!(
                "UPDATE steps SET {RESET}, attempt = $1, activations = 1 WHERE id = $2"
            ))
            .bind(next)
            .bind(&step_id)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query(&format!("UPDATE steps SET {RESET} WHERE id = $1"))
                .bind(&step_id)
                .execute(&mut *conn)
                .await?;
        }
        if let Some((version, digest)) = pins.get(&step_deployment) {
            sqlx::query("UPDATE steps SET version = $1, digest = $2 WHERE id = $3")
                .bind(version)
                .bind(digest)
                .bind(&step_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    sqlx::query(
        "UPDATE runs SET status = 'queued', output = NULL, error = NULL, completed_at = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if let Some((version, digest)) = pins.get(&deployment) {
        sqlx::query("UPDATE runs SET version = $1, digest = $2 WHERE id = $3")
            .bind(version)
            .bind(digest)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(requeued))
}
