//! Reads: runs, steps, attempts, logs, journals, deployments, events and keys.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::rows::{
    deployment_from, log_line_of, opt_json, run_status_is, run_summary_of, run_view_of, status_of,
    step_columns, u32_of, ATTEMPT_COLUMNS, LOG_LINE_COLUMNS, RUN_COLUMNS, RUN_SHOWN_STATUS_R,
    SHOWN_STATUS,
};
use crate::{
    Deployment, KvListing, RunDetail, RunFilter, RunLogLine, RunResult, RunSummary, Status,
    StepOutcome, StepQuery,
};

/// Rows listed by `list_runs` when the filter does not say.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// The columns [`deployment_of`] reads.
pub(super) const DEPLOYMENT_COLUMNS: &str = "name, version, digest, policy, created_at, kind";

/// A deployment from a row of [`DEPLOYMENT_COLUMNS`].
pub(super) fn deployment_of(r: &PgRow) -> Result<Deployment> {
    deployment_from(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        &r.try_get::<String, _>(3)?,
        r.try_get(4)?,
        &r.try_get::<String, _>(5)?,
    )
}

/// See [`crate::Store::list_runs`].
pub(super) async fn list_runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunSummary>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT r.id, r.task, {RUN_SHOWN_STATUS_R}, r.created_at, r.completed_at, \
         (SELECT COALESCE(SUM(s.attempt), 0)::bigint FROM steps s WHERE s.run_id = r.id) \
         FROM runs r WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        q.push(" AND ").push(run_status_is(status));
    }
    if let Some(task) = &filter.task {
        // An exact task name, or a deployment name (optionally with its trailing `/`). A task
        // name always contains a `/`, so a filter without one can only be a deployment.
        let deployment = task.strip_suffix('/').unwrap_or(task);
        if deployment.contains('/') {
            q.push(" AND (r.task = ")
                .push_bind(task.as_str())
                .push(" OR r.deployment = ")
                .push_bind(deployment)
                .push(")");
        } else {
            q.push(" AND r.deployment = ").push_bind(deployment);
        }
    }
    if let Some(since) = filter.since {
        q.push(" AND r.created_at >= ").push_bind(since);
    }
    for (k, v) in &filter.meta {
        q.push(" AND EXISTS (SELECT 1 FROM run_meta m WHERE m.run_id = r.id AND m.key = ")
            .push_bind(k.as_str())
            .push(" AND m.value = ")
            .push_bind(v.as_str())
            .push(")");
    }
    let limit = if filter.limit == 0 {
        DEFAULT_LIST_LIMIT
    } else {
        filter.limit
    };
    q.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    let rows = q
        .build()
        .fetch_all(pool)
        .await
        .context("cannot list runs")?;
    rows.iter().map(run_summary_of).collect()
}

/// See [`crate::Store::run_view`]: every query in one read-only transaction, so they all see
/// one snapshot.
pub(super) async fn run_view(
    pool: &PgPool,
    id: &str,
    query: &StepQuery,
) -> Result<Option<RunDetail>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let Some(run) = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let meta = sqlx::query("SELECT key, value FROM run_meta WHERE run_id = $1 ORDER BY key")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let counts = sqlx::query(&format!(
        "SELECT {SHOWN_STATUS}, COUNT(*) FROM steps WHERE run_id = $1 GROUP BY 1"
    ))
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let limit = (query.limit != 0).then(|| i64::from(query.limit));
    // The root step (no parent) first, then the others in creation order.
    let columns = step_columns(SHOWN_STATUS);
    let steps = sqlx::query(&format!(
        "SELECT {columns} FROM steps \
         WHERE run_id = $1 AND ($2::text IS NULL OR {SHOWN_STATUS} = $2) \
         ORDER BY parent_id IS NOT NULL, created_at, child_index NULLS FIRST, id LIMIT $3"
    ))
    .bind(id)
    .bind(query.status.map(Status::as_str))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<String> = steps
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let attempts = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.step_id = ANY($1) \
         ORDER BY a.step_id, a.attempt"
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await.ok();
    Ok(Some(run_view_of(&run, &meta, &counts, &steps, &attempts)?))
}

/// See [`crate::Store::run_result`].
pub(super) async fn run_result(pool: &PgPool, id: &str) -> Result<Option<RunResult>> {
    let Some(r) = sqlx::query(&format!(
        "SELECT r.id, r.task, {RUN_SHOWN_STATUS_R}, r.output, r.error, r.created_at, \
         r.completed_at, \
         (SELECT COALESCE(SUM(attempt), 0)::bigint FROM steps WHERE run_id = r.id), \
         s.assigned_at, s.started_at, s.completed_at \
         FROM runs r LEFT JOIN steps s ON s.id = \
         (SELECT id FROM steps WHERE run_id = r.id ORDER BY created_at, id LIMIT 1) \
         WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let created_at: i64 = r.try_get(5)?;
    let assigned_at: Option<i64> = r.try_get(8)?;
    let started_at: Option<i64> = r.try_get(9)?;
    let step_completed_at: Option<i64> = r.try_get(10)?;
    Ok(Some(RunResult {
        id: r.try_get(0)?,
        task: r.try_get(1)?,
        status: status_of(r.try_get(2)?)?,
        output: opt_json(r.try_get(3)?)?,
        error: opt_json(r.try_get(4)?)?,
        created_at,
        completed_at: r.try_get(6)?,
        attempts: u32_of(r.try_get(7)?)?,
        queue_us: crate::span(Some(created_at), assigned_at),
        execution_us: crate::span(started_at, step_completed_at),
    }))
}

/// See [`crate::Store::run_logs`].
pub(super) async fn run_logs(pool: &PgPool, id: &str) -> Result<Vec<RunLogLine>> {
    sqlx::query(&format!(
        "SELECT {LOG_LINE_COLUMNS} FROM logs l JOIN steps s ON s.id = l.step_id WHERE s.run_id = $1 \
         ORDER BY s.created_at, l.step_id, l.attempt, l.seq"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(log_line_of)
    .collect()
}

/// See [`crate::Store::step_outcomes`].
pub(super) async fn step_outcomes(pool: &PgPool, ids: &[String]) -> Result<Vec<StepOutcome>> {
    let mut found = HashMap::with_capacity(ids.len());
    for r in sqlx::query(
        "SELECT id, status, wait, output, error, task, digest FROM steps WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?
    {
        let id: String = r.try_get(0)?;
        let wait: Option<String> = r.try_get(2)?;
        let status = match status_of(r.try_get(1)?)? {
            Status::Queued if wait.is_some() => Status::Waiting,
            status => status,
        };
        found.insert(
            id,
            StepOutcome {
                task: r.try_get(5)?,
                digest: r.try_get(6)?,
                status,
                output: opt_json(r.try_get(3)?)?,
                error: opt_json(r.try_get(4)?)?,
            },
        );
    }
    ids.iter()
        .map(|id| {
            found
                .remove(id)
                .with_context(|| format!("step {id} does not exist"))
        })
        .collect()
}

/// See [`crate::Store::cancelled_steps`].
pub(super) async fn cancelled_steps(
    pool: &PgPool,
    steps: &[(String, u32)],
) -> Result<Vec<(String, u32)>> {
    let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
    let attempts: Vec<i64> = steps.iter().map(|(_, a)| i64::from(*a)).collect();
    sqlx::query(
        "SELECT s.id, s.attempt FROM steps s \
         JOIN UNNEST($1::text[], $2::bigint[]) AS v(id, attempt) \
         ON s.id = v.id AND s.attempt = v.attempt WHERE s.status = 'cancelled'",
    )
    .bind(&ids)
    .bind(&attempts)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, u32_of(r.try_get(1)?)?)))
    .collect()
}

/// See [`crate::Store::kv_list`]: one statement, one snapshot; the window aggregates cover
/// every key of the prefix, before the limit.
pub(super) async fn kv_list(
    pool: &PgPool,
    scope: &str,
    prefix: &str,
    limit: u32,
) -> Result<KvListing> {
    let mut listing = KvListing::default();
    for row in sqlx::query(
        "SELECT key, COUNT(*) OVER (), MAX(version) OVER () FROM kv \
         WHERE scope = $1 AND key >= $2 AND starts_with(key, $2) ORDER BY key LIMIT $3",
    )
    .bind(scope)
    .bind(prefix)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    {
        listing.keys.push(row.try_get(0)?);
        listing.count = row.try_get(1)?;
        listing.max_version = row.try_get(2)?;
    }
    Ok(listing)
}
