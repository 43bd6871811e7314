//! Worker registrations, heartbeats and stops, and `workers list`'s reads (see
//! [`Store::register_worker`] and [`Store::workers`]).

use super::*;
use crate::rows::{recent_since, worker_view, WorkerRow};
use crate::{HeldStep, WorkerView};

/// See [`Store::register_worker`].
pub(super) async fn register(store: &SqliteStore, worker: &WorkerInfo) -> Result<()> {
    store
        .write(
            || format!("cannot register worker {}", worker.id),
            |conn| {
                conn.prepare_cached(
                    "INSERT INTO workers (id, host, pid, version, schema_version, concurrency, \
                     heartbeat_ms, started_at, last_seen_at, stopped_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) \
                     ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                     version = excluded.version, schema_version = excluded.schema_version, \
                     concurrency = excluded.concurrency, heartbeat_ms = excluded.heartbeat_ms, \
                     started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, \
                     stopped_at = NULL",
                )?
                .execute((
                    &worker.id,
                    &worker.host,
                    worker.pid,
                    &worker.version,
                    open::schema_version(),
                    worker.concurrency,
                    worker.heartbeat_ms as i64,
                    worker.started_at,
                    store.clock.now(),
                ))?;
                Ok(())
            },
        )
        .await
}

/// See [`Store::heartbeat_worker`].
pub(super) async fn heartbeat(store: &SqliteStore, id: &str) -> Result<()> {
    store
        .write(
            || format!("cannot record a heartbeat of worker {id}"),
            |conn| {
                conn.prepare_cached("UPDATE workers SET last_seen_at = ? WHERE id = ?")?
                    .execute((store.clock.now(), id))?;
                Ok(())
            },
        )
        .await
}

/// See [`Store::stop_worker`].
pub(super) async fn stop(store: &SqliteStore, id: &str) -> Result<()> {
    store
        .write(
            || format!("cannot mark worker {id} stopped"),
            |conn| {
                let now = store.clock.now();
                conn.prepare_cached(
                    "UPDATE workers SET last_seen_at = ?1, stopped_at = ?1 WHERE id = ?2",
                )?
                .execute((now, id))?;
                Ok(())
            },
        )
        .await
}

/// See [`Store::workers`]: read in one snapshot on a point-read connection.
pub(super) async fn list(store: &SqliteStore, seen_within: Duration) -> Result<Vec<WorkerView>> {
    let now = store.clock.now();
    let since = now.saturating_sub(i64::try_from(seen_within.as_micros()).unwrap_or(i64::MAX));
    store.read(
        || "cannot read the workers".to_string(),
        |conn| {
            let tx = conn.unchecked_transaction()?;
            let rows = tx
                .prepare_cached(
                    "SELECT id, host, pid, version, concurrency, heartbeat_ms, started_at, \
                     schema_version, last_seen_at, stopped_at FROM workers \
                     WHERE last_seen_at >= ?1 \
                     OR id IN (SELECT worker_id FROM steps WHERE status = 'running') \
                     ORDER BY started_at DESC, id",
                )?
                .query_map([since], |r| {
                    Ok(WorkerRow {
                        info: WorkerInfo {
                            id: r.get(0)?,
                            host: r.get(1)?,
                            pid: r.get(2)?,
                            version: r.get(3)?,
                            concurrency: r.get(4)?,
                            heartbeat_ms: r.get(5)?,
                            started_at: r.get(6)?,
                        },
                        schema_version: r.get(7)?,
                        last_seen_at: r.get(8)?,
                        stopped_at: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut held: HashMap<String, Vec<HeldStep>> = HashMap::new();
            let mut running = tx.prepare_cached(
                "SELECT worker_id, id, run_id, task, attempt, lease_expires_at FROM steps \
                 WHERE status = 'running' AND worker_id IS NOT NULL ORDER BY assigned_at, id",
            )?;
            let mut found = running.query([])?;
            while let Some(r) = found.next()? {
                held.entry(r.get(0)?).or_default().push(HeldStep {
                    step_id: r.get(1)?,
                    run_id: r.get(2)?,
                    task: r.get(3)?,
                    attempt: r.get(4)?,
                    lease_expires_at: r.get(5)?,
                });
            }
            let recent = recent_since(now);
            let mut count = tx.prepare_cached(
                "SELECT COUNT(*) FROM attempts WHERE worker_id = ? AND completed_at >= ? \
                 AND completed_at IS NOT NULL AND started_at IS NOT NULL",
            )?;
            let mut last = tx.prepare_cached(
                "SELECT MAX(completed_at) FROM attempts WHERE worker_id = ? \
                 AND completed_at IS NOT NULL AND started_at IS NOT NULL",
            )?;
            let mut views = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.info.id.clone();
                let completed: i64 = count.query_row((&id, recent), |r| r.get(0))?;
                let last_completed_at: Option<Micros> = last.query_row([&id], |r| r.get(0))?;
                views.push(worker_view(
                    row,
                    held.remove(&id).unwrap_or_default(),
                    completed as u64,
                    last_completed_at,
                    now,
                ));
            }
            Ok(views)
        },
    )
}
