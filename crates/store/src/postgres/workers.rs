//! Worker registrations, heartbeats and stops, and `workers list`'s reads (see
//! [`Store::register_worker`](crate::Store::register_worker) and
//! [`Store::workers`](crate::Store::workers)).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use sqlx::Row;

use super::{schema_version, PgStore};
use crate::rows::{recent_since, u32_of, worker_view, WorkerRow};
use crate::{HeldStep, Micros, WorkerInfo, WorkerView};

/// See [`Store::register_worker`](crate::Store::register_worker).
pub(super) async fn register(store: &PgStore, worker: &WorkerInfo) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, host, pid, version, schema_version, concurrency, heartbeat_ms, \
         started_at, last_seen_at, stopped_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL) \
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
         version = excluded.version, schema_version = excluded.schema_version, \
         concurrency = excluded.concurrency, heartbeat_ms = excluded.heartbeat_ms, \
         started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, \
         stopped_at = NULL",
    )
    .bind(&worker.id)
    .bind(&worker.host)
    .bind(i64::from(worker.pid))
    .bind(&worker.version)
    .bind(schema_version())
    .bind(i64::from(worker.concurrency))
    .bind(i64::try_from(worker.heartbeat_ms).unwrap_or(i64::MAX))
    .bind(worker.started_at)
    .bind(store.clock.now())
    .execute(&store.pool)
    .await
    .with_context(|| format!("cannot register worker {}", worker.id))?;
    Ok(())
}

/// See [`Store::heartbeat_worker`](crate::Store::heartbeat_worker).
pub(super) async fn heartbeat(store: &PgStore, id: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET last_seen_at = $1 WHERE id = $2")
        .bind(store.clock.now())
        .bind(id)
        .execute(&store.pool)
        .await
        .with_context(|| format!("cannot record a heartbeat of worker {id}"))?;
    Ok(())
}

/// See [`Store::stop_worker`](crate::Store::stop_worker).
pub(super) async fn stop(store: &PgStore, id: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET last_seen_at = $1, stopped_at = $1 WHERE id = $2")
        .bind(store.clock.now())
        .bind(id)
        .execute(&store.pool)
        .await
        .with_context(|| format!("cannot mark worker {id} stopped"))?;
    Ok(())
}

/// See [`Store::workers`](crate::Store::workers): read in one snapshot.
pub(super) async fn list(store: &PgStore, seen_within: Duration) -> Result<Vec<WorkerView>> {
    read(store, seen_within)
        .await
        .context("cannot read the workers")
}

async fn read(store: &PgStore, seen_within: Duration) -> Result<Vec<WorkerView>> {
    let now = store.clock.now();
    let since = now.saturating_sub(i64::try_from(seen_within.as_micros()).unwrap_or(i64::MAX));
    let mut tx = store.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT id, host, pid, version, concurrency, heartbeat_ms, started_at, schema_version, \
         last_seen_at, stopped_at FROM workers \
         WHERE last_seen_at >= $1 \
         OR id IN (SELECT worker_id FROM steps WHERE status = 'running') \
         ORDER BY started_at DESC, id",
    )
    .bind(since)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(WorkerRow {
            info: WorkerInfo {
                id: r.try_get(0)?,
                host: r.try_get(1)?,
                pid: u32::try_from(r.try_get::<i64, _>(2)?)?,
                version: r.try_get(3)?,
                concurrency: u32_of(r.try_get(4)?)?,
                heartbeat_ms: u64::try_from(r.try_get::<i64, _>(5)?)?,
                started_at: r.try_get(6)?,
            },
            schema_version: r.try_get(7)?,
            last_seen_at: r.try_get(8)?,
            stopped_at: r.try_get(9)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let mut held: HashMap<String, Vec<HeldStep>> = HashMap::new();
    for r in sqlx::query(
        "SELECT worker_id, id, run_id, task, attempt, lease_expires_at FROM steps \
         WHERE status = 'running' AND worker_id IS NOT NULL ORDER BY assigned_at, id",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        held.entry(r.try_get(0)?).or_default().push(HeldStep {
            step_id: r.try_get(1)?,
            run_id: r.try_get(2)?,
            task: r.try_get(3)?,
            attempt: u32_of(r.try_get(4)?)?,
            lease_expires_at: r.try_get(5)?,
        });
    }
    let recent = recent_since(now);
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.info.id.clone();
        let done = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM attempts WHERE worker_id = $1 AND completed_at >= $2 \
             AND completed_at IS NOT NULL AND started_at IS NOT NULL), \
             (SELECT MAX(completed_at) FROM attempts WHERE worker_id = $1 \
             AND completed_at IS NOT NULL AND started_at IS NOT NULL)",
        )
        .bind(&id)
        .bind(recent)
        .fetch_one(&mut *tx)
        .await?;
        let completed: i64 = done.try_get(0)?;
        let last_completed_at: Option<Micros> = done.try_get(1)?;
        views.push(worker_view(
            row,
            held.remove(&id).unwrap_or_default(),
            u64::try_from(completed)?,
            last_completed_at,
            now,
        ));
    }
    tx.rollback().await.ok();
    Ok(views)
}
