//! The store conformance suite: one set of tests of the [`Store`] contract, generic over a
//! [`Backend`], that every backend passes unchanged.
//!
//! Time is driven by a [`ManualClock`] handed to the backend when it creates the store: the
//! tests never sleep, they move the clock past leases, deadlines, timers and backoff. A backend's
//! test crate enables the `conformance` feature (as a dev-dependency feature) and expands
//! [`conformance_suite!`](crate::conformance_suite) with its [`Backend`]: one `#[tokio::test]` per
//! contract, each under its own name.
//!
//! ```ignore
//! hypergraph_store::conformance_suite!(hypergraph_store::conformance::SqliteBackend);
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use serde_json::json;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{
    ClaimedStep, Completion, DeploymentKind, JournalRecord, LogRecord, NewChild, NewRun, Policy,
    Status, Store, Wait,
};
use hypergraph_core::time::{Clock, ManualClock, Micros};

mod cases;
mod workers;
mod workflows;

pub use cases::*;
pub use workers::*;
pub use workflows::*;

/// A database engine under test: how to create a fresh, empty store whose time is a given
/// [`ManualClock`], and how to open a second handle on the same database (as a second process
/// would) to test behaviour across handles.
/// (Its futures need not be `Send`: opening a store is not, and tests run it in place.)
#[async_trait(?Send)]
pub trait Backend: Sized + Send + Sync + 'static {
    /// The store this backend opens.
    type Store: Store;
    /// A fresh, empty, migrated database whose stores read the time from `clock`.
    async fn create(clock: ManualClock) -> Result<Self>;
    /// The store opened by [`Backend::create`].
    fn store(&self) -> &Self::Store;
    /// Another handle on the same database (its own connections, same clock).
    async fn open_another(&self) -> Result<Self::Store>;
}

/// The SQLite backend, on a database file in a temporary directory.
pub struct SqliteBackend {
    dir: tempfile::TempDir,
    clock: ManualClock,
    store: SqliteStore,
}

impl SqliteBackend {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("hypergraph.db")
    }
}

#[async_trait(?Send)]
impl Backend for SqliteBackend {
    type Store = SqliteStore;

    async fn create(clock: ManualClock) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open_with_clock(
            &dir.path().join("hypergraph.db"),
            Arc::new(clock.clone()),
        )
        .await?;
        Ok(SqliteBackend { dir, clock, store })
    }

    fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn open_another(&self) -> Result<SqliteStore> {
        SqliteStore::open_with_clock(&self.path(), Arc::new(self.clock.clone())).await
    }
}

/// The variable naming the PostgreSQL server the PostgreSQL tests use
/// (`postgres://postgres@127.0.0.1:5432/test` on CI, set by `scripts/test.sh`).
pub const POSTGRES_ENV: &str = "HYPERGRAPH_TEST_POSTGRES";

/// The PostgreSQL backend, in a schema of its own (created for the test, dropped after it) of
/// the database named by [`POSTGRES_ENV`], so tests run in parallel and leave nothing behind.
pub struct PgBackend {
    url: String,
    schema: String,
    clock: ManualClock,
    store: Option<PgStore>,
}

impl PgBackend {
    /// The server URL from [`POSTGRES_ENV`]; an error saying how to set it when it is missing.
    pub fn server() -> Result<String> {
        std::env::var(POSTGRES_ENV).map_err(|_| {
            anyhow::anyhow!(
                "{POSTGRES_ENV} is not set: the PostgreSQL tests need a server, e.g. \
                 {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test (scripts/test.sh starts \
                 the local PostgreSQL and sets it)"
            )
        })
    }

    /// A schema name no other test uses.
    pub fn fresh_schema() -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("hg_test_{}_{nanos}_{n}", std::process::id())
    }

    /// `server` with `schema` as its `schema=` parameter.
    pub fn url_with_schema(server: &str, schema: &str) -> String {
        let sep = if server.contains('?') { '&' } else { '?' };
        format!("{server}{sep}schema={schema}")
    }

    /// Drops `schema` (and everything in it) from the database at `server`, on a thread of its
    /// own (it runs from `Drop`, inside or outside a runtime).
    pub fn drop_schema(server: String, schema: String) {
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("cannot drop the test schema: {e:#}");
        }
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        self.store.take();
        PgBackend::drop_schema(PgBackend::server().unwrap_or_default(), self.schema.clone());
    }
}

#[async_trait(?Send)]
impl Backend for PgBackend {
    type Store = PgStore;

    async fn create(clock: ManualClock) -> Result<Self> {
        let server = PgBackend::server()?;
        let schema = PgBackend::fresh_schema();
        let url = PgBackend::url_with_schema(&server, &schema);
        let store = PgStore::open_with_clock(&url, Arc::new(clock.clone())).await?;
        Ok(PgBackend {
            url,
            schema,
            clock,
            store: Some(store),
        })
    }

    fn store(&self) -> &PgStore {
        self.store.as_ref().expect("open until dropped")
    }

    async fn open_another(&self) -> Result<PgStore> {
        PgStore::open_with_clock(&self.url, Arc::new(self.clock.clone())).await
    }
}

/// Expands to one `#[tokio::test]` per contract of the suite, run against `$backend` (a type
/// implementing [`Backend`]). The calling crate needs `tokio` with its `macros` and
/// `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ty) => {
        $crate::conformance_suite!(@each $backend;
            atomic_completion,
            fencing_by_attempt,
            exactly_one_claimant_across_handles,
            lease_expiry_and_reclaim,
            renewed_lease_is_not_reclaimed,
            max_lost_leases_fails_the_step,
            retry_backoff,
            schedule_to_start_deadline,
            run_deadline,
            deadlines_are_inclusive,
            join_all_children_wakes_parent,
            join_any_child_wakes_parent,
            wait_already_satisfied,
            join_any_already_satisfied_by_one_child,
            join_of_earlier_and_new_children,
            late_child_wakes_parent,
            timers,
            events,
            event_wait_already_satisfied_and_deadline,
            cancel_cascade,
            workflow_end_cancels_unjoined_children,
            workflow_ending_in_its_first_activation_cancels_the_children_it_started,
            resume_requeues_failed_steps,
            resume_cuts_the_journal,
            resume_supersedes_children_after_the_cut,
            resume_pins_versions,
            kv_visibility,
            kv_conflicts,
            kv_batches_check_each_completion_against_the_ones_before,
            kv_conflicts_favour_the_attempt_that_lost_most,
            list_runs_filters,
            a_run_is_running_from_its_first_claim_until_it_ends,
            run_view_pagination_and_counts,
            workers_are_visible,
            dead_workers_leases_are_reclaimed_early,
            attempts_record_worker_and_version,
        );
    };
    (@each $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name::<$backend>().await
            }
        )*
    };
}

/// The digest of the component every test deploys.
pub const DIGEST: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
/// The time the clock of every test starts at (2026-01-01T00:00:00Z).
pub const START: Micros = 1_767_225_600_000_000;
/// A lease long enough never to expire unless the test moves the clock past it.
pub const HOUR: Duration = Duration::from_secs(3600);

/// A fresh backend with its clock, and a counter for unique ids.
pub struct Ctx<B: Backend> {
    /// The backend under test.
    pub backend: B,
    /// The clock its stores read; tests move it instead of sleeping.
    pub clock: ManualClock,
    next_id: std::sync::atomic::AtomicU64,
}

impl<B: Backend> Ctx<B> {
    /// A fresh store at [`START`] with deployment `t` (a component, `policy`) and `wf` (a
    /// component for workflows, default policy).
    pub async fn new(policy: Policy) -> Ctx<B> {
        let clock = ManualClock::new(START);
        let backend = B::create(clock.clone()).await.expect("create the store");
        let store = backend.store();
        store.put_component(DIGEST, b"\0asm").await.unwrap();
        store
            .deploy("t", DIGEST, DeploymentKind::Component, &policy)
            .await
            .unwrap();
        store
            .deploy("wf", DIGEST, DeploymentKind::Component, &Policy::default())
            .await
            .unwrap();
        Ctx {
            backend,
            clock,
            next_id: Default::default(),
        }
    }

    /// The store under test.
    pub fn store(&self) -> &B::Store {
        self.backend.store()
    }

    /// The current time of the test's clock.
    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by)
    }

    /// A unique id (ordered by creation).
    pub fn id(&self, prefix: &str) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{n:08}")
    }

    /// A new run of `task` (deployment: the part before `/`), created now.
    pub fn run(&self, task: &str, meta: &[(&str, &str)]) -> NewRun {
        let n = self.next_id.load(std::sync::atomic::Ordering::Relaxed) as i64;
        NewRun {
            id: self.id("run"),
            step_id: self.id("step"),
            task: task.to_string(),
            deployment: task.split('/').next().unwrap().to_string(),
            version: 1,
            digest: DIGEST.to_string(),
            input: json!({ "n": n }),
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: self.now() + n,
            start_deadline: None,
            deadline: None,
        }
    }

    /// Submits `n` runs of `t/f` and returns them.
    pub async fn submit(&self, n: usize) -> Vec<NewRun> {
        let runs: Vec<NewRun> = (0..n).map(|_| self.run("t/f", &[])).collect();
        self.store().submit_runs(&runs).await.unwrap();
        runs
    }

    /// Claims up to `max` steps for `worker` with an hour's lease.
    pub async fn claim(&self, worker: &str, max: usize) -> Vec<ClaimedStep> {
        self.store().claim_steps(worker, max, HOUR).await.unwrap()
    }

    /// A child of a workflow, of task `t/f`.
    pub fn child(&self, index: u32) -> NewChild {
        NewChild {
            step_id: self.id("child"),
            index,
            task: "t/f".to_string(),
            deployment: "t".to_string(),
            version: 1,
            digest: DIGEST.to_string(),
            input: json!({ "child": index }),
            policy: None,
            name: None,
            start_deadline: None,
        }
    }
}

/// A successful completion of `step` (output `{"ok": step_id}`), completed now.
pub fn success(step: &ClaimedStep, now: Micros) -> Completion {
    Completion {
        step_id: step.step_id.clone(),
        attempt: step.attempt,
        worker_id: "w1".to_string(),
        started_at: now,
        completed_at: now,
        status: Status::Succeeded,
        output: Some(json!({ "ok": step.step_id })),
        error: None,
        journal: Vec::new(),
        logs: Vec::new(),
        kv_writes: Vec::new(),
        kv_reads: Vec::new(),
        run_id: step.run_id.clone(),
        children: Vec::new(),
        wait: None,
        retry_at: None,
        reruns: step.reruns,
    }
}

/// A suspension of `step`: its activation ends, starting `children` and waiting for `wait`.
pub fn suspend(step: &ClaimedStep, now: Micros, children: Vec<NewChild>, wait: Wait) -> Completion {
    Completion {
        status: Status::Running,
        output: None,
        children,
        wait: Some(wait),
        ..success(step, now)
    }
}

/// The step ids of `children`.
pub fn ids(children: &[NewChild]) -> Vec<String> {
    children.iter().map(|c| c.step_id.clone()).collect()
}

/// A failed completion of `step` (error kind `trap`).
pub fn failure(step: &ClaimedStep, now: Micros) -> Completion {
    Completion {
        status: Status::Failed,
        output: None,
        error: Some(json!({ "kind": "trap", "message": "boom" })),
        ..success(step, now)
    }
}

/// `n` journal records of kind `wall_clock.now`.
pub fn journal(n: usize) -> Vec<JournalRecord> {
    (0..n)
        .map(|i| JournalRecord {
            seq: i as u32,
            kind: "wall_clock.now".to_string(),
            data: format!("{{\"seconds\":{i}}}"),
        })
        .collect()
}

/// `n` log lines on stdout.
pub fn logs(n: usize, at: Micros) -> Vec<LogRecord> {
    (0..n)
        .map(|i| LogRecord {
            seq: i as u32,
            at,
            stream: "stdout".to_string(),
            level: "info".to_string(),
            message: format!("line {i}"),
        })
        .collect()
}

/// The kind of a stored error.
pub fn kind(error: &Option<serde_json::Value>) -> Option<&str> {
    error.as_ref()?.get("kind")?.as_str()
}
