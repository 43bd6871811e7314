//! The SQLite backend of [`Store`]: one database file in WAL mode, shared by every `hypergraph`
//! process that opens it.
//!
//! # Connections and locking
//!
//! A [`SqliteStore`] holds two kinds of connections on the same file:
//! - one **writer**: a synchronous rusqlite connection behind an async mutex. Every write runs in
//!   one transaction opened with `BEGIN IMMEDIATE`, so it takes SQLite's write lock up front and
//!   never has to upgrade a read snapshot to a write lock (the upgrade is what makes concurrent
//!   SQLite writers fail with `SQLITE_BUSY` instead of waiting). Inside one process writers queue
//!   on the mutex; across processes they wait on the lock for up to [`BUSY_TIMEOUT`]. A whole
//!   transaction runs synchronously, without a thread hop per statement: with sqlx's SQLite
//!   driver each statement cost a round trip to the connection's thread (about 50 µs here), which
//!   made a commit of ten statements cost a millisecond; on this connection it costs a few tens of
//!   microseconds (see `BENCHMARKS.md`). It runs on the calling task's thread: that is cheaper
//!   than handing it to a blocking thread (`block_in_place` cost a tenth of a millisecond per
//!   workflow step here), at the price of stalling that thread while another process holds the
//!   write lock (one transaction, typically well under a millisecond).
//! - a **reader** pool of [`READERS`] sqlx connections for queries, and synchronous rusqlite
//!   read connections (opened on demand, kept for reuse) for the point reads on the hot path of
//!   workers and workflows (a task's latest deployment, child results, a run's result, a key).
//!   In WAL mode readers see the last committed state and never block the writer, nor are
//!   blocked by it.
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
//! `claim_steps` call for as many steps as the worker has free slots. Statements with nothing to
//! do are not run.
//!
//! The SQL is kept portable (plain types, `ON CONFLICT`, `UPDATE ... RETURNING`) so the
//! PostgreSQL backend can share the schema in `host/migrations`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

use super::location::DbLocation;
use super::{
    now_micros, AttemptDetail, Cancelled, ClaimedStep, CommitOutcome, Completion, Deployment,
    DeploymentKind, JournalRecord, KvListing, KvRead, KvWrite, LogRecord, Micros, NewRun, Policy,
    PolicyOverride, RunDetail, RunFilter, RunLogLine, RunResult, RunSummary, Status, StepDetail,
    StepOutcome, StepQuery, Store, WorkerInfo,
};
use hypergraph_core::limits::max_lost_leases;

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

/// How often claims also apply deadlines (schedule-to-start, run timeouts) and fire timers.
const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// What a claiming `UPDATE` returns, as [`steps_of`] reads it.
const CLAIM_RETURNING: &str = "RETURNING id, run_id, task, deployment, version, digest, input, \
                               attempt, created_at, activations, policy, reruns";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`Store`] backed by one SQLite database file. Cheap to share behind an `Arc`; every method
/// takes `&self`. See the module docs for the locking model.
pub struct SqliteStore {
    writer: tokio::sync::Mutex<Connection>,
    reader: SqlitePool,
    /// The database file, for opening point-read connections.
    path: PathBuf,
    /// Idle point-read connections.
    point_readers: Mutex<Vec<Connection>>,
    /// What was opened, for error messages.
    location: String,
    /// Policies of deployment versions; a version never changes once written.
    policies: Mutex<HashMap<(String, i64), (Policy, DeploymentKind)>>,
    /// When claims next apply deadlines and fire timers (microseconds since the epoch).
    next_sweep: AtomicI64,
    /// The private directory holding an in-memory store's file, removed with the store.
    _private: Option<tempfile::TempDir>,
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
        Self::open_file(path.to_path_buf(), path.display().to_string(), None).await
    }

    /// Opens a database by location: a path, a `sqlite:` URL (see [`DbLocation::parse`]), or
    /// `sqlite::memory:` for a private database that lives as long as the store (kept in a
    /// temporary file, since the writer and the readers are separate connections).
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        Self::open_location(&DbLocation::parse(url)?).await
    }

    /// Opens the database at `location` (see [`SqliteStore::open_url`]).
    pub async fn open_location(location: &DbLocation) -> Result<SqliteStore> {
        match location {
            DbLocation::Sqlite(path) => Self::open(path).await,
            DbLocation::SqliteMemory => {
                let dir =
                    tempfile::tempdir().context("cannot create a private database directory")?;
                let path = dir.path().join("hypergraph.db");
                Self::open_file(path, location.to_string(), Some(dir)).await
            }
        }
    }

    async fn open_file(
        path: PathBuf,
        location: String,
        private: Option<tempfile::TempDir>,
    ) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .statement_cache_capacity(256)
            .pragma("temp_store", "memory");

        // Before anything can change the file (even the switch to WAL rewrites its header):
        // whose database is it?
        if path.exists() {
            let (application_id, tables) = inspect(&path).map_err(|e| {
                anyhow!(
                    "cannot open the SQLite database {location}: {e} (check that the path is a \
                     SQLite database file and that it is readable)"
                )
            })?;
            check_ownership(&location, application_id, &tables)?;
        }

        // Create and migrate on a connection of its own.
        let mut setup = options
            .clone()
            .create_if_missing(true)
            .connect()
            .await
            .map_err(|e| open_error(&location, e))?;
        // A fresh file is not checked until something reads it.
        let application_id: i64 = sqlx::query_scalar("PRAGMA application_id")
            .fetch_one(&mut setup)
            .await
            .map_err(|e| open_error(&location, e))?;
        migrate(&mut setup).await.with_context(|| {
            format!("cannot migrate the database {location} to this version of hypergraph")
        })?;
        if application_id != APPLICATION_ID {
            sqlx::query(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .execute(&mut setup)
                .await
                .with_context(|| format!("cannot mark {location} as a Hypergraph database"))?;
        }
        drop(setup);

        let writer = open_writer(&path)
            .with_context(|| format!("cannot open the SQLite database {location} for writing"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(|e| open_error(&location, e))?;

        Ok(SqliteStore {
            writer: tokio::sync::Mutex::new(writer),
            reader,
            path,
            point_readers: Mutex::new(Vec::new()),
            location,
            policies: Mutex::new(HashMap::new()),
            next_sweep: AtomicI64::new(0),
            _private: private,
        })
    }

    /// What this store was opened from (a path or URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes the read connections and checkpoints the write-ahead log into the database file,
    /// so that after a clean exit the file alone holds everything (it can be copied). Another
    /// process still using the database may keep part of the log; `hypergraph db backup`
    /// copies a live database safely.
    pub async fn close(&self) -> Result<()> {
        self.reader.close().await;
        self.point_readers.lock().expect("readers").clear();
        let writer = self.writer.lock().await;
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .with_context(|| format!("cannot checkpoint the database {}", self.location))?;
        Ok(())
    }

    /// Copies the database, as of one moment, into a new file at `to` with SQLite's online
    /// backup, while other processes go on using it. Returns the copy's size in bytes. Fails if
    /// `to` exists.
    pub async fn backup(&self, to: &Path) -> Result<u64> {
        anyhow::ensure!(
            !to.exists(),
            "{} exists already; back up into a new file",
            to.display()
        );
        let source = open_reader(&self.path)
            .with_context(|| format!("cannot open {} to back it up", self.location))?;
        let target = to.to_path_buf();
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let partial = target.with_extension("partial");
            let mut copy = Connection::open(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            {
                let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
                // All pages in one step: one read snapshot, which in WAL mode never blocks the
                // writers.
                backup
                    .step(-1)
                    .with_context(|| format!("cannot back up {location}"))?;
            }
            copy.pragma_update(None, "journal_mode", "delete")?;
            drop(copy);
            std::fs::rename(&partial, &target)
                .with_context(|| format!("cannot move the backup to {}", target.display()))?;
            Ok(std::fs::metadata(&target)?.len())
        })
        .await
        .context("the backup task failed")?
    }

    /// Runs `work` in one write transaction holding SQLite's write lock (see the module docs),
    /// committing when it succeeds and rolling back when it fails. `what` names the operation in
    /// errors.
    async fn write<T>(
        &self,
        what: impl FnOnce() -> String,
        work: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock().await;
        let result: Result<T> = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .with_context(|| {
                    format!("cannot start a write transaction on {}", self.location)
                })?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.with_context(what)
    }

    /// Runs the point read `work` on an idle read connection (opening one when none is idle).
    /// `what` names the read in errors.
    fn read<T>(
        &self,
        what: impl FnOnce() -> String,
        work: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let idle = self.point_readers.lock().expect("readers").pop();
        let result = (|| {
            let conn = match idle {
                Some(conn) => conn,
                None => open_reader(&self.path)?,
            };
            let value = work(&conn);
            if value.is_ok() {
                self.point_readers.lock().expect("readers").push(conn);
            }
            value
        })();
        result.with_context(what)
    }

    /// Claims up to `max` steps inside the caller's write transaction (see
    /// [`Store::claim_steps`]); every [`SWEEP_INTERVAL`] it first applies deadlines and fires
    /// timers.
    fn claim(
        &self,
        conn: &Connection,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let now = now_micros();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let sweep = self.next_sweep.load(Ordering::Relaxed) <= now;
        if sweep {
            self.next_sweep.store(
                super::micros_after(now, SWEEP_INTERVAL.as_millis() as u64),
                Ordering::Relaxed,
            );
        }

        if sweep {
            workflow::expire(conn, now)?;
            // Timers and event timeouts that have passed end their steps' waits.
            conn.prepare_cached(
                "UPDATE steps SET wait = NULL, wait_event = NULL \
                 WHERE wait IN ('timer', 'event') AND wake_at <= ?",
            )?
            .execute([now])?;
        }
        // Steps whose worker died come first: they are the oldest work, and a queue that never
        // runs dry must not starve them.
        let mut claimed = self.reclaim_expired(conn, worker_id, max, now, lease_until)?;
        if claimed.len() < max {
            // The subquery and the update are one statement under the write lock: nobody else
            // can claim the same rows in between. A resumed workflow continues its attempt, and
            // so does a step re-executed after a key-value conflict; anything else starts a new
            // one.
            let queued = steps_of(
                conn,
                &format!(
                    "UPDATE steps SET status = 'running', \
                     attempt = CASE WHEN activations > 0 OR rerun = 1 THEN attempt \
                     ELSE attempt + 1 END, rerun = 0, \
                     worker_id = ?1, assigned_at = ?2, started_at = NULL, completed_at = NULL, \
                     wake_at = NULL, start_deadline = NULL, lease_expires_at = ?3 \
                     WHERE id IN (SELECT id FROM steps WHERE status = 'queued' AND wait IS NULL \
                     AND (wake_at IS NULL OR wake_at <= ?2) ORDER BY created_at LIMIT ?4) \
                     {CLAIM_RETURNING}"
                ),
                (worker_id, now, lease_until, (max - claimed.len()) as i64),
                now,
            )?;
            claimed.extend(queued);
        }
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let ids: Vec<&str> = claimed.iter().map(|(s, ..)| s.step_id.as_str()).collect();
        execute_for_ids(conn, &ids, |list| {
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
        })?;
        let mut steps = Vec::with_capacity(claimed.len());
        for (mut step, activations, overrides) in claimed {
            step.policy = self.step_policy(conn, &step.deployment, step.version, overrides)?;
            step.kind = self.policy(conn, &step.deployment, step.version)?.1;
            if activations > 0 {
                (step.resume, step.resume_attempt) = workflow::resume_journal(conn, &step.step_id)?;
            }
            steps.push(step);
        }
        Ok(steps)
    }

    /// Claims up to `max` running steps whose lease expired before `now`, each under a new
    /// attempt (the lost one is recorded as `lease_expired`), in the caller's transaction. A
    /// step that has lost as many leases as its policy's `max_lost_leases` allows is failed
    /// instead (`lease_expired`, saying how many workers it outlived), like any failed step.
    fn reclaim_expired(
        &self,
        conn: &Connection,
        worker_id: &str,
        max: usize,
        now: Micros,
        lease_until: Micros,
    ) -> Result<Vec<(ClaimedStep, i64, Option<String>)>> {
        type Expired = (
            String,
            u32,
            u32,
            String,
            i64,
            Option<String>,
            String,
            Option<String>,
        );
        let expired: Vec<Expired> = conn
            .prepare_cached(
                "SELECT id, attempt, lost_leases, deployment, version, policy, run_id, worker_id \
                 FROM steps WHERE status = 'running' AND lease_expires_at < ? \
                 ORDER BY lease_expires_at LIMIT ?",
            )?
            .query_map((now, max as i64), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let mut outlived = Vec::new();
        let mut reclaim: Vec<&str> = Vec::new();
        for (id, attempt, lost, deployment, version, overrides, run_id, worker) in &expired {
            let policy = self.step_policy(conn, deployment, *version, overrides.clone())?;
            let lost = lost + 1;
            if lost < max_lost_leases(&policy) {
                reclaim.push(id);
                continue;
            }
            let error = json!({
                "kind": "lease_expired",
                "message": format!(
                    "the step outlived {lost} worker(s): each time, its attempt's lease expired \
                     before it completed (the worker died or stalled); after {lost} lost \
                     lease(s) it is not claimed again (deployment policy max_lost_leases; a step \
                     that always kills its worker would otherwise take every worker down in turn)"
                ),
            });
            outlived.push(Completion {
                step_id: id.clone(),
                attempt: *attempt,
                worker_id: worker.clone().unwrap_or_default(),
                started_at: now,
                completed_at: now,
                status: Status::Failed,
                output: None,
                error: Some(error),
                journal: Vec::new(),
                logs: Vec::new(),
                kv_writes: Vec::new(),
                kv_reads: Vec::new(),
                run_id: run_id.clone(),
                children: Vec::new(),
                wait: None,
                retry_at: None,
            });
        }
        if !outlived.is_empty() {
            let ids: Vec<&str> = outlived.iter().map(|c| c.step_id.as_str()).collect();
            execute_for_ids(conn, &ids, |list| {
                [format!(
                    "UPDATE steps SET lost_leases = lost_leases + 1 WHERE id IN ({list})"
                )]
            })?;
            apply_completions(conn, &encode(&outlived)?)?;
        }
        let lost = json!({
            "kind": "lease_expired",
            "message": "the attempt's lease expired before it completed (its worker died or \
                        stalled); the step was claimed again",
        })
        .to_string();
        let mut claimed = Vec::with_capacity(reclaim.len());
        for chunk in chunks(&reclaim) {
            let list = placeholders(chunk.len());
            let mut params: Vec<&dyn ToSql> = vec![&worker_id, &now, &lease_until];
            params.extend(chunk.iter().map(|id| id as &dyn ToSql));
            let stepped = steps_of(
                conn,
                &format!(
                    "UPDATE steps SET status = 'running', attempt = attempt + 1, rerun = 0, \
                     lost_leases = lost_leases + 1, worker_id = ?, assigned_at = ?, \
                     started_at = NULL, lease_expires_at = ? WHERE id IN ({list}) \
                     {CLAIM_RETURNING}"
                ),
                params.as_slice(),
                now,
            )?;
            for (step, ..) in &stepped {
                conn.prepare_cached(
                    "UPDATE attempts SET status = 'failed', completed_at = ?, error = ? \
                     WHERE step_id = ? AND attempt = ? AND status = 'running'",
                )?
                .execute((now, &lost, &step.step_id, step.attempt - 1))?;
            }
            claimed.extend(stepped);
        }
        Ok(claimed)
    }

    /// The policy of a step: its deployment version's, overlaid with the step's own overrides
    /// (JSON, a DAG step's `[step.policy]`).
    fn step_policy(
        &self,
        conn: &Connection,
        deployment: &str,
        version: i64,
        overrides: Option<String>,
    ) -> Result<Policy> {
        let (policy, _) = self.policy(conn, deployment, version)?;
        let Some(overrides) = overrides else {
            return Ok(policy);
        };
        let overrides: PolicyOverride = serde_json::from_str(&overrides)
            .with_context(|| format!("stored step policy is not valid: {overrides}"))?;
        Ok(policy.overlaid(&overrides))
    }

    /// The policy and kind of a deployment version, from the cache or the database.
    fn policy(
        &self,
        conn: &Connection,
        deployment: &str,
        version: i64,
    ) -> Result<(Policy, DeploymentKind)> {
        let key = (deployment.to_string(), version);
        if let Some(p) = self.policies.lock().expect("policy cache").get(&key) {
            return Ok(p.clone());
        }
        let (text, kind): (String, String) = conn
            .prepare_cached("SELECT policy, kind FROM deployments WHERE name = ? AND version = ?")?
            .query_row((deployment, version), |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| anyhow!("deployment `{deployment}` version {version} does not exist"))?;
        let found = (parse_policy(&text)?, kind_of(&kind));
        self.policies
            .lock()
            .expect("policy cache")
            .insert(key, found.clone());
        Ok(found)
    }
}

/// Opens a rusqlite connection on an existing (migrated) database file with `flags`, waiting
/// up to [`BUSY_TIMEOUT`] for locks and caching up to `statements` prepared statements.
fn open_connection(path: &Path, flags: OpenFlags, statements: usize) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(statements);
    Ok(conn)
}

/// Opens the writing connection on an existing (migrated) database file.
fn open_writer(path: &Path) -> Result<Connection> {
    let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE, 256)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.pragma_update(None, "temp_store", "memory")?;
    Ok(conn)
}

/// Opens a point-read connection on an existing database file.
fn open_reader(path: &Path) -> Result<Connection> {
    open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY, 64)
}

/// Runs the migrations, retrying when another process is migrating the same file at the same
/// moment (SQLite has no advisory lock, so both may try to apply a migration; the loser fails and
/// on retry finds it applied).
async fn migrate(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let mut tries = 0;
    loop {
        match MIGRATOR.run(&mut *conn).await {
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
        self.write(
            || format!("cannot store component {digest}"),
            |conn| {
                conn.prepare_cached(
                    "INSERT INTO components (digest, bytes, size, created_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (digest) DO NOTHING",
                )?
                .execute((digest, bytes, bytes.len() as i64, now_micros()))?;
                Ok(())
            },
        )
        .await
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
        self.write(|| format!("cannot deploy `{name}`"), |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM components WHERE digest = ?")?
                .exists([digest])?;
            if !exists {
                bail!("component {digest} is not stored; store it (put_component) before deploying it");
            }
            let latest = latest_deployment(conn, name)?;
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
            conn.prepare_cached(
                "INSERT INTO deployments (name, version, digest, policy, created_at, kind) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute((
                &deployment.name,
                deployment.version,
                &deployment.digest,
                &policy_json,
                deployment.created_at,
                kind.as_str(),
            ))?;
            Ok(deployment)
        })
        .await
    }

    async fn latest_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        self.read(
            || format!("cannot read deployment `{name}`"),
            |conn| latest_deployment(conn, name),
        )
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
        self.write(|| format!("cannot submit {} run(s)", runs.len()), |conn| {
            // Every run must pin an existing deployment version and that version's component.
            for (name, version, digest) in versions {
                let deployed: Option<String> = conn
                    .prepare_cached("SELECT digest FROM deployments WHERE name = ? AND version = ?")?
                    .query_row((name, version), |r| r.get(0))
                    .optional()?;
                let Some(deployed) = deployed else {
                    bail!("deployment `{name}` version {version} does not exist");
                };
                if deployed != digest {
                    bail!(
                        "a run pins component {digest}, but deployment `{name}` version {version} \
                         is component {deployed}"
                    );
                }
            }
            let rows: Vec<(&NewRun, &String)> = runs.iter().zip(&inputs).collect();
            insert_rows(
                conn,
                "INSERT INTO runs (id, task, deployment, version, digest, input, status, created_at, \
                 deadline) VALUES ",
                "(?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                &rows,
                |(r, input)| {
                    vec![&r.id, &r.task, &r.deployment, &r.version, &r.digest, *input, &r.created_at, &r.deadline]
                },
            )?;
            insert_rows(
                conn,
                "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, status, \
                 attempt, created_at, start_deadline) VALUES ",
                "(?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?)",
                &rows,
                |(r, input)| {
                    vec![
                        &r.step_id, &r.id, &r.task, &r.deployment, &r.version, &r.digest, *input,
                        &r.created_at, &r.start_deadline,
                    ]
                },
            )?;
            let meta: Vec<(&String, &String, &String)> = runs
                .iter()
                .flat_map(|r| r.meta.iter().map(move |(k, v)| (&r.id, k, v)))
                .collect();
            insert_rows(
                conn,
                "INSERT INTO run_meta (run_id, key, value) VALUES ",
                "(?, ?, ?)",
                &meta,
                |(run, k, v)| vec![*run, *k, *v],
            )?;
            Ok(())
        })
        .await
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
        self.write(
            || "cannot claim steps".to_string(),
            |conn| self.claim(conn, worker_id, max, lease),
        )
        .await
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
        self.write(
            || "cannot renew leases".to_string(),
            |conn| {
                for chunk in chunks(steps) {
                    let sql = values_sql(
                        "UPDATE steps SET lease_expires_at = ? FROM (VALUES ",
                        "(?, ?)",
                        chunk.len(),
                    )
                        + ") AS v WHERE steps.id = v.column1 AND steps.attempt = v.column2 \
                     AND steps.worker_id = ? AND steps.status = 'running'";
                    let mut params: Vec<&dyn ToSql> = vec![&until];
                    for (step_id, attempt) in chunk {
                        params.push(step_id);
                        params.push(attempt);
                    }
                    params.push(&worker_id);
                    conn.prepare_cached(&sql)?.execute(params.as_slice())?;
                }
                Ok(())
            },
        )
        .await
    }

    async fn complete_steps(&self, completions: &[Completion]) -> Result<Vec<CommitOutcome>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = encode(completions)?;

        self.write(
            || format!("cannot commit {} completion(s)", completions.len()),
            |conn| apply_completions(conn, &encoded),
        )
        .await
    }

    async fn complete_and_claim(
        &self,
        completions: &[Completion],
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<CommitOutcome>, Vec<ClaimedStep>)> {
        let encoded = encode(completions)?;
        self.write(
            || format!("cannot commit {} completion(s)", completions.len()),
            |conn| {
                let outcomes = apply_completions(conn, &encoded)?;
                let claimed = if max > 0 {
                    self.claim(conn, worker_id, max, lease)?
                } else {
                    Vec::new()
                };
                Ok((outcomes, claimed))
            },
        )
        .await
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

    async fn run_view(&self, id: &str, query: &StepQuery) -> Result<Option<RunDetail>> {
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
            const SHOWN_STATUS: &str =
                "CASE WHEN status = 'queued' AND wait IS NOT NULL THEN 'waiting' ELSE status END";
            let mut step_counts = Vec::new();
            for r in sqlx::query(&format!(
                "SELECT {SHOWN_STATUS}, COUNT(*) FROM steps WHERE run_id = ? GROUP BY 1"
            ))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            {
                step_counts.push((status_of(r.try_get(0)?)?, r.try_get::<i64, _>(1)? as u64));
            }
            step_counts.sort_by_key(|(status, _)| Status::ALL.iter().position(|s| s == status));
            let limit = if query.limit == 0 {
                -1
            } else {
                i64::from(query.limit)
            };
            // The root step (no parent) first, then the others in creation order.
            let steps = sqlx::query(&format!(
                "SELECT id, task, {SHOWN_STATUS}, attempt, worker_id, digest, input, output, \
                 error, created_at, assigned_at, started_at, completed_at, parent_id, \
                 child_index, name, lease_expires_at, wake_at, lost_leases FROM steps \
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
            let mut attempts: HashMap<String, Vec<AttemptDetail>> = HashMap::new();
            for chunk in chunks(&ids) {
                let sql = format!(
                    "SELECT a.step_id, a.attempt, a.status, a.worker_id, a.assigned_at, \
                     a.started_at, a.completed_at, a.error, \
                     (SELECT COUNT(*) FROM journal j WHERE j.step_id = a.step_id \
                     AND j.attempt = a.attempt), \
                     (SELECT COUNT(*) FROM logs l WHERE l.step_id = a.step_id \
                     AND l.attempt = a.attempt), a.reruns \
                     FROM attempts a WHERE a.step_id IN ({}) ORDER BY a.step_id, a.attempt",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for step_id in chunk {
                    q = q.bind(step_id);
                }
                for r in q.fetch_all(&mut *tx).await? {
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
                            reruns: u32_of(r.try_get(10)?)?,
                        });
                }
            }
            let steps = steps
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
                        child_index: r.try_get::<Option<i64>, _>(14)?.map(u32_of).transpose()?,
                        name: r.try_get(15)?,
                        lease_expires_at: r.try_get(16)?,
                        wake_at: r.try_get(17)?,
                        lost_leases: u32_of(r.try_get(18)?)?,
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
                step_counts,
            }))
        }
        .await
        .with_context(|| format!("cannot read run {id}"));
        // Read-only: ending the transaction without commit releases the snapshot.
        let _ = tx.rollback().await;
        detail
    }

    async fn run_result(&self, id: &str) -> Result<Option<RunResult>> {
        self.read(
            || format!("cannot read run {id}"),
            |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT r.id, r.task, r.status, r.output, r.error, r.created_at, r.completed_at, \
                     (SELECT COALESCE(SUM(attempt), 0) FROM steps WHERE run_id = r.id), \
                     s.assigned_at, s.started_at, s.completed_at \
                     FROM runs r LEFT JOIN steps s ON s.id = \
                     (SELECT id FROM steps WHERE run_id = r.id ORDER BY created_at, id LIMIT 1) \
                     WHERE r.id = ?",
                )?;
                let mut rows = stmt.query([id])?;
                let Some(r) = rows.next()? else {
                    return Ok(None);
                };
                let created_at: Micros = r.get(5)?;
                let assigned_at: Option<Micros> = r.get(8)?;
                let started_at: Option<Micros> = r.get(9)?;
                let step_completed_at: Option<Micros> = r.get(10)?;
                let span = |from: Option<Micros>, to: Option<Micros>| match (from, to) {
                    (Some(a), Some(b)) if b >= a => Some(b - a),
                    _ => None,
                };
                Ok(Some(RunResult {
                    id: r.get(0)?,
                    task: r.get(1)?,
                    status: status_of(r.get(2)?)?,
                    output: opt_json(r.get(3)?)?,
                    error: opt_json(r.get(4)?)?,
                    created_at,
                    completed_at: r.get(6)?,
                    attempts: u32_of(r.get(7)?)?,
                    queue_us: span(Some(created_at), assigned_at),
                    execution_us: span(started_at, step_completed_at),
                }))
            },
        )
    }

    async fn kv_get(&self, scope: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        self.read(
            || format!("cannot read key `{key}`"),
            |conn| {
                Ok(conn
                    .prepare_cached("SELECT value, version FROM kv WHERE scope = ? AND key = ?")?
                    .query_row([scope, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            },
        )
    }

    async fn kv_list(&self, scope: &str, prefix: &str, limit: u32) -> Result<KvListing> {
        self.read(
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
        self.read(
            || "cannot read step results".to_string(),
            |conn| workflow::step_outcomes(conn, ids),
        )
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
        self.write(
            || format!("cannot send event `{name}`"),
            |conn| workflow::send_event(conn, name, payload),
        )
        .await
    }

    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>> {
        self.write(
            || format!("cannot cancel run {id}"),
            |conn| workflow::cancel_run(conn, id),
        )
        .await
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
        self.write(
            || format!("cannot resume run {id}"),
            |conn| workflow::resume_run(conn, id, pins),
        )
        .await
    }

    async fn close(&self) -> Result<()> {
        SqliteStore::close(self).await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        self.write(
            || format!("cannot register worker {}", worker.id),
            |conn| {
                conn.prepare_cached(
                    "INSERT INTO workers (id, host, pid, version, started_at, last_seen_at) \
                     VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
                     version = excluded.version, started_at = excluded.started_at, \
                     last_seen_at = excluded.last_seen_at",
                )?
                .execute((
                    &worker.id,
                    &worker.host,
                    worker.pid,
                    &worker.version,
                    worker.started_at,
                    now_micros(),
                ))?;
                Ok(())
            },
        )
        .await
    }
}

/// A completion with its JSON values serialized.
struct Encoded<'a> {
    c: &'a Completion,
    output: Option<String>,
    error: Option<String>,
}

/// Checks `completions` and serializes their JSON values.
fn encode(completions: &[Completion]) -> Result<Vec<Encoded<'_>>> {
    completions
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
            if c.status != Status::Running && !COMPLETION_STATUSES.contains(&c.status) {
                bail!(
                    "a completion must be running (a suspension or a checkpoint), succeeded, \
                     failed or cancelled, not {} (step {} attempt {})",
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
        .collect()
}

/// Applies `encoded` completions in order inside the caller's transaction; see
/// [`Store::complete_steps`].
fn apply_completions(conn: &Connection, encoded: &[Encoded<'_>]) -> Result<Vec<CommitOutcome>> {
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
                apply_kv_writes(conn, &e.c.kv_writes)?;
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
    workflow::insert_children(conn, &committed_completions)?;
    workflow::settle_waits(conn, &committed_completions)?;
    let finished: Vec<&str> = committed_completions
        .iter()
        .filter(|c| c.ends_step())
        .map(|c| c.step_id.as_str())
        .collect();
    workflow::wake_parents(conn, &finished)?;
    workflow::cancel_abandoned(conn, &finished)?;

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
fn kv_conflict(conn: &Connection, reads: &[KvRead]) -> Result<bool> {
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
fn requeue_conflicted(conn: &Connection, c: &Completion) -> Result<CommitOutcome> {
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
fn apply_kv_writes(conn: &Connection, writes: &[KvWrite]) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let stamp: i64 = conn
        .prepare_cached("UPDATE kv_clock SET stamp = stamp + 1 WHERE id = 1 RETURNING stamp")?
        .query_row([], |r| r.get(0))?;
    let now = now_micros();
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
fn fenced_outcome(conn: &Connection, step_id: &str) -> Result<CommitOutcome> {
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
fn fence_and_complete(conn: &Connection, chunk: &[&Encoded<'_>]) -> Result<Vec<String>> {
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
            let (status, wait, wait_event, wake_at) = workflow::step_state(e.c);
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

/// The `application_id` of a Hypergraph database ("HGPH"), set when it is created, so that a
/// database of another application is never mistaken for one (and never migrated).
pub const APPLICATION_ID: i64 = 0x4847_5048;

/// The `application_id` and table names of the database file at `path`, read without
/// changing it.
fn inspect(path: &Path) -> rusqlite::Result<(i64, Vec<String>)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let application_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((application_id, tables))
}

/// Refuses a database that is not Hypergraph's: one marked by another application, or one
/// holding tables that are not Hypergraph's. An empty database, or one created by an earlier
/// version (which did not mark it), is accepted.
fn check_ownership(location: &str, application_id: i64, tables: &[String]) -> Result<()> {
    if application_id == APPLICATION_ID {
        return Ok(());
    }
    if application_id != 0 {
        bail!(
            "{location} is not a Hypergraph database: it belongs to another application \
             (application_id {application_id:#x}); point --db at a Hypergraph database or a new file"
        );
    }
    let earlier_hypergraph = ["_sqlx_migrations", "runs", "steps", "deployments"]
        .iter()
        .all(|t| tables.iter().any(|name| name == t));
    if tables.is_empty() || earlier_hypergraph {
        return Ok(());
    }
    let mut listed: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
    if tables.len() > listed.len() {
        listed.push("...");
    }
    bail!(
        "{location} is not a Hypergraph database: it holds other tables ({}); hypergraph leaves \
         it untouched. Point --db at a Hypergraph database or a new file",
        listed.join(", ")
    )
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

/// Inserts `rows` with multi-row `prefix row, row, ...` statements (chunked to stay under SQLite's
/// bound-parameter limit), binding each row's values as `bind` lists them.
fn insert_rows<'a, T>(
    conn: &Connection,
    prefix: &str,
    row: &str,
    rows: &'a [T],
    bind: impl Fn(&'a T) -> Vec<&'a dyn ToSql>,
) -> Result<()> {
    for chunk in chunks(rows) {
        let sql = values_sql(prefix, row, chunk.len());
        let params: Vec<&dyn ToSql> = chunk.iter().flat_map(&bind).collect();
        conn.prepare_cached(&sql)?.execute(params.as_slice())?;
    }
    Ok(())
}

/// Runs the statements `sql(list)` for each chunk of `ids`, where `list` is the chunk's `?, ?, ...`
/// placeholder list and every statement binds exactly the chunk's ids. Nothing runs for no ids.
fn execute_for_ids<const N: usize>(
    conn: &Connection,
    ids: &[&str],
    sql: impl Fn(&str) -> [String; N],
) -> Result<()> {
    for chunk in chunks(ids) {
        for statement in sql(&placeholders(chunk.len())) {
            conn.prepare_cached(&statement)?
                .execute(rusqlite::params_from_iter(chunk))?;
        }
    }
    Ok(())
}

/// `prefix` followed by `rows` copies of `row`, comma-separated.
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

/// Runs a claiming `UPDATE ... RETURNING` and reads the claimed steps (policies and kinds are filled in
/// afterwards), each with its activation count and policy overrides (JSON).
fn steps_of(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    assigned_at: Micros,
) -> Result<Vec<(ClaimedStep, i64, Option<String>)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, u32>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, i64>(9)?,
            r.get::<_, Option<String>>(10)?,
            r.get::<_, u32>(11)?,
        ))
    })?;
    let mut steps = Vec::new();
    for row in rows {
        let (
            step_id,
            run_id,
            task,
            deployment,
            version,
            digest,
            input,
            attempt,
            created_at,
            activations,
            overrides,
            reruns,
        ) = row?;
        let step = ClaimedStep {
            step_id,
            run_id,
            task,
            deployment,
            version,
            digest,
            kind: DeploymentKind::Component,
            input: json_of(input)?,
            attempt,
            policy: Policy::default(),
            created_at,
            assigned_at,
            resume: Vec::new(),
            resume_attempt: attempt,
            reruns,
        };
        steps.push((step, activations, overrides));
    }
    steps.sort_by(|(a, ..), (b, ..)| (a.created_at, &a.step_id).cmp(&(b.created_at, &b.step_id)));
    Ok(steps)
}

fn deployment_of(r: &SqliteRow) -> Result<Deployment> {
    deployment_from(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        &r.try_get::<String, _>(3)?,
        r.try_get(4)?,
        &r.try_get::<String, _>(5)?,
    )
}

/// The newest version of deployment `name`, read on `conn`.
fn latest_deployment(conn: &Connection, name: &str) -> Result<Option<Deployment>> {
    conn.prepare_cached(
        "SELECT name, version, digest, policy, created_at, kind FROM deployments \
         WHERE name = ? ORDER BY version DESC LIMIT 1",
    )?
    .query_row([name], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get::<_, String>(3)?,
            r.get(4)?,
            r.get::<_, String>(5)?,
        ))
    })
    .optional()?
    .map(|(name, version, digest, policy, created_at, kind)| {
        deployment_from(name, version, digest, &policy, created_at, &kind)
    })
    .transpose()
}

fn deployment_from(
    name: String,
    version: i64,
    digest: String,
    policy: &str,
    created_at: Micros,
    kind: &str,
) -> Result<Deployment> {
    Ok(Deployment {
        name,
        version,
        digest,
        policy: parse_policy(policy)?,
        created_at,
        kind: kind_of(kind),
    })
}

/// The deployment kind stored as `kind`.
fn kind_of(kind: &str) -> DeploymentKind {
    match kind {
        "dag" => DeploymentKind::Dag,
        _ => DeploymentKind::Component,
    }
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
