//! The SQLite side of workflows: resuming journals, child steps, waits and wake-ups, events and
//! cancellation. Every function runs inside the caller's transaction unless it says otherwise.

use anyhow::{Context as _, Result};
use serde_json::json;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    chunks, execute_for_ids, insert_rows, json_of, opt_json, placeholders, status_of, u32_of,
};
use std::collections::HashMap;

use crate::journal::{resume_cut, Entry};
use crate::store::{
    now_micros, Cancelled, Completion, JournalRecord, NewChild, Status, StepOutcome, Wait,
};

/// The journal a resuming workflow continues: that of the newest attempt of `step_id` that has
/// one (the current attempt after a wait; the crashed one when this claim is a new attempt).
pub(super) async fn resume_journal(
    conn: &mut SqliteConnection,
    step_id: &str,
) -> Result<(Vec<JournalRecord>, u32)> {
    let rows = sqlx::query(
        "SELECT attempt, seq, kind, data FROM journal WHERE step_id = ? AND attempt = \
         (SELECT MAX(attempt) FROM journal WHERE step_id = ?) ORDER BY seq",
    )
    .bind(step_id)
    .bind(step_id)
    .fetch_all(&mut *conn)
    .await?;
    let attempt = match rows.first() {
        Some(r) => u32_of(r.try_get(0)?)?,
        None => 0,
    };
    let records = rows
        .iter()
        .map(|r| {
            Ok(JournalRecord {
                seq: u32_of(r.try_get(1)?)?,
                kind: r.try_get(2)?,
                data: r.try_get(3)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((records, attempt))
}

/// How a completion leaves its step: `(status, wait, wait_event, wake_at)` as stored.
pub(super) fn step_state(
    c: &Completion,
) -> (
    &'static str,
    Option<&'static str>,
    Option<&str>,
    Option<i64>,
) {
    match (&c.wait, c.retry_at) {
        (Some(Wait::Children(_) | Wait::AnyChild(_)), _) => {
            ("queued", Some("children"), None, None)
        }
        (Some(Wait::Timer(until)), _) => ("queued", Some("timer"), None, Some(*until)),
        (Some(Wait::Event { name, deadline, .. }), _) => {
            ("queued", Some("event"), Some(name.as_str()), *deadline)
        }
        (None, Some(at)) => ("queued", None, None, Some(at)),
        (None, None) => (c.status.as_str(), None, None, None),
    }
}

/// Creates the children started by committed activations, queued.
pub(super) async fn insert_children(
    conn: &mut SqliteConnection,
    committed: &[&Completion],
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
    let now = now_micros();
    insert_rows(
        conn,
        "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
         attempt, created_at, parent_id, child_index, policy, start_deadline) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)",
        &rows,
        |q, (c, child, input, policy)| {
            q.bind(&child.step_id)
                .bind(&c.run_id)
                .bind(&child.task)
                .bind(&child.deployment)
                .bind(child.version)
                .bind(&child.digest)
                .bind(input.as_str())
                .bind(now)
                .bind(&c.step_id)
                .bind(i64::from(child.index))
                .bind(policy.as_deref())
                .bind(child.start_deadline)
        },
    )
    .await
}

/// Settles the waits of committed suspensions: children that finished in the meantime and events
/// already sent count at once, so a wait that is already over leaves the step claimable.
pub(super) async fn settle_waits(
    conn: &mut SqliteConnection,
    committed: &[&Completion],
) -> Result<()> {
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
                    let mut mark = sqlx::query(&sql);
                    for id in chunk {
                        mark = mark.bind(id);
                    }
                    pending += mark.fetch_all(&mut *conn).await?.len() as i64;
                }
                if matches!(wait, Wait::AnyChild(_)) && pending > 0 {
                    // One finished child is enough, unless one already has.
                    pending = if pending < ids.len() as i64 { 0 } else { 1 };
                }
                let sql = if pending == 0 {
                    "UPDATE steps SET wait = NULL, pending = 0 WHERE id = ? AND attempt = ?"
                } else {
                    "UPDATE steps SET pending = ? WHERE id = ? AND attempt = ?"
                };
                let mut q = sqlx::query(sql);
                if pending > 0 {
                    q = q.bind(pending);
                }
                q.bind(&c.step_id)
                    .bind(i64::from(c.attempt))
                    .execute(&mut *conn)
                    .await?;
            }
            Some(Wait::Event { name, after, .. }) => {
                sqlx::query(
                    "UPDATE steps SET wait = NULL, wait_event = NULL \
                     WHERE id = ? AND attempt = ? AND EXISTS \
                     (SELECT 1 FROM events WHERE name = ? AND seq > ?)",
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
pub(super) async fn wake_parents(conn: &mut SqliteConnection, finished: &[&str]) -> Result<()> {
    execute_for_ids(conn, finished, |list| {
        [format!(
            "UPDATE steps SET pending = steps.pending - c.finished FROM \
             (SELECT parent_id, COUNT(*) AS finished FROM steps \
             WHERE id IN ({list}) AND awaited = 1 GROUP BY parent_id) AS c \
             WHERE steps.id = c.parent_id AND steps.wait = 'children'"
        )]
    })
    .await?;
    sqlx::query(
        "UPDATE steps SET wait = NULL, pending = 0 WHERE wait = 'children' AND pending <= 0",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// See [`crate::store::Store::step_outcomes`].
pub(super) async fn step_outcomes(pool: &SqlitePool, ids: &[String]) -> Result<Vec<StepOutcome>> {
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    for chunk in chunks(ids) {
        let sql = format!(
            "SELECT id, status, wait, output, error, task, digest FROM steps WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(pool).await? {
            let id: String = r.try_get(0)?;
            let wait: Option<String> = r.try_get(2)?;
            let status = match status_of(r.try_get(1)?)? {
                Status::Queued if wait.is_some() => Status::Waiting,
                status => status,
            };
            let outcome = StepOutcome {
                task: r.try_get(5)?,
                digest: r.try_get(6)?,
                status,
                output: opt_json(r.try_get(3)?)?,
                error: opt_json(r.try_get(4)?)?,
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
pub(super) async fn send_event(
    conn: &mut SqliteConnection,
    name: &str,
    payload: &str,
) -> Result<(i64, u64)> {
    json_of(payload.to_string()).context("an event payload must be JSON")?;
    let seq: i64 = sqlx::query(
        "INSERT INTO events (name, payload, created_at) VALUES (?, ?, ?) RETURNING seq",
    )
    .bind(name)
    .bind(payload)
    .bind(now_micros())
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let woken = sqlx::query(
        "UPDATE steps SET wait = NULL, wait_event = NULL WHERE wait = 'event' AND wait_event = ?",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((seq, woken))
}

/// See [`crate::store::Store::cancel_run`].
pub(super) async fn cancel_run(conn: &mut SqliteConnection, id: &str) -> Result<Option<Cancelled>> {
    let error = json!({
        "kind": "cancelled",
        "message": "the run was cancelled",
    });
    end_run(conn, id, Status::Cancelled, &error).await
}

/// Ends an unfinished run with `status` and `error`, cancelling its unfinished steps (their
/// workers interrupt running attempts).
async fn end_run(
    conn: &mut SqliteConnection,
    id: &str,
    status: Status,
    error: &serde_json::Value,
) -> Result<Option<Cancelled>> {
    let Some(row) = sqlx::query("SELECT status FROM runs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    if status_of(row.try_get(0)?)?.is_terminal() {
        return Ok(Some(Cancelled {
            steps: 0,
            changed: false,
        }));
    }
    let now = now_micros();
    let error = error.to_string();
    sqlx::query(
        "UPDATE attempts SET status = 'cancelled', completed_at = ?, error = ? \
         WHERE status = 'running' AND step_id IN (SELECT id FROM steps WHERE run_id = ? \
         AND status IN ('queued', 'running'))",
    )
    .bind(now)
    .bind(&error)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let steps = sqlx::query(
        "UPDATE steps SET status = 'cancelled', completed_at = ?, error = ?, wait = NULL, \
         wait_event = NULL, lease_expires_at = NULL \
         WHERE run_id = ? AND status IN ('queued', 'running')",
    )
    .bind(now)
    .bind(&error)
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("UPDATE runs SET status = ?, completed_at = ?, error = ? WHERE id = ?")
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

/// Enforces schedule-to-start and run timeouts that passed by `now`: a queued step nobody
/// started in time fails (and counts as finished for a waiting workflow); a run past its deadline
/// fails and its unfinished steps are cancelled.
pub(super) async fn expire(conn: &mut SqliteConnection, now: i64) -> Result<()> {
    let error = json!({
        "kind": "schedule_to_start_timeout",
        "message": "no worker started the step before its schedule-to-start deadline",
    })
    .to_string();
    let late = sqlx::query(
        "UPDATE steps SET status = 'failed', error = ?, completed_at = ?, start_deadline = NULL \
         WHERE status = 'queued' AND wait IS NULL AND start_deadline <= ? \
         RETURNING id, parent_id, run_id",
    )
    .bind(&error)
    .bind(now)
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
                "UPDATE runs SET status = 'failed', error = ?, completed_at = ? \
                 WHERE id = ? AND status IN ('queued', 'running')",
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
    let overdue: Vec<String> =
        sqlx::query("SELECT id FROM runs WHERE deadline <= ? AND status IN ('queued', 'running')")
            .bind(now)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    for id in overdue {
        let error = json!({
            "kind": "run_timeout",
            "message": "the run did not finish before its deadline (the deployment's run timeout)",
        });
        end_run(conn, &id, Status::Failed, &error).await?;
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
pub(super) async fn resume_run(
    conn: &mut SqliteConnection,
    id: &str,
    pins: &HashMap<String, (i64, String)>,
) -> Result<Option<u64>> {
    let Some(run) = sqlx::query("SELECT status, deployment FROM runs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let status = status_of(run.try_get(0)?)?;
    anyhow::ensure!(
        matches!(status, Status::Failed | Status::Cancelled),
        "run {id} is {status}: only failed or cancelled runs can be resumed"
    );
    let deployment: String = run.try_get(1)?;
    let steps = sqlx::query(
        "SELECT id, attempt, activations, deployment FROM steps \
         WHERE run_id = ? AND status IN ('failed', 'cancelled') ORDER BY created_at, child_index",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    const RESET: &str = "status = 'queued', wait = NULL, wait_event = NULL, wake_at = NULL, \
                         pending = 0, output = NULL, error = NULL, completed_at = NULL, \
                         lease_expires_at = NULL";
    for step in &steps {
        let step_id: String = step.try_get(0)?;
        let attempt = u32_of(step.try_get(1)?)?;
        let activations: i64 = step.try_get(2)?;
        let pin = pins.get(&step.try_get::<String, _>(3)?);
        if activations > 0 {
            // A workflow: a new attempt that inherits its journal up to the first join that saw
            // a failure, so the re-queued children are waited for and the rest is reused.
            let (records, _) = resume_journal(conn, &step_id).await?;
            let entries = records
                .iter()
                .map(Entry::from_record)
                .collect::<Result<Vec<_>>>()?;
            let kept: Vec<(&str, &JournalRecord)> = records[..resume_cut(&entries)]
                .iter()
                .map(|r| (step_id.as_str(), r))
                .collect();
            let next = i64::from(attempt) + 1;
            sqlx::query("INSERT INTO attempts (step_id, attempt, status) VALUES (?, ?, 'queued')")
                .bind(&step_id)
                .bind(next)
                .execute(&mut *conn)
                .await?;
            insert_rows(
                conn,
                "INSERT INTO journal (step_id, attempt, seq, kind, data) VALUES ",
                "(?, ?, ?, ?, ?)",
                &kept,
                |q, (step_id, r)| {
                    q.bind(*step_id)
                        .bind(next)
                        .bind(i64::from(r.seq))
                        .bind(&r.kind)
                        .bind(&r.data)
                },
            )
            .await?;
            sqlx::query(&format!(
                "UPDATE steps SET {RESET}, attempt = ?, activations = 1 WHERE id = ?"
            ))
            .bind(next)
            .bind(&step_id)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query(&format!("UPDATE steps SET {RESET} WHERE id = ?"))
                .bind(&step_id)
                .execute(&mut *conn)
                .await?;
        }
        if let Some((version, digest)) = pin {
            sqlx::query("UPDATE steps SET version = ?, digest = ? WHERE id = ?")
                .bind(version)
                .bind(digest)
                .bind(&step_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    sqlx::query(
        "UPDATE runs SET status = 'queued', output = NULL, error = NULL, completed_at = NULL \
         WHERE id = ?",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if let Some((version, digest)) = pins.get(&deployment) {
        sqlx::query("UPDATE runs SET version = ?, digest = ? WHERE id = ?")
            .bind(version)
            .bind(digest)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(steps.len() as u64))
}
