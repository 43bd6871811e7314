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
//! PostgreSQL backend can share the schema in `crates/store/migrations`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

use super::location::DbLocation;
use super::{
    AttemptDetail, Cancelled, ClaimedStep, CommitOutcome, Completion, Deployment, DeploymentKind,
    JournalRecord, KvListing, KvRead, KvWrite, LogRecord, Micros, NewRun, Policy, RunDetail,
    RunFilter, RunLogLine, RunResult, RunSummary, Status, StepDetail, StepOutcome, StepQuery,
    Store, WorkerInfo,
};
use hypergraph_core::time::{Clock, SystemClock};

mod claim;
mod commit;
mod sql;
mod workflow;

use commit::{apply_completions, encode};
use sql::*;

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
    /// Where every timestamp this store writes and every deadline it checks comes from.
    clock: Arc<dyn Clock>,
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
        Self::open_with_clock(path, Arc::new(SystemClock)).await
    }

    /// [`SqliteStore::open`] with the time read from `clock` instead of the system clock: every
    /// timestamp the store writes (claims, leases, completions of deadlines and cancellations,
    /// events, deployments, key-value updates, worker registrations) and every comparison with
    /// "now" (expired leases, deadlines, timers, backoff) uses `clock.now()`.
    pub async fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!(
                    "cannot create directory {} for the database {}",
                    parent.display(),
                    path.display()
                )
            })?;
        }
        Self::open_file(path.to_path_buf(), path.display().to_string(), None, clock).await
    }

    /// Opens a database by location: a path, a `sqlite:` URL (see [`DbLocation::parse`]), or
    /// `sqlite::memory:` for a private database that lives as long as the store (kept in a
    /// temporary file, since the writer and the readers are separate connections).
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        Self::open_location(&DbLocation::parse(url)?).await
    }

    /// Opens the database at `location` (see [`SqliteStore::open_url`]).
    pub async fn open_location(location: &DbLocation) -> Result<SqliteStore> {
        Self::open_location_with_clock(location, Arc::new(SystemClock)).await
    }

    /// [`SqliteStore::open_location`] with the time read from `clock` (see
    /// [`SqliteStore::open_with_clock`]).
    pub async fn open_location_with_clock(
        location: &DbLocation,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteStore> {
        match location {
            DbLocation::Sqlite(path) => Self::open_with_clock(path, clock).await,
            DbLocation::SqliteMemory => {
                let dir =
                    tempfile::tempdir().context("cannot create a private database directory")?;
                let path = dir.path().join("hypergraph.db");
                Self::open_file(path, location.to_string(), Some(dir), clock).await
            }
            DbLocation::Postgres(_) => {
                bail!("{location} is a PostgreSQL database, not a SQLite one")
            }
        }
    }

    async fn open_file(
        path: PathBuf,
        location: String,
        private: Option<tempfile::TempDir>,
        clock: Arc<dyn Clock>,
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
        setup(&options, &location).await?;

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
            next_sweep: AtomicI64::new(i64::MIN),
            clock,
            _private: private,
        })
    }

    /// The clock this store reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
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

    /// The policy of a step: its deployment version's, overlaid with the step's own overrides
    /// (JSON, a DAG step's `[step.policy]`), and the deployment's kind.
    fn step_policy(
        &self,
        conn: &Connection,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)> {
        let (policy, kind) = self.policy(conn, deployment, version)?;
        let Some(overrides) = overrides else {
            return Ok((policy, kind));
        };
        let overrides: Policy = serde_json::from_str(overrides)
            .with_context(|| format!("stored step policy is not valid: {overrides}"))?;
        Ok((policy.overlaid(&overrides), kind))
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
        let found = (parse_policy(&text)?, sql::kind_of(&kind));
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

/// Creates the database file if it is missing, migrates it and marks it as Hypergraph's, on a
/// connection of its own. Processes opening a new file at the same moment race to create it and
/// switch it to WAL; SQLite answers some of those races with `SQLITE_BUSY` at once instead of
/// calling the busy handler (it would deadlock otherwise), so a busy or locked answer is retried
/// for up to [`BUSY_TIMEOUT`] before it is reported.
async fn setup(options: &SqliteConnectOptions, location: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match setup_once(options, location).await {
            Err(SetupError::Busy(e)) if std::time::Instant::now() < deadline => {
                tracing::debug!(%location, error = %e, "database busy while opening; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(SetupError::Busy(e)) => return Err(open_error(location, e)),
            Err(SetupError::Other(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

/// Why one [`setup`] attempt failed: busy (retried) or anything else (reported).
enum SetupError {
    Busy(sqlx::Error),
    Other(anyhow::Error),
}

/// Maps a connection error to [`SetupError`].
fn setup_error(location: &str, e: sqlx::Error) -> SetupError {
    if is_busy(&e) {
        SetupError::Busy(e)
    } else {
        SetupError::Other(open_error(location, e))
    }
}

/// One attempt of [`setup`].
async fn setup_once(
    options: &SqliteConnectOptions,
    location: &str,
) -> std::result::Result<(), SetupError> {
    let mut conn = options
        .clone()
        .create_if_missing(true)
        .connect()
        .await
        .map_err(|e| setup_error(location, e))?;
    // A fresh file is not checked until something reads it.
    let application_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| setup_error(location, e))?;
    migrate(&mut conn).await.map_err(|e| {
        SetupError::Other(e.context(format!(
            "cannot migrate the database {location} to this version of hypergraph"
        )))
    })?;
    if application_id != APPLICATION_ID {
        sqlx::query(&format!("PRAGMA application_id = {APPLICATION_ID}"))
            .execute(&mut conn)
            .await
            .map_err(|e| match setup_error(location, e) {
                SetupError::Other(e) => SetupError::Other(
                    e.context(format!("cannot mark {location} as a Hypergraph database")),
                ),
                busy => busy,
            })?;
    }
    Ok(())
}

/// Whether SQLite answered `SQLITE_BUSY` or `SQLITE_LOCKED` (primary result codes 5 and 6).
fn is_busy(error: &sqlx::Error) -> bool {
    sqlite_code(error).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// The SQLite result code of a database error.
fn sqlite_code(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    }
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
                .execute((digest, bytes, bytes.len() as i64, self.clock.now()))?;
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
                created_at: self.clock.now(),
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
        let until = self
            .clock
            .now()
            .saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
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
            |conn| apply_completions(conn, &encoded, self.clock.now()),
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
                let outcomes = apply_completions(conn, &encoded, self.clock.now())?;
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
            |conn| workflow::send_event(conn, name, payload, self.clock.now()),
        )
        .await
    }

    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>> {
        self.write(
            || format!("cannot cancel run {id}"),
            |conn| workflow::cancel_run(conn, id, self.clock.now()),
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
                    self.clock.now(),
                ))?;
                Ok(())
            },
        )
        .await
    }
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
    let code = sqlite_code(&error);
    let message = match &error {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
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
