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
//! Connections use `journal_mode=WAL` and `foreign_keys=ON`. The writer runs with
//! `synchronous=FULL` by default ([`Durability::Strict`]): the WAL is synced at every commit, so
//! an acknowledged commit survives a power loss; group commit (many completions per transaction)
//! keeps the cost to one sync per batch. With [`Durability::Relaxed`] it runs with
//! `synchronous=NORMAL`: a commit is atomic and survives a crash of the process; a power loss may
//! roll back the last few commits but never leaves a half-written one.
//!
//! # Decisions
//!
//! Every write that decides something (claims, commits, cancellation, resume, events) runs a
//! [`crate::decide`] function inside one write transaction (`SqliteStore::write`), on the
//! [`decide::Tx`] primitives of `tx::SqliteTx`: the SQL lives here, the decisions there. The
//! primitives are synchronous rusqlite calls, so `decided` drives a decision with a single poll.
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
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use super::location::DbLocation;
use super::{
    Cancelled, ClaimedStep, CommitOutcome, Completion, Deployment, DeploymentKind, JournalRecord,
    KvListing, KvWrite, Micros, NewChild, NewRun, Policy, RunDetail, RunFilter, RunLogLine,
    RunResult, RunSummary, Status, StepOutcome, StepQuery, Store, WorkerInfo, WorkerView,
};
use crate::decide::{self, claim::Sweeper};
use crate::options::{Durability, OpenOptions};
use hypergraph_core::time::{Clock, SystemClock};

mod open;
mod read;
mod sql;
mod tx;
mod workers;

use open::open_reader;
pub use open::{schema_version, APPLICATION_ID};
use sql::*;
use tx::SqliteTx;

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
    /// When claims next apply deadlines and fire timers.
    sweeper: Sweeper,
    /// Where every timestamp this store writes and every deadline it checks comes from.
    clock: Arc<dyn Clock>,
    /// What an acknowledged commit survives.
    durability: Durability,
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
    /// The clock this store reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// What this store was opened from (a path or URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What an acknowledged commit of this store survives.
    pub fn durability(&self) -> Durability {
        self.durability
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

    /// A read-only connection of its own on the database file, for reads that hold one snapshot
    /// for long (`db copy` reads the whole database in one read transaction).
    pub(crate) fn reader_connection(&self) -> Result<Connection> {
        open_reader(&self.path)
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
        let source = self
            .reader_connection()
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

    /// The [`decide::Tx`] primitives on `conn`, the writer inside a transaction of
    /// [`SqliteStore::write`].
    fn tx<'a>(&'a self, conn: &'a Connection) -> SqliteTx<'a> {
        SqliteTx { store: self, conn }
    }

    /// Claims up to `max` steps for `worker_id` inside the caller's write transaction, each
    /// leased for `lease` from now (see [`decide::claim::claim`]; it sweeps deadlines and timers
    /// first when the [`Sweeper`] says so).
    fn claim(
        &self,
        conn: &Connection,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let sweep = self.sweeper.due(now);
        decided(decide::claim::claim(
            &mut self.tx(conn),
            worker_id,
            max,
            now,
            lease_until,
            sweep,
        ))
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

/// Drives `decision` (a [`crate::decide`] function over a [`SqliteTx`]) to its end with a single
/// poll. The SQLite primitives run synchronously on the writer connection, so their futures,
/// and a decision that awaits only them, are ready when first polled: no runtime, no thread hop,
/// nothing added to the cost of the statements. A decision that is still pending after that
/// poll would be a bug (a primitive that awaits something); it fails, and the caller's
/// transaction rolls back.
fn decided<T>(decision: impl Future<Output = Result<T>>) -> Result<T> {
    match pin!(decision).poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(anyhow!(
            "a store decision suspended on the SQLite writer, whose transaction primitives never \
             await (a bug in hypergraph-store); the transaction was rolled back"
        )),
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
        let encoded = decide::complete::encode(completions)?;
        self.write(
            || format!("cannot commit {} completion(s)", completions.len()),
            |conn| {
                decided(decide::complete::apply(
                    &mut self.tx(conn),
                    &encoded,
                    self.clock.now(),
                ))
            },
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
        let encoded = decide::complete::encode(completions)?;
        self.write(
            || format!("cannot commit {} completion(s)", completions.len()),
            |conn| {
                let outcomes = decided(decide::complete::apply(
                    &mut self.tx(conn),
                    &encoded,
                    self.clock.now(),
                ))?;
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

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        read::component(self, digest).await
    }

    async fn latest_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        read::latest_deployment(self, name).await
    }

    async fn deployment_version(&self, name: &str, version: i64) -> Result<Option<Deployment>> {
        read::deployment_version(self, name, version).await
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        read::deployments(self).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        read::list_runs(self, filter).await
    }

    async fn run_view(&self, id: &str, query: &StepQuery) -> Result<Option<RunDetail>> {
        read::run_view(self, id, query).await
    }

    async fn run_result(&self, id: &str) -> Result<Option<RunResult>> {
        read::run_result(self, id).await
    }

    async fn kv_get(&self, scope: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        read::kv_get(self, scope, key).await
    }

    async fn kv_list(&self, scope: &str, prefix: &str, limit: u32) -> Result<KvListing> {
        read::kv_list(self, scope, prefix, limit).await
    }

    async fn run_status(&self, id: &str) -> Result<Option<Status>> {
        read::run_status(self, id).await
    }

    async fn run_logs(&self, id: &str) -> Result<Vec<RunLogLine>> {
        read::run_logs(self, id).await
    }

    async fn journal(&self, step_id: &str, attempt: u32) -> Result<Vec<JournalRecord>> {
        read::journal(self, step_id, attempt).await
    }

    async fn step_outcomes(&self, ids: &[String]) -> Result<Vec<StepOutcome>> {
        self.read(
            || "cannot read step results".to_string(),
            |conn| read::step_outcomes(conn, ids),
        )
    }

    async fn last_event_seq(&self) -> Result<i64> {
        read::last_event_seq(&self.reader)
            .await
            .context("cannot read events")
    }

    async fn next_event(&self, name: &str, after: i64) -> Result<Option<(i64, String)>> {
        read::next_event(&self.reader, name, after)
            .await
            .with_context(|| format!("cannot read events named `{name}`"))
    }

    async fn send_event(&self, name: &str, payload: &str) -> Result<(i64, u64)> {
        self.write(
            || format!("cannot send event `{name}`"),
            |conn| {
                decided(decide::waits::send_event(
                    &mut self.tx(conn),
                    name,
                    payload,
                    self.clock.now(),
                ))
            },
        )
        .await
    }

    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>> {
        self.write(
            || format!("cannot cancel run {id}"),
            |conn| {
                decided(decide::cancel::cancel_run(
                    &mut self.tx(conn),
                    id,
                    self.clock.now(),
                ))
            },
        )
        .await
    }

    async fn cancelled_steps(&self, steps: &[(String, u32)]) -> Result<Vec<(String, u32)>> {
        read::cancelled_steps(&self.reader, steps)
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
            |conn| decided(decide::resume::resume_run(&mut self.tx(conn), id, pins)),
        )
        .await
    }

    async fn close(&self) -> Result<()> {
        SqliteStore::close(self).await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        workers::register(self, worker).await
    }

    async fn heartbeat_worker(&self, id: &str) -> Result<()> {
        workers::heartbeat(self, id).await
    }

    async fn stop_worker(&self, id: &str) -> Result<()> {
        workers::stop(self, id).await
    }

    async fn workers(&self, seen_within: Duration) -> Result<Vec<WorkerView>> {
        workers::list(self, seen_within).await
    }
}
