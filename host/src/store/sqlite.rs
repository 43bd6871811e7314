//! The SQLite backend of [`Store`]: one database file in WAL mode, shared by every `hypergraph`
//! process that opens it.
//!
//! # Connections and locking
//!
//! A [`SqliteStore`] holds two pools on the same file:
//! - a **writer** pool of exactly one connection. Every write runs in a transaction opened with
//!   `BEGIN IMMEDIATE`, so it takes SQLite's write lock up front and never has to upgrade a read
//!   snapshot to a write lock (the upgrade is what makes concurrent SQLite writers fail with
//!   `SQLITE_BUSY` instead of waiting). Inside one process writers queue on the pool; across
//!   processes they wait on the lock for up to [`BUSY_TIMEOUT`].
//! - a **reader** pool of [`READERS`] connections for queries. In WAL mode readers see the last
//!   committed state and never block the writer, nor are blocked by it.
//!
//! Connections use `journal_mode=WAL`, `synchronous=NORMAL` and `foreign_keys=ON`. With
//! `synchronous=NORMAL` a commit is atomic and survives a crash of the process; a power loss may
//! roll back the last few commits but never leaves a half-written one.
//!
//! # Fencing and exactly-one claimant
//!
//! [`Store::claim_steps`] selects and updates the steps it hands out in one statement inside the
//! write transaction, so two claimants (threads or processes) can never both see a step as
//! claimable. [`Store::complete_steps`] applies a completion only through
//! `UPDATE steps ... WHERE id = ? AND attempt = ? AND status = 'running'` (batched as a multi-row
//! `UPDATE ... FROM (VALUES ...)`); when that leaves the step unchanged the attempt has been
//! superseded and nothing else of it (attempt row, run, journal, logs) is written.
//!
//! # Throughput
//!
//! A batch of completions is one transaction and a constant number of multi-row statements per
//! few hundred completions, so committing costs little more than SQLite's b-tree work. Callers
//! should batch: one `complete_steps` call per group of finished attempts (group commit), one
//! `claim_steps` call for as many steps as the worker has free slots.
//!
//! The SQL is kept portable (plain types, `ON CONFLICT`, `UPDATE ... RETURNING`) so the
//! PostgreSQL backend can share the schema in `host/migrations`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};

use super::{
    now_micros, AttemptDetail, Cancelled, ClaimedStep, CommitOutcome, Completion, Deployment,
    DeploymentKind, JournalRecord, LogRecord, Micros, NewRun, Policy, PolicyOverride, RunDetail,
    RunFilter, RunLogLine, RunResult, RunSummary, Status, StepDetail, StepOutcome, Store,
    WorkerInfo,
};

mod workflow;

/// How long a statement waits for another process's write lock before failing with
/// `database is locked`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Size of the read pool: one connection per core of the small machines Hypergraph targets.
pub const READERS: u32 = 2;

/// Rows per multi-row statement, largest first. A batch of `n` rows is split greedily into chunks
/// of these sizes, so it takes few statements and each table has at most this many statement
/// shapes in the prepared-statement cache. 256 rows of the widest row (12 columns) stay far below
/// SQLite's limit of 32,766 bound parameters (and PostgreSQL's 65,535).
const CHUNK_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Rows listed by [`Store::list_runs`] when the filter does not say.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// Statuses a completion may set.
const COMPLETION_STATUSES: [Status; 3] = [Status::Succeeded, Status::Failed, Status::Cancelled];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A [`Store`] backed by one SQLite database file. Cheap to share behind an `Arc`; every method
/// takes `&self`. See the module docs for the locking model.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// What was opened, for error messages.
    location: String,
    /// Policies of deployment versions; a version never changes once written.
    policies: Mutex<HashMap<(String, i64), Policy>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if missing) the database file at `path` and
    /// brings its schema up to date. Several processes may open the same file at once.
    ///
    /// Fails with an error naming `path` when the directory cannot be created, the file cannot be
    /// opened or written, or the file exists but is not a SQLite database.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!(
                    "cannot create directory {} for the database {}",
                    parent.display(),
                    path.display()
                )
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open_with(options, path.display().to_string(), false).await
    }

    /// Opens a database by sqlx URL, e.g. `sqlite:///var/lib/hypergraph/db.sqlite?mode=rwc` or
    /// `sqlite::memory:` (a private in-memory database, for tests; it lives as long as the store).
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite database URL `{url}`"))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, url.to_string(), in_memory).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        location: String,
        in_memory: bool,
    ) -> Result<SqliteStore> {
        let options = options
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory");

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(&location, e))?;
        // A fresh file is not checked until something reads it.
        sqlx::query("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&writer)
            .await
            .map_err(|e| open_error(&location, e))?;

        migrate(&writer).await.with_context(|| {
            format!("cannot migrate the database {location} to this version of hypergraph")
        })?;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.create_if_missing(false))
                .await
                .map_err(|e| open_error(&location, e))?
        };

        Ok(SqliteStore {
            writer,
            reader,
            location,
            policies: Mutex::new(HashMap::new()),
        })
    }

    /// What this store was opened from (a path or URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection, checkpointing the write-ahead log. Calls made afterwards fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction holding SQLite's write lock (see the module docs).
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .with_context(|| format!("cannot start a write transaction on {}", self.location))
    }

    /// The policy of a deployment version, from the cache or the database.
    async fn policy(
        &self,
        conn: &mut SqliteConnection,
        deployment: &str,
        version: i64,
    ) -> Result<Policy> {
        let key = (deployment.to_string(), version);
        if let Some(p) = self.policies.lock().expect("policy cache").get(&key) {
            return Ok(p.clone());
        }
        let row = sqlx::query("SELECT policy FROM deployments WHERE name = ? AND version = ?")
            .bind(deployment)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| anyhow!("deployment `{deployment}` version {version} does not exist"))?;
        let policy = parse_policy(&row.try_get::<String, _>(0)?)?;
        self.policies
            .lock()
            .expect("policy cache")
            .insert(key, policy.clone());
        Ok(policy)
    }
}

/// Runs the migrations, retrying when another process is migrating the same file at the same
/// moment (SQLite has no advisory lock, so both may try to apply a migration; the loser fails and
/// on retry finds it applied).
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tries = 0;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO components (digest, bytes, size, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(bytes)
        .bind(bytes.len() as i64)
        .bind(now_micros())
        .execute(&self.writer)
        .await
        .with_context(|| format!("cannot store component {digest}"))?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.reader)
            .await
            .with_context(|| format!("cannot read component {digest}"))?;
        row.map(|r| r.try_get::<Vec<u8>, _>(0))
            .transpose()
            .map_err(Into::into)
    }

    async fn deploy(
        &self,
        name: &str,
        digest: &str,
        kind: DeploymentKind,
        policy: &Policy,
    ) -> Result<Deployment> {
        let policy_json = serde_json::to_string(policy)?;
        let mut tx = self.write_tx().await?;
        let result = async {
            let exists = sqlx::query("SELECT 1 FROM components WHERE digest = ?")
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                bail!("component {digest} is not stored; store it (put_component) before deploying it");
            }
            let latest = sqlx::query(
                "SELECT name, version, digest, policy, created_at, kind FROM deployments \
                 WHERE name = ? ORDER BY version DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| deployment_of(&r))
            .transpose()?;
            if let Some(latest) = &latest {
                if latest.digest == digest && latest.kind == kind && latest.policy == *policy {
                    return Ok(latest.clone());
                }
            }
            let deployment = Deployment {
                name: name.to_string(),
                version: latest.map_or(1, |d| d.version + 1),
                digest: digest.to_string(),
                kind,
                policy: policy.clone(),
                created_at: now_micros(),
            };
            sqlx::query(
                "INSERT INTO deployments (name, version, digest, policy, created_at, kind) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&deployment.name)
            .bind(deployment.version)
            .bind(&deployment.digest)
            .bind(&policy_json)
            .bind(deployment.created_at)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
            Ok(deployment)
        }
        .await
        .with_context(|| format!("cannot deploy `{name}`"))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot deploy `{name}`"))?;
        Ok(result)
    }

    async fn latest_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        sqlx::query(
            "SELECT name, version, digest, policy, created_at, kind FROM deployments \
             WHERE name = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .with_context(|| format!("cannot read deployment `{name}`"))?
        .map(|r| deployment_of(&r))
        .transpose()
    }

    async fn deployment_version(&self, name: &str, version: i64) -> Result<Option<Deployment>> {
        sqlx::query(
            "SELECT name, version, digest, policy, created_at, kind FROM deployments \
             WHERE name = ? AND version = ?",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&self.reader)
        .await
        .with_context(|| format!("cannot read deployment `{name}` version {version}"))?
        .map(|r| deployment_of(&r))
        .transpose()
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        sqlx::query(
            "SELECT d.name, d.version, d.digest, d.policy, d.created_at, d.kind FROM deployments d \
             WHERE d.version = (SELECT MAX(l.version) FROM deployments l WHERE l.name = d.name) \
             ORDER BY d.name",
        )
        .fetch_all(&self.reader)
        .await
        .context("cannot list deployments")?
        .iter()
        .map(deployment_of)
        .collect()
    }

    async fn submit_runs(&self, runs: &[NewRun]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let inputs = runs
            .iter()
            .map(|r| serde_json::to_string(&r.input))
            .collect::<Result<Vec<_>, _>>()?;
        let versions: HashSet<(&str, i64, &str)> = runs
            .iter()
            .map(|r| (r.deployment.as_str(), r.version, r.digest.as_str()))
            .collect();
        let mut tx = self.write_tx().await?;
        async {
            // Every run must pin an existing deployment version and that version's component.
            for (name, version, digest) in versions {
                let found = sqlx::query("SELECT digest FROM deployments WHERE name = ? AND version = ?")
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(found) = found else {
                    bail!("deployment `{name}` version {version} does not exist");
                };
                let deployed: String = found.try_get(0)?;
                if deployed != digest {
                    bail!(
                        "a run pins component {digest}, but deployment `{name}` version {version} \
                         is component {deployed}"
                    );
                }
            }
            let rows: Vec<(&NewRun, &String)> = runs.iter().zip(&inputs).collect();
            insert_rows(
                &mut tx,
                "INSERT INTO runs (id, task, deployment, version, digest, input, status, created_at, \
                 deadline) VALUES ",
                "(?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                &rows,
                |q, (r, input)| {
                    q.bind(&r.id)
                        .bind(&r.task)
                        .bind(&r.deployment)
                        .bind(r.version)
                        .bind(&r.digest)
                        .bind(input.as_str())
                        .bind(r.created_at)
                        .bind(r.deadline)
                },
            )
            .await?;
            insert_rows(
                &mut tx,
                "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
                 attempt, created_at, start_deadline) VALUES ",
                "(?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?)",
                &rows,
                |q, (r, input)| {
                    q.bind(&r.step_id)
                        .bind(&r.id)
                        .bind(&r.task)
                        .bind(&r.deployment)
                        .bind(r.version)
                        .bind(&r.digest)
                        .bind(input.as_str())
                        .bind(r.created_at)
                        .bind(r.start_deadline)
                },
            )
            .await?;
            let meta: Vec<(&str, &str, &str)> = runs
                .iter()
                .flat_map(|r| r.meta.iter().map(|(k, v)| (r.id.as_str(), k.as_str(), v.as_str())))
                .collect();
            insert_rows(
                &mut tx,
                "INSERT INTO run_meta (run_id, key, value) VALUES ",
                "(?, ?, ?)",
                &meta,
                |q, (run, k, v)| q.bind(*run).bind(*k).bind(*v),
            )
            .await?;
            Ok(())
        }
        .await
        .with_context(|| format!("cannot submit {} run(s)", runs.len()))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot submit {} run(s)", runs.len()))
    }

    async fn claim_steps(
        &self,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut tx = self.write_tx().await?;
        let claimed = async {
            // The subquery and the update are one statement under the write lock: nobody else
            // can claim the same rows in between.
            const RETURNING: &str = "RETURNING id, run_id, task, deployment, version, digest, \
                                     input, attempt, created_at, activations, policy";
            workflow::expire(&mut tx, now).await?;
            // Timers and event timeouts that have passed end their steps' waits.
            sqlx::query(
                "UPDATE steps SET wait = NULL, wait_event = NULL \
                 WHERE wait IN ('timer', 'event') AND wake_at <= ?",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // A resumed workflow continues its attempt; anything else starts a new one.
            let queued = sqlx::query(&format!(
                "UPDATE steps SET status = 'running', \
                 attempt = CASE WHEN activations > 0 THEN attempt ELSE attempt + 1 END, \
                 worker_id = ?, assigned_at = ?, started_at = NULL, completed_at = NULL, \
                 wake_at = NULL, start_deadline = NULL, lease_expires_at = ? \
                 WHERE id IN (SELECT id FROM steps WHERE status = 'queued' AND wait IS NULL \
                 AND (wake_at IS NULL OR wake_at <= ?) ORDER BY created_at LIMIT ?) {RETURNING}"
            ))
            .bind(worker_id)
            .bind(now)
            .bind(lease_until)
            .bind(now)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?;
            let mut claimed = steps_of(&queued, now)?;
            claimed.sort_by(|(a, ..), (b, ..)| {
                (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id))
            });

            if claimed.len() < max {
                let expired = sqlx::query(&format!(
                    "UPDATE steps SET status = 'running', attempt = attempt + 1, worker_id = ?, \
                     assigned_at = ?, started_at = NULL, lease_expires_at = ? \
                     WHERE id IN (SELECT id FROM steps WHERE status = 'running' \
                     AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?) {RETURNING}"
                ))
                .bind(worker_id)
                .bind(now)
                .bind(lease_until)
                .bind(now)
                .bind((max - claimed.len()) as i64)
                .fetch_all(&mut *tx)
                .await?;
                let mut expired = steps_of(&expired, now)?;
                expired.sort_by(|(a, ..), (b, ..)| {
                    (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id))
                });
                let lost = json!({
                    "kind": "lease_expired",
                    "message": "the attempt's lease expired before it completed; the step was claimed again",
                })
                .to_string();
                for (step, ..) in &expired {
                    sqlx::query(
                        "UPDATE attempts SET status = 'failed', completed_at = ?, error = ? \
                         WHERE step_id = ? AND attempt = ? AND status = 'running'",
                    )
                    .bind(now)
                    .bind(&lost)
                    .bind(&step.step_id)
                    .bind(i64::from(step.attempt) - 1)
                    .execute(&mut *tx)
                    .await?;
                }
                claimed.extend(expired);
            }
            if claimed.is_empty() {
                return anyhow::Ok(Vec::new());
            }

            let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
            execute_for_ids(&mut tx, &ids, |list| {
                [
                    format!(
                        "INSERT INTO attempts (step_id, attempt, status, worker_id, assigned_at) \
                         SELECT id, attempt, 'running', worker_id, assigned_at FROM steps \
                         WHERE id IN ({list}) ON CONFLICT (step_id, attempt) DO UPDATE \
                         SET status = 'running', worker_id = excluded.worker_id, \
                         assigned_at = excluded.assigned_at"
                    ),
                    // The run of a claimed step is queued or already running (a reclaim).
                    format!(
                        "UPDATE runs SET status = 'running' \
                         WHERE id IN (SELECT run_id FROM steps WHERE id IN ({list}))"
                    ),
                ]
            })
            .await?;
            let mut steps = Vec::with_capacity(claimed.len());
            for (mut step, activations, overrides) in claimed {
                step.policy = self.policy(&mut tx, &step.deployment, step.version).await?;
                if let Some(overrides) = overrides {
                    let overrides: PolicyOverride = serde_json::from_str(&overrides)
                        .with_context(|| format!("stored step policy is not valid: {overrides}"))?;
                    step.policy = step.policy.overlaid(&overrides);
                }
                if activations > 0 {
                    (step.resume, step.resume_attempt) =
                        workflow::resume_journal(&mut tx, &step.step_id).await?;
                }
                steps.push(step);
            }
            Ok(steps)
        }
        .await
        .context("cannot claim steps")?;
        tx.commit().await.context("cannot claim steps")?;
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        worker_id: &str,
        steps: &[(String, u32)],
        lease: Duration,
    ) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let until =
            now_micros().saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut tx = self.write_tx().await?;
        for chunk in chunks(steps) {
            let sql = values_sql(
                "UPDATE steps SET lease_expires_at = ? FROM (VALUES ",
                "(?, ?)",
                chunk.len(),
            ) + ") AS v WHERE steps.id = v.column1 AND steps.attempt = v.column2 \
                 AND steps.worker_id = ? AND steps.status = 'running'";
            let mut q = sqlx::query(&sql).bind(until);
            for (step_id, attempt) in chunk {
                q = q.bind(step_id).bind(i64::from(*attempt));
            }
            q.bind(worker_id)
                .execute(&mut *tx)
                .await
                .context("cannot renew leases")?;
        }
        tx.commit().await.context("cannot renew leases")
    }

    async fn complete_steps(&self, completions: &[Completion]) -> Result<Vec<CommitOutcome>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = completions
            .iter()
            .map(|c| {
                let suspended = c.wait.is_some() && c.status == Status::Running;
                let retried = c.retry_at.is_some() && c.status == Status::Failed;
                if c.wait.is_some() != suspended || c.retry_at.is_some() != retried {
                    bail!(
                        "a suspension must be running and a retry failed (step {} attempt {})",
                        c.step_id,
                        c.attempt
                    );
                }
                if !suspended && !COMPLETION_STATUSES.contains(&c.status) {
                    bail!(
                        "a completion must be succeeded, failed or cancelled, not {} (step {} attempt {})",
                        c.status,
                        c.step_id,
                        c.attempt
                    );
                }
                Ok(Encoded {
                    c,
                    output: c.output.as_ref().map(serde_json::to_string).transpose()?,
                    error: c.error.as_ref().map(serde_json::to_string).transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let mut tx = self.write_tx().await?;
        let mut outcomes = vec![CommitOutcome::Fenced; completions.len()];
        async {
            // Completions are applied in order. A batch is split into segments in which every
            // step appears at most once; each segment is applied with a few multi-row
            // statements, and a repeated step (a worker bug, but it must not corrupt anything)
            // sees the effect of the earlier completions of the batch, as if applied one by one.
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
                for chunk in chunks(segment) {
                    applied.extend(fence_and_complete(&mut tx, chunk).await?);
                }
                let mut ids: Vec<&str> = Vec::with_capacity(applied.len());
                for (i, e) in segment.iter().enumerate() {
                    if applied.contains(&e.c.step_id) {
                        outcomes[start + i] = CommitOutcome::Committed;
                        committed.push(e);
                        ids.push(&e.c.step_id);
                    }
                }
                // The attempt mirrors the step: it goes on while its workflow waits, and failed
                // when the step is queued for a retry. The run mirrors its root step once that
                // has finished.
                execute_for_ids(&mut tx, &ids, |list| {
                    [
                        format!(
                            "UPDATE attempts SET status = CASE \
                             WHEN s.status = 'queued' AND s.wait IS NOT NULL THEN 'running' \
                             WHEN s.status = 'queued' THEN 'failed' ELSE s.status END, \
                             worker_id = s.worker_id, \
                             started_at = COALESCE(attempts.started_at, s.started_at), \
                             completed_at = s.completed_at, error = s.error \
                             FROM steps s WHERE s.id = attempts.step_id AND s.attempt = attempts.attempt \
                             AND s.id IN ({list})"
                        ),
                        format!(
                            "UPDATE runs SET status = s.status, output = s.output, error = s.error, \
                             completed_at = s.completed_at FROM steps s \
                             WHERE s.run_id = runs.id AND s.parent_id IS NULL \
                             AND s.status IN ('succeeded', 'failed', 'cancelled') AND s.id IN ({list})"
                        ),
                    ]
                })
                .await?;
                start = end;
            }

            let committed_completions: Vec<&Completion> = committed.iter().map(|e| e.c).collect();
            workflow::insert_children(&mut tx, &committed_completions).await?;
            workflow::settle_waits(&mut tx, &committed_completions).await?;
            let finished: Vec<&str> = committed_completions
                .iter()
                .filter(|c| c.wait.is_none() && c.retry_at.is_none())
                .map(|c| c.step_id.as_str())
                .collect();
            workflow::wake_parents(&mut tx, &finished).await?;

            let journal: Vec<(&Completion, &JournalRecord)> = committed
                .iter()
                .flat_map(|e| e.c.journal.iter().map(|j| (e.c, j)))
                .collect();
            insert_rows(
                &mut tx,
                "INSERT INTO journal (step_id, attempt, seq, kind, data) VALUES ",
                "(?, ?, ?, ?, ?)",
                &journal,
                |q, (c, j)| {
                    q.bind(&c.step_id)
                        .bind(i64::from(c.attempt))
                        .bind(i64::from(j.seq))
                        .bind(&j.kind)
                        .bind(&j.data)
                },
            )
            .await?;
            let logs: Vec<(&Completion, &LogRecord)> = committed
                .iter()
                .flat_map(|e| e.c.logs.iter().map(|l| (e.c, l)))
                .collect();
            insert_rows(
                &mut tx,
                "INSERT INTO logs (step_id, attempt, seq, at, stream, level, message) VALUES ",
                "(?, ?, ?, ?, ?, ?, ?)",
                &logs,
                |q, (c, l)| {
                    q.bind(&c.step_id)
                        .bind(i64::from(c.attempt))
                        .bind(i64::from(l.seq))
                        .bind(l.at)
                        .bind(&l.stream)
                        .bind(&l.level)
                        .bind(&l.message)
                },
            )
            .await?;
            // Key-value writes of successful attempts, in completion order (later wins).
            let now = now_micros();
            for e in committed.iter().filter(|e| e.c.status == Status::Succeeded) {
                for write in &e.c.kv_writes {
                    let query = match &write.value {
                        Some(value) => sqlx::query(
                            "INSERT INTO kv (scope, key, value, updated_at) VALUES (?, ?, ?, ?) \
                             ON CONFLICT (scope, key) DO UPDATE \
                             SET value = excluded.value, updated_at = excluded.updated_at",
                        )
                        .bind(&write.scope)
                        .bind(&write.key)
                        .bind(value.as_slice())
                        .bind(now),
                        None => sqlx::query("DELETE FROM kv WHERE scope = ? AND key = ?")
                            .bind(&write.scope)
                            .bind(&write.key),
                    };
                    query.execute(&mut *tx).await?;
                }
            }
            anyhow::Ok(())
        }
        .await
        .with_context(|| format!("cannot commit {} completion(s)", completions.len()))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot commit {} completion(s)", completions.len()))?;
        Ok(outcomes)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        enum Arg<'a> {
            Text(&'a str),
            Int(i64),
        }
        let mut sql = String::from(
            "SELECT r.id, r.task, r.status, r.created_at, r.completed_at, \
             (SELECT COALESCE(SUM(s.attempt), 0) FROM steps s WHERE s.run_id = r.id) \
             FROM runs r WHERE 1 = 1",
        );
        let mut args = Vec::new();
        if let Some(status) = filter.status {
            sql.push_str(" AND r.status = ?");
            args.push(Arg::Text(status.as_str()));
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
            .fetch_all(&self.reader)
            .await
            .context("cannot list runs")?;
        rows.iter()
            .map(|r| {
                Ok(RunSummary {
                    id: r.try_get(0)?,
                    task: r.try_get(1)?,
                    status: status_of(r.try_get(2)?)?,
                    created_at: r.try_get(3)?,
                    completed_at: r.try_get(4)?,
                    attempts: u32_of(r.try_get(5)?)?,
                })
            })
            .collect()
    }

    async fn run(&self, id: &str) -> Result<Option<RunDetail>> {
        // One read transaction: every query sees the same snapshot.
        let mut tx = self
            .reader
            .begin()
            .await
            .with_context(|| format!("cannot read run {id}"))?;
        let detail = async {
            let Some(run) = sqlx::query(
                "SELECT id, task, deployment, version, digest, status, input, output, error, \
                 created_at, completed_at FROM runs WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return anyhow::Ok(None);
            };
            let meta = sqlx::query("SELECT key, value FROM run_meta WHERE run_id = ? ORDER BY key")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, String)>>>()?;
            let mut attempts: HashMap<String, Vec<AttemptDetail>> = HashMap::new();
            for r in sqlx::query(
                "SELECT a.step_id, a.attempt, a.status, a.worker_id, a.assigned_at, a.started_at, \
                 a.completed_at, a.error, \
                 (SELECT COUNT(*) FROM journal j WHERE j.step_id = a.step_id AND j.attempt = a.attempt), \
                 (SELECT COUNT(*) FROM logs l WHERE l.step_id = a.step_id AND l.attempt = a.attempt) \
                 FROM attempts a JOIN steps s ON s.id = a.step_id \
                 WHERE s.run_id = ? ORDER BY a.step_id, a.attempt",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            {
                attempts
                    .entry(r.try_get(0)?)
                    .or_default()
                    .push(AttemptDetail {
                        attempt: u32_of(r.try_get(1)?)?,
                        status: status_of(r.try_get(2)?)?,
                        worker_id: r.try_get(3)?,
                        assigned_at: r.try_get(4)?,
                        started_at: r.try_get(5)?,
                        completed_at: r.try_get(6)?,
                        error: opt_json(r.try_get(7)?)?,
                        journal_entries: u32_of(r.try_get(8)?)?,
                        log_lines: u32_of(r.try_get(9)?)?,
                    });
            }
            let steps = sqlx::query(
                "SELECT id, task, CASE WHEN status = 'queued' AND wait IS NOT NULL \
                 THEN 'waiting' ELSE status END, attempt, worker_id, digest, input, output, \
                 error, created_at, assigned_at, started_at, completed_at, parent_id, child_index \
                 FROM steps WHERE run_id = ? ORDER BY created_at, child_index, id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(StepDetail {
                    task: r.try_get(1)?,
                    status: status_of(r.try_get(2)?)?,
                    attempt: u32_of(r.try_get(3)?)?,
                    worker_id: r.try_get(4)?,
                    digest: r.try_get(5)?,
                    input: json_of(r.try_get(6)?)?,
                    output: opt_json(r.try_get(7)?)?,
                    error: opt_json(r.try_get(8)?)?,
                    created_at: r.try_get(9)?,
                    assigned_at: r.try_get(10)?,
                    started_at: r.try_get(11)?,
                    completed_at: r.try_get(12)?,
                    parent_id: r.try_get(13)?,
                    child_index: r
                        .try_get::<Option<i64>, _>(14)?
                        .map(u32_of)
                        .transpose()?,
                    attempts: attempts.remove(&id).unwrap_or_default(),
                    id,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            Ok(Some(RunDetail {
                id: run.try_get(0)?,
                task: run.try_get(1)?,
                deployment: run.try_get(2)?,
                version: run.try_get(3)?,
                digest: run.try_get(4)?,
                status: status_of(run.try_get(5)?)?,
                input: json_of(run.try_get(6)?)?,
                output: opt_json(run.try_get(7)?)?,
                error: opt_json(run.try_get(8)?)?,
                meta,
                created_at: run.try_get(9)?,
                completed_at: run.try_get(10)?,
                steps,
            }))
        }
        .await
        .with_context(|| format!("cannot read run {id}"));
        // Read-only: ending the transaction without commit releases the snapshot.
        let _ = tx.rollback().await;
        detail
    }

    async fn run_result(&self, id: &str) -> Result<Option<RunResult>> {
        let row = sqlx::query(
            "SELECT r.id, r.task, r.status, r.output, r.error, r.created_at, r.completed_at, \
             (SELECT COALESCE(SUM(attempt), 0) FROM steps WHERE run_id = r.id), \
             s.assigned_at, s.started_at, s.completed_at \
             FROM runs r LEFT JOIN steps s ON s.id = \
             (SELECT id FROM steps WHERE run_id = r.id ORDER BY created_at, id LIMIT 1) \
             WHERE r.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .with_context(|| format!("cannot read run {id}"))?;
        let Some(r) = row else {
            return Ok(None);
        };
        let created_at: Micros = r.try_get(5)?;
        let assigned_at: Option<Micros> = r.try_get(8)?;
        let started_at: Option<Micros> = r.try_get(9)?;
        let step_completed_at: Option<Micros> = r.try_get(10)?;
        let span = |from: Option<Micros>, to: Option<Micros>| match (from, to) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        Ok(Some(RunResult {
            id: r.try_get(0)?,
            task: r.try_get(1)?,
            status: status_of(r.try_get(2)?)?,
            output: opt_json(r.try_get(3)?)?,
            error: opt_json(r.try_get(4)?)?,
            created_at,
            completed_at: r.try_get(6)?,
            attempts: u32_of(r.try_get(7)?)?,
            queue_us: span(Some(created_at), assigned_at),
            execution_us: span(started_at, step_completed_at),
        }))
    }

    async fn kv_get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query("SELECT value FROM kv WHERE scope = ? AND key = ?")
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .with_context(|| format!("cannot read key `{key}`"))?
            .map(|row| row.try_get::<Vec<u8>, _>(0).map_err(Into::into))
            .transpose()
    }

    async fn kv_list(&self, scope: &str, prefix: &str, limit: u32) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT key FROM kv WHERE scope = ? AND key >= ? AND substr(key, 1, ?) = ? \
             ORDER BY key LIMIT ?",
        )
        .bind(scope)
        .bind(prefix)
        .bind(prefix.chars().count() as i64)
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .with_context(|| format!("cannot list keys with prefix `{prefix}`"))?
        .iter()
        .map(|row| row.try_get::<String, _>(0).map_err(Into::into))
        .collect()
    }

    async fn run_status(&self, id: &str) -> Result<Option<Status>> {
        sqlx::query("SELECT status FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .with_context(|| format!("cannot read the status of run {id}"))?
            .map(|r| status_of(r.try_get(0)?))
            .transpose()
    }

    async fn run_logs(&self, id: &str) -> Result<Vec<RunLogLine>> {
        sqlx::query(
            "SELECT l.step_id, l.attempt, l.seq, l.at, l.stream, l.level, l.message \
             FROM logs l JOIN steps s ON s.id = l.step_id WHERE s.run_id = ? \
             ORDER BY s.created_at, l.step_id, l.attempt, l.seq",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await
        .with_context(|| format!("cannot read the logs of run {id}"))?
        .iter()
        .map(|r| {
            Ok(RunLogLine {
                step_id: r.try_get(0)?,
                attempt: u32_of(r.try_get(1)?)?,
                line: LogRecord {
                    seq: u32_of(r.try_get(2)?)?,
                    at: r.try_get(3)?,
                    stream: r.try_get(4)?,
                    level: r.try_get(5)?,
                    message: r.try_get(6)?,
                },
            })
        })
        .collect()
    }

    async fn journal(&self, step_id: &str, attempt: u32) -> Result<Vec<JournalRecord>> {
        sqlx::query(
            "SELECT seq, kind, data FROM journal WHERE step_id = ? AND attempt = ? ORDER BY seq",
        )
        .bind(step_id)
        .bind(i64::from(attempt))
        .fetch_all(&self.reader)
        .await
        .with_context(|| format!("cannot read the journal of step {step_id} attempt {attempt}"))?
        .iter()
        .map(|r| {
            Ok(JournalRecord {
                seq: u32_of(r.try_get(0)?)?,
                kind: r.try_get(1)?,
                data: r.try_get(2)?,
            })
        })
        .collect()
    }

    async fn step_outcomes(&self, ids: &[String]) -> Result<Vec<StepOutcome>> {
        workflow::step_outcomes(&self.reader, ids)
            .await
            .context("cannot read step results")
    }

    async fn last_event_seq(&self) -> Result<i64> {
        workflow::last_event_seq(&self.reader)
            .await
            .context("cannot read events")
    }

    async fn next_event(&self, name: &str, after: i64) -> Result<Option<(i64, String)>> {
        workflow::next_event(&self.reader, name, after)
            .await
            .with_context(|| format!("cannot read events named `{name}`"))
    }

    async fn send_event(&self, name: &str, payload: &str) -> Result<(i64, u64)> {
        let mut tx = self.write_tx().await?;
        let sent = workflow::send_event(&mut tx, name, payload)
            .await
            .with_context(|| format!("cannot send event `{name}`"))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot send event `{name}`"))?;
        Ok(sent)
    }

    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>> {
        let mut tx = self.write_tx().await?;
        let cancelled = workflow::cancel_run(&mut tx, id)
            .await
            .with_context(|| format!("cannot cancel run {id}"))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot cancel run {id}"))?;
        Ok(cancelled)
    }

    async fn cancelled_steps(&self, steps: &[(String, u32)]) -> Result<Vec<(String, u32)>> {
        workflow::cancelled_steps(&self.reader, steps)
            .await
            .context("cannot read step statuses")
    }

    async fn resume_run(
        &self,
        id: &str,
        pins: &HashMap<String, (i64, String)>,
    ) -> Result<Option<u64>> {
        let mut tx = self.write_tx().await?;
        let resumed = workflow::resume_run(&mut tx, id, pins)
            .await
            .with_context(|| format!("cannot resume run {id}"))?;
        tx.commit()
            .await
            .with_context(|| format!("cannot resume run {id}"))?;
        Ok(resumed)
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (id, host, pid, version, started_at, last_seen_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
             version = excluded.version, started_at = excluded.started_at, \
             last_seen_at = excluded.last_seen_at",
        )
        .bind(&worker.id)
        .bind(&worker.host)
        .bind(i64::from(worker.pid))
        .bind(&worker.version)
        .bind(worker.started_at)
        .bind(now_micros())
        .execute(&self.writer)
        .await
        .with_context(|| format!("cannot register worker {}", worker.id))?;
        Ok(())
    }
}

/// A completion with its JSON values serialized.
struct Encoded<'a> {
    c: &'a Completion,
    output: Option<String>,
    error: Option<String>,
}

/// Applies the step part of `chunk` (distinct steps) where the fence holds: the step is still
/// `running` under the completion's attempt. Returns the ids of the steps it changed.
async fn fence_and_complete(
    conn: &mut SqliteConnection,
    chunk: &[Encoded<'_>],
) -> Result<Vec<String>> {
    let sql = values_sql(
        "UPDATE steps SET status = v.column3, output = v.column4, error = v.column5, \
         started_at = v.column6, completed_at = v.column7, worker_id = v.column8, \
         wait = v.column9, wait_event = v.column10, wake_at = v.column11, \
         activations = CASE WHEN v.column9 IS NULL THEN activations ELSE activations + 1 END, \
         lease_expires_at = NULL FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        chunk.len(),
    ) + ") AS v WHERE steps.id = v.column1 AND steps.attempt = v.column2 \
         AND steps.status = 'running' RETURNING steps.id";
    let mut q = sqlx::query(&sql);
    for e in chunk {
        let (status, wait, wait_event, wake_at) = workflow::step_state(e.c);
        // A suspended attempt has not completed.
        let completed_at = wait.is_none().then_some(e.c.completed_at);
        q = q
            .bind(&e.c.step_id)
            .bind(i64::from(e.c.attempt))
            .bind(status)
            .bind(e.output.as_deref())
            .bind(e.error.as_deref())
            .bind(e.c.started_at)
            .bind(completed_at)
            .bind(&e.c.worker_id)
            .bind(wait)
            .bind(wait_event)
            .bind(wake_at);
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get(0).map_err(Into::into))
        .collect()
}

/// A clear error for a database that cannot be opened, naming it and saying what to check.
fn open_error(location: &str, error: sqlx::Error) -> anyhow::Error {
    let (code, message) = match &error {
        sqlx::Error::Database(db) => (
            db.code().and_then(|c| c.parse::<i32>().ok()),
            db.message().to_string(),
        ),
        other => (None, other.to_string()),
    };
    // Primary result codes: https://www.sqlite.org/rescode.html
    let hint = match code.map(|c| c & 0xff) {
        Some(26) => "the file exists but is not a SQLite database; point Hypergraph at its database file or at a new path",
        Some(14) => "the file cannot be opened or created; check that the path is right, that it is not a directory, and that its directory is writable",
        Some(8) => "the database is read-only; check the permissions of the file and its directory",
        Some(5) | Some(6) => "another process holds a lock on the database and did not release it in time",
        Some(11) => "the database file is corrupt",
        _ => "check that the path is right and writable",
    };
    anyhow!("cannot open the SQLite database {location}: {message} ({hint})")
}

/// Splits `items` into chunks of the sizes in [`CHUNK_ROWS`], largest first.
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = CHUNK_ROWS
            .into_iter()
            .find(|&n| n <= items.len())
            .unwrap_or(1);
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// `prefix` followed by `rows` copies of `row`, comma-separated.
/// A query on the SQLite driver, as the binding closures of [`insert_rows`] see it.
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Inserts `rows` with multi-row `prefix row, row, ...` statements (chunked to stay under SQLite's
/// bound-parameter limit), binding each row's values with `bind`.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    prefix: &str,
    row: &str,
    rows: &[T],
    bind: impl for<'q> Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
) -> Result<()> {
    for chunk in chunks(rows) {
        let sql = values_sql(prefix, row, chunk.len());
        let mut q = sqlx::query(&sql);
        for item in chunk {
            q = bind(q, item);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs the statements `sql(list)` for each chunk of `ids`, where `list` is the chunk's `?, ?, ...`
/// placeholder list and every statement binds exactly the chunk's ids.
async fn execute_for_ids<const N: usize>(
    conn: &mut SqliteConnection,
    ids: &[&str],
    sql: impl Fn(&str) -> [String; N],
) -> Result<()> {
    for chunk in chunks(ids) {
        for statement in sql(&placeholders(chunk.len())) {
            let mut q = sqlx::query(&statement);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

fn values_sql(prefix: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * (row.len() + 2));
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// `n` comma-separated `?` placeholders.
fn placeholders(n: usize) -> String {
    values_sql("", "?", n)
}

/// Claimed steps from the rows returned by a claiming `UPDATE ... RETURNING`; policies are filled
/// in afterwards.
/// Claimed steps with their activation count and policy overrides (JSON).
fn steps_of(
    rows: &[SqliteRow],
    assigned_at: Micros,
) -> Result<Vec<(ClaimedStep, i64, Option<String>)>> {
    rows.iter()
        .map(|r| {
            let activations: i64 = r.try_get(9)?;
            let attempt = u32_of(r.try_get(7)?)?;
            let step = ClaimedStep {
                step_id: r.try_get(0)?,
                run_id: r.try_get(1)?,
                task: r.try_get(2)?,
                deployment: r.try_get(3)?,
                version: r.try_get(4)?,
                digest: r.try_get(5)?,
                input: json_of(r.try_get(6)?)?,
                attempt,
                policy: Policy::default(),
                created_at: r.try_get(8)?,
                assigned_at,
                resume: Vec::new(),
                resume_attempt: attempt,
            };
            Ok((step, activations, r.try_get(10)?))
        })
        .collect()
}

fn deployment_of(r: &SqliteRow) -> Result<Deployment> {
    Ok(Deployment {
        name: r.try_get(0)?,
        version: r.try_get(1)?,
        digest: r.try_get(2)?,
        policy: parse_policy(&r.try_get::<String, _>(3)?)?,
        created_at: r.try_get(4)?,
        kind: match r.try_get::<String, _>(5)?.as_str() {
            "dag" => DeploymentKind::Dag,
            _ => DeploymentKind::Component,
        },
    })
}

fn parse_policy(text: &str) -> Result<Policy> {
    serde_json::from_str(text)
        .with_context(|| format!("stored deployment policy is not valid: {text}"))
}

fn status_of(text: String) -> Result<Status> {
    text.parse()
}

fn json_of(text: String) -> Result<Value> {
    serde_json::from_str(&text).with_context(|| format!("stored JSON value is not valid: {text}"))
}

fn opt_json(text: Option<String>) -> Result<Option<Value>> {
    text.map(json_of).transpose()
}

fn u32_of(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow!("stored count {n} is out of range"))
}
