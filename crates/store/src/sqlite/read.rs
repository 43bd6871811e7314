//! The read queries of [`Store`]: on the sqlx reader pool, or (the point reads on the hot path
//! of workers and workflows) on a synchronous read connection ([`SqliteStore::read`]). In WAL
//! mode they see the last committed state and never block the writer.

use super::*;
use crate::rows::{
    journal_record_of, log_line_of, run_status_is, run_summary_of, run_view_of, step_columns,
    ATTEMPT_COLUMNS, LOG_LINE_COLUMNS, RUN_COLUMNS, RUN_SHOWN_STATUS, RUN_SHOWN_STATUS_R,
    SHOWN_STATUS,
};

/// Rows listed by [`Store::list_runs`] when the filter does not say.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// See [`Store::component`].
pub(super) async fn component(store: &SqliteStore, digest: &str) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT bytes FROM components WHERE digest = ?")
        .bind(digest)
        .fetch_optional(&store.reader)
        .await
        .with_context(|| format!("cannot read component {digest}"))?;
    row.map(|r| r.try_get::<Vec<u8>, _>(0))
        .transpose()
        .map_err(Into::into)
}

/// See [`Store::latest_deployment`] (a point read).
pub(super) async fn latest_deployment(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<Deployment>> {
    store.read(
        || format!("cannot read deployment `{name}`"),
        |conn| sql::latest_deployment(conn, name),
    )
}

/// See [`Store::deployment_version`].
pub(super) async fn deployment_version(
    store: &SqliteStore,
    name: &str,
    version: i64,
) -> Result<Option<Deployment>> {
    sqlx::query(
        "SELECT name, version, digest, policy, created_at, kind FROM deployments \
         WHERE name = ? AND version = ?",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(&store.reader)
    .await
    .with_context(|| format!("cannot read deployment `{name}` version {version}"))?
    .map(|r| deployment_of(&r))
    .transpose()
}

/// See [`Store::deployments`].
pub(super) async fn deployments(store: &SqliteStore) -> Result<Vec<Deployment>> {
    sqlx::query(
        "SELECT d.name, d.version, d.digest, d.policy, d.created_at, d.kind FROM deployments d \
         WHERE d.version = (SELECT MAX(l.version) FROM deployments l WHERE l.name = d.name) \
         ORDER BY d.name",
    )
    .fetch_all(&store.reader)
    .await
    .context("cannot list deployments")?
    .iter()
    .map(deployment_of)
    .collect()
}

/// See [`Store::list_runs`].
pub(super) async fn list_runs(store: &SqliteStore, filter: &RunFilter) -> Result<Vec<RunSummary>> {
    enum Arg<'a> {
        Text(&'a str),
        Int(i64),
    }
    let mut sql = format!(
        "SELECT r.id, r.task, {RUN_SHOWN_STATUS_R}, r.created_at, r.completed_at, \
         (SELECT COALESCE(SUM(s.attempt), 0) FROM steps s WHERE s.run_id = r.id) \
         FROM runs r WHERE 1 = 1"
    );
    let mut args = Vec::new();
    if let Some(status) = filter.status {
        sql.push_str(" AND ");
        sql.push_str(run_status_is(status));
    }
    if let Some(task) = &filter.task {
        // An exact task name, or a deployment name (optionally with its trailing `/`). A task
        // name always contains a `/`, so a filter without one can only be a deployment.
        let deployment = task.strip_suffix('/').unwrap_or(task);
        if deployment.contains('/') {
            sql.push_str(" AND (r.task = ? OR r.deployment = ?)");
            args.push(Arg::Text(task));
        } else {
            sql.push_str(" AND r.deployment = ?");
        }
        args.push(Arg::Text(deployment));
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND r.created_at >= ?");
        args.push(Arg::Int(since));
    }
    for (k, v) in &filter.meta {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM run_meta m \
             WHERE m.run_id = r.id AND m.key = ? AND m.value = ?)",
        );
        args.push(Arg::Text(k));
        args.push(Arg::Text(v));
    }
    sql.push_str(" ORDER BY r.created_at DESC, r.id DESC LIMIT ?");
    let limit = if filter.limit == 0 {
        DEFAULT_LIST_LIMIT
    } else {
        filter.limit
    };
    args.push(Arg::Int(i64::from(limit)));

    let mut q = sqlx::query(&sql);
    for arg in args {
        q = match arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    let rows = q
        .fetch_all(&store.reader)
        .await
        .context("cannot list runs")?;
    rows.iter().map(run_summary_of).collect()
}

/// See [`Store::run_view`]: every query in one read transaction, so one snapshot.
pub(super) async fn run_view(
    store: &SqliteStore,
    id: &str,
    query: &StepQuery,
) -> Result<Option<RunDetail>> {
    // One read transaction: every query sees the same snapshot.
    let mut tx = store
        .reader
        .begin()
        .await
        .with_context(|| format!("cannot read run {id}"))?;
    let detail = async {
        let Some(run) = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return anyhow::Ok(None);
        };
        let meta = sqlx::query("SELECT key, value FROM run_meta WHERE run_id = ? ORDER BY key")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let counts = sqlx::query(&format!(
            "SELECT {SHOWN_STATUS}, COUNT(*) FROM steps WHERE run_id = ? GROUP BY 1"
        ))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let limit = if query.limit == 0 {
            -1
        } else {
            i64::from(query.limit)
        };
        // The root step (no parent) first, then the others in creation order.
        let columns = step_columns(SHOWN_STATUS);
        let steps = sqlx::query(&format!(
            "SELECT {columns} FROM steps \
             WHERE run_id = ?1 AND (?2 IS NULL OR {SHOWN_STATUS} = ?2) \
             ORDER BY parent_id IS NOT NULL, created_at, child_index, id LIMIT ?3"
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
        let mut attempts = Vec::new();
        for chunk in chunks(&ids) {
            let sql = format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.step_id IN ({}) ORDER BY a.step_id, a.attempt",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for step_id in chunk {
                q = q.bind(step_id);
            }
            attempts.extend(q.fetch_all(&mut *tx).await?);
        }
        Ok(Some(run_view_of(&run, &meta, &counts, &steps, &attempts)?))
    }
    .await
    .with_context(|| format!("cannot read run {id}"));
    // Read-only: ending the transaction without commit releases the snapshot.
    let _ = tx.rollback().await;
    detail
}

/// See [`Store::run_result`] (a point read).
pub(super) async fn run_result(store: &SqliteStore, id: &str) -> Result<Option<RunResult>> {
    store.read(
        || format!("cannot read run {id}"),
        |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT r.id, r.task, {RUN_SHOWN_STATUS_R}, r.output, r.error, r.created_at, \
                 r.completed_at, \
                 (SELECT COALESCE(SUM(attempt), 0) FROM steps WHERE run_id = r.id), \
                 s.assigned_at, s.started_at, s.completed_at \
                 FROM runs r LEFT JOIN steps s ON s.id = \
                 (SELECT id FROM steps WHERE run_id = r.id ORDER BY created_at, id LIMIT 1) \
                 WHERE r.id = ?"
            ))?;
            let mut rows = stmt.query([id])?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let created_at: Micros = r.get(5)?;
            let assigned_at: Option<Micros> = r.get(8)?;
            let started_at: Option<Micros> = r.get(9)?;
            let step_completed_at: Option<Micros> = r.get(10)?;
            Ok(Some(RunResult {
                id: r.get(0)?,
                task: r.get(1)?,
                status: status_of(r.get(2)?)?,
                output: opt_json(r.get(3)?)?,
                error: opt_json(r.get(4)?)?,
                created_at,
                completed_at: r.get(6)?,
                attempts: u32_of(r.get(7)?)?,
                queue_us: crate::span(Some(created_at), assigned_at),
                execution_us: crate::span(started_at, step_completed_at),
            }))
        },
    )
}

/// See [`Store::kv_get`] (a point read).
pub(super) async fn kv_get(
    store: &SqliteStore,
    scope: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, i64)>> {
    store.read(
        || format!("cannot read key `{key}`"),
        |conn| {
            Ok(conn
                .prepare_cached("SELECT value, version FROM kv WHERE scope = ? AND key = ?")?
                .query_row([scope, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        },
    )
}

/// See [`Store::kv_list`] (a point read, one statement).
pub(super) async fn kv_list(
    store: &SqliteStore,
    scope: &str,
    prefix: &str,
    limit: u32,
) -> Result<KvListing> {
    store.read(
        || format!("cannot list keys with prefix `{prefix}`"),
        |conn| {
            // One statement, one snapshot: the window aggregates cover every key of the
            // prefix, before the limit.
            let mut stmt = conn.prepare_cached(
                "SELECT key, COUNT(*) OVER (), MAX(version) OVER () FROM kv \
                 WHERE scope = ? AND key >= ? AND substr(key, 1, ?) = ? \
                 ORDER BY key LIMIT ?",
            )?;
            let mut rows = stmt.query((
                scope,
                prefix,
                prefix.chars().count() as i64,
                prefix,
                i64::from(limit),
            ))?;
            let mut listing = KvListing::default();
            while let Some(row) = rows.next()? {
                listing.keys.push(row.get(0)?);
                listing.count = row.get(1)?;
                listing.max_version = row.get(2)?;
            }
            Ok(listing)
        },
    )
}

/// See [`Store::run_status`].
pub(super) async fn run_status(store: &SqliteStore, id: &str) -> Result<Option<Status>> {
    sqlx::query(&format!("SELECT {RUN_SHOWN_STATUS} FROM runs WHERE id = ?"))
        .bind(id)
        .fetch_optional(&store.reader)
        .await
        .with_context(|| format!("cannot read the status of run {id}"))?
        .map(|r| status_of(r.try_get(0)?))
        .transpose()
}

/// See [`Store::run_logs`].
pub(super) async fn run_logs(store: &SqliteStore, id: &str) -> Result<Vec<RunLogLine>> {
    sqlx::query(&format!(
        "SELECT {LOG_LINE_COLUMNS} FROM logs l JOIN steps s ON s.id = l.step_id WHERE s.run_id = ? \
         ORDER BY s.created_at, l.step_id, l.attempt, l.seq"
    ))
    .bind(id)
    .fetch_all(&store.reader)
    .await
    .with_context(|| format!("cannot read the logs of run {id}"))?
    .iter()
    .map(log_line_of)
    .collect()
}

/// See [`Store::journal`].
pub(super) async fn journal(
    store: &SqliteStore,
    step_id: &str,
    attempt: u32,
) -> Result<Vec<JournalRecord>> {
    sqlx::query(
        "SELECT seq, kind, data FROM journal WHERE step_id = ? AND attempt = ? ORDER BY seq",
    )
    .bind(step_id)
    .bind(i64::from(attempt))
    .fetch_all(&store.reader)
    .await
    .with_context(|| format!("cannot read the journal of step {step_id} attempt {attempt}"))?
    .iter()
    .map(journal_record_of)
    .collect()
}

/// See [`Store::step_outcomes`].
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

/// See [`Store::last_event_seq`].
pub(super) async fn last_event_seq(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(pool)
        .await?
        .try_get(0)?)
}

/// See [`Store::next_event`].
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

/// See [`Store::cancelled_steps`].
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
