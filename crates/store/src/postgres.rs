//! The PostgreSQL backend of [`Store`]: one database (or one schema of it) shared by every
//! `hypergraph` process on every machine that points at it.
//!
//! # Connections and transactions
//!
//! A [`PgStore`] holds a pool of sqlx connections. Every write is one transaction at `READ
//! COMMITTED` in which the shared decisions of [`crate::decide`] run over `tx::PgTx`, whose
//! primitives take the row locks they need as they go; the contracts that SQLite gets from its
//! single write lock come from these locks:
//! - **Exactly one claimant.** Queued steps are claimed by an `UPDATE ... WHERE id IN (SELECT ...
//!   FOR UPDATE SKIP LOCKED)`: two claimants lock disjoint rows and never wait on each other.
//!   Expired leases are read with `FOR UPDATE SKIP LOCKED` too.
//! - **Fencing.** A completion is applied by `UPDATE steps ... WHERE id = v.id AND attempt =
//!   v.attempt AND status = 'running'`: a concurrent reclaim holds the row lock until it commits,
//!   after which PostgreSQL re-evaluates the condition on the new row version and the stale
//!   completion matches nothing.
//! - **Key-value isolation.** A completion that read or wrote keys locks the store-wide
//!   `kv_clock` row before checking its reads, so such completions are serialized exactly as on
//!   SQLite, and a read checked is a read that holds at commit.
//! - **Events.** Sending an event and committing a wait for one take the same transaction-scoped
//!   advisory lock on the event's name, so a wait never misses an event sent at the same moment.
//! - **Deployments.** Deploying takes an advisory lock on the name, so two deploys of one name
//!   get consecutive versions.
//!
//! A transaction PostgreSQL aborts because of a deadlock or a serialization failure
//! (`40P01`, `40001`) is run again from the start, a few times, before the error is reported.
//!
//! Batches use arrays (`UNNEST($1::text[], ...)`) instead of multi-row `VALUES`, so a batch of
//! any size is one statement with a fixed shape.
//!
//! # Wake-ups
//!
//! Writes that make steps claimable or end runs are announced to other processes with
//! `NOTIFY` after they commit, from a connection of their own, and [`crate::Store::subscribe`]
//! hears other processes' announcements with `LISTEN` on another (see `notify`): each store may
//! hold these two connections besides its pool.
//!
//! # Durability
//!
//! Connections run with `synchronous_commit = on` by default: an acknowledged commit is on disk
//! on the server (and on its synchronous standbys, if any). [`Durability::Relaxed`] turns it
//! off (see [`crate::Durability`] for what that risks).
//!
//! # Schemas
//!
//! The URL may name a schema with a `schema=NAME` query parameter (letters, digits and `_`):
//! it is created if missing and every table lives in it, so several Hypergraph databases (or
//! tests running in parallel) can share one PostgreSQL database.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row};

use crate::decide::{self, claim::Sweeper};
use crate::options::{Durability, OpenOptions};
use crate::{ClaimedStep, DeploymentKind, Policy};
use hypergraph_core::time::{Clock, SystemClock};
use tx::PgTx;

mod notify;
mod read;
mod store;
mod tx;
mod workers;

/// Connections in the pool of one store.
pub const CONNECTIONS: u32 = 8;

/// How long a pooled connection may sit idle before the pool checks it with a round trip
/// before handing it out. A connection used more recently is handed out unchecked (as
/// HikariCP does, with 500 ms): checking every acquisition cost one round trip per
/// transaction and per read, a fifth of a chain child's. One that went stale in that window
/// (the server restarted) fails its statement with a connection error, which callers wait out
/// as they wait out any outage, and the pool drops it.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_millis(500);

/// How long an operation waits for a free connection (or for the server to accept one).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a store waits for the server to accept its first connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a transaction aborted by a deadlock or serialization failure is run again.
const RETRIES: u32 = 5;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`Store`](crate::Store) backed by a PostgreSQL database. Cheap to share behind an `Arc`;
/// every method takes `&self`. See the module docs for the locking model.
pub struct PgStore {
    pool: PgPool,
    /// What was opened (the URL without its password), for messages.
    location: String,
    /// Policies of deployment versions; a version never changes once written.
    policies: Mutex<HashMap<(String, i64), (Policy, DeploymentKind)>>,
    /// When claims also apply deadlines and fire timers.
    sweeper: Sweeper,
    /// Where every timestamp this store writes and every deadline it checks comes from.
    clock: Arc<dyn Clock>,
    /// What an acknowledged commit survives.
    durability: Durability,
    /// Announces this store's commits to other processes (after they commit).
    announcer: notify::Announcer,
    /// Hears other processes' announcements, once something subscribes.
    listener: notify::Listener,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`, with an
    /// optional `schema=NAME` parameter) and brings its schema up to date; several processes may
    /// open the same database at once (migrations run under PostgreSQL's advisory lock).
    ///
    /// Fails with an error naming the database (never its password) when the server cannot be
    /// reached, refuses the login, holds tables of another application, or holds a schema newer
    /// than this binary understands.
    pub async fn open(url: &str) -> Result<PgStore> {
        Self::open_with_clock(url, Arc::new(SystemClock)).await
    }

    /// [`PgStore::open`] with the time read from `clock` instead of the system clock (see
    /// [`crate::sqlite::SqliteStore::open_with_clock`] for what that covers).
    pub async fn open_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<PgStore> {
        let options = OpenOptions {
            clock,
            ..OpenOptions::default()
        };
        Self::open_with(url, &options).await
    }

    /// [`PgStore::open`] with `options`: the clock (see [`PgStore::open_with_clock`]) and what an
    /// acknowledged commit survives (every connection's `synchronous_commit`: `on` for
    /// [`Durability::Strict`], `off` for [`Durability::Relaxed`]).
    pub async fn open_with(url: &str, open: &OpenOptions) -> Result<PgStore> {
        let target = Target::parse(url)?;
        let location = target.display.clone();
        let mut options = target.options.clone();
        first_connection(&options, target.schema.as_deref(), &location).await?;
        if let Some(schema) = &target.schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        // Every statement is planned once per connection, generically (`force_generic_plan`):
        // planning for each execution's parameters took more of the server's time than
        // executing (measured: BENCHMARKS.md, "Plans made once"). Queue tables change size fast
        // (a fresh database goes from empty to millions of steps between two autovacuum runs),
        // so a plan is often made on a table that is nearly empty, where a sequential scan
        // looks cheapest, and then kept while the table grows. `enable_seqscan = off` prices
        // sequential scans out wherever an index serves, so every plan reads through the
        // indexes whatever the tables held when it was made (the store's statements are all
        // served by one; a table without a usable index is still scanned). The test
        // `hot_statements_never_scan_a_whole_table` holds this.
        options = options.options([
            (
                "synchronous_commit",
                match open.durability {
                    Durability::Strict => "on",
                    Durability::Relaxed => "off",
                },
            ),
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| connect_error(&location, e))?;
        check_ownership(&pool, &location).await?;
        check_version(&pool, &location).await?;
        MIGRATOR.run(&pool).await.with_context(|| {
            format!("cannot migrate the database {location} to this version of hypergraph")
        })?;
        let schema: String = sqlx::query_scalar("SELECT COALESCE(current_schema(), '')")
            .fetch_one(&pool)
            .await
            .with_context(|| format!("cannot read the schema of {location}"))?;
        let channel = notify::channel(&schema);
        let token = uuid::Uuid::now_v7().simple().to_string();
        Ok(PgStore {
            announcer: notify::Announcer::new(&options, &channel, &token),
            listener: notify::Listener::new(&options, &channel, &token),
            pool,
            location,
            policies: Mutex::new(HashMap::new()),
            sweeper: Sweeper::default(),
            clock: open.clock.clone(),
            durability: open.durability,
        })
    }

    /// The clock this store reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// What this store was opened from (the URL without its password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// What an acknowledged commit of this store survives.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The connection pool (for tests and tools that need raw SQL, e.g. `db copy`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` (which opens, uses and commits one transaction) again when PostgreSQL aborted
    /// it because of a deadlock or a serialization failure, up to [`RETRIES`] times; `what`
    /// names the operation in errors.
    async fn retrying<T, F, Fut>(&self, what: impl Fn() -> String, mut work: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match work().await {
                Err(e) if tries < RETRIES && is_retryable(&e) => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "transaction aborted by PostgreSQL; running it again");
                    tokio::time::sleep(Duration::from_millis(2 << tries)).await;
                }
                result => return result.with_context(&what),
            }
        }
    }

    /// Claims up to `max` steps for `worker_id` inside the caller's transaction, each leased
    /// for `lease` from now (see [`decide::claim::claim`]; it sweeps deadlines and timers first
    /// when the [`Sweeper`] says so).
    async fn claim(
        &self,
        conn: &mut sqlx::PgConnection,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        let now = self.clock.now();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let sweep = self.sweeper.due(now);
        decide::claim::claim(
            &mut PgTx::new(self, conn),
            worker_id,
            max,
            now,
            lease_until,
            sweep,
        )
        .await
    }

    /// The policy of a step: its deployment version's, overlaid with the step's own overrides
    /// (JSON, a DAG step's `[step.policy]`), and the deployment's kind.
    async fn step_policy(
        &self,
        conn: &mut sqlx::PgConnection,
        deployment: &str,
        version: i64,
        overrides: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)> {
        let key = (deployment.to_string(), version);
        let cached = self
            .policies
            .lock()
            .expect("policy cache")
            .get(&key)
            .cloned();
        let (policy, kind) = match cached {
            Some(found) => found,
            None => {
                let row = sqlx::query(
                    "SELECT policy, kind FROM deployments WHERE name = $1 AND version = $2",
                )
                .bind(deployment)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| {
                    anyhow!("deployment `{deployment}` version {version} does not exist")
                })?;
                let found = (
                    crate::rows::parse_policy(&row.try_get::<String, _>(0)?)?,
                    crate::rows::kind_of(&row.try_get::<String, _>(1)?),
                );
                self.policies
                    .lock()
                    .expect("policy cache")
                    .insert(key, found.clone());
                found
            }
        };
        let Some(overrides) = overrides else {
            return Ok((policy, kind));
        };
        let overrides: Policy = serde_json::from_str(overrides)
            .with_context(|| format!("stored step policy is not valid: {overrides}"))?;
        Ok((policy.overlaid(&overrides), kind))
    }
}

/// A parsed `postgres://` URL: the connect options, the schema named by `schema=`, and the URL
/// as shown in messages (without its password).
#[derive(Clone, Debug)]
struct Target {
    options: PgConnectOptions,
    schema: Option<String>,
    display: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", name)) => {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        || name.starts_with(|c: char| c.is_ascii_digit())
                    {
                        bail!(
                            "the schema `{name}` in the database URL is not a plain name: use \
                             letters, digits and `_`, starting with a letter"
                        );
                    }
                    schema = Some(name.to_ascii_lowercase());
                }
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let display = redact(url);
        let options = PgConnectOptions::from_str(&rebuilt)
            .map_err(|e| anyhow!("the database URL {display} is not valid: {e}"))?;
        Ok(Target {
            options,
            schema,
            display,
        })
    }
}

/// `url` with its password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Connects once, directly, before the pool does: an unreachable server or a refused login is
/// reported at once with its cause (a pool retries until its acquire timeout), within
/// [`CONNECT_TIMEOUT`] for a server that does not answer. Creates `schema` on that connection
/// when one is given and missing.
async fn first_connection(
    options: &PgConnectOptions,
    schema: Option<&str>,
    location: &str,
) -> Result<()> {
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(options))
        .await
        .map_err(|_| {
            anyhow!(
                "cannot connect to the PostgreSQL database {location}: no answer within {} s \
                 (check that PostgreSQL is running and reachable at that host and port)",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| connect_error(location, e))?;
    if let Some(schema) = schema {
        // `schema` is a checked plain name (see `Target::parse`).
        let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => {}
            // Two processes creating the same schema at once: the loser sees a unique violation.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create schema {schema} in {location}"))
            }
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Refuses a database whose schema holds tables but no Hypergraph migrations: it belongs to
/// another application, and Hypergraph leaves it untouched.
async fn check_ownership(pool: &PgPool, location: &str) -> Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .with_context(|| format!("cannot read the tables of {location}"))?;
    if tables.is_empty() || tables.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(());
    }
    let mut listed: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
    if tables.len() > listed.len() {
        listed.push("...");
    }
    bail!(
        "{location} is not a Hypergraph database: its schema holds other tables ({}); \
         hypergraph leaves it untouched. Point --db at a Hypergraph database, an empty one, or \
         add `?schema=hypergraph` to keep Hypergraph's tables in a schema of their own",
        listed.join(", ")
    )
}

/// The newest schema version this binary knows.
pub fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The schema version a database is at (0 when it has none yet).
pub async fn database_version(pool: &PgPool) -> Result<i64> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(0);
    }
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?,
    )
}

/// Refuses a database migrated by a newer hypergraph: this binary would run old code against a
/// schema it does not know.
async fn check_version(pool: &PgPool, location: &str) -> Result<()> {
    let found = database_version(pool)
        .await
        .with_context(|| format!("cannot read the schema version of {location}"))?;
    let known = schema_version();
    if found > known {
        bail!(
            "the database {location} has schema version {found}, newer than this hypergraph \
             ({}) understands (version {known}): run a hypergraph at least as new as the one that \
             migrated it",
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

/// True when `error` comes from a transaction PostgreSQL aborted and that may succeed when run
/// again: a deadlock (`40P01`) or a serialization failure (`40001`).
fn is_retryable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| match e {
                sqlx::Error::Database(db) => db.code().map(|c| c == "40P01" || c == "40001"),
                _ => None,
            })
            .unwrap_or(false)
    })
}

/// A clear error for a database that cannot be reached, naming it and saying what to check.
fn connect_error(location: &str, error: sqlx::Error) -> anyhow::Error {
    let hint = match &error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            "check that PostgreSQL is running and reachable at that host and port"
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => "check the user name and password",
            Some("3D000") => "the database does not exist; create it (createdb) first",
            Some("57P01") | Some("57P02") | Some("57P03") => {
                "the server is shutting down or starting up; try again in a moment"
            }
            _ => "check the URL and the server's log",
        },
        _ => "check the URL",
    };
    anyhow!("cannot connect to the PostgreSQL database {location}: {error} ({hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://hg:secret@db:5432/hg?schema=a"),
            "postgres://hg:***@db:5432/hg?schema=a"
        );
        assert_eq!(redact("postgres://hg@db/hg"), "postgres://hg@db/hg");
        assert_eq!(redact("postgres://db/hg"), "postgres://db/hg");
    }

    #[test]
    fn schema_names_are_checked() {
        let t = Target::parse("postgres://u@h/db?schema=Tenant_1&sslmode=disable").unwrap();
        assert_eq!(t.schema.as_deref(), Some("tenant_1"));
        for bad in ["x;drop", "", "1abc", "a-b"] {
            let err = Target::parse(&format!("postgres://u@h/db?schema={bad}")).unwrap_err();
            assert!(err.to_string().contains("schema"), "{bad}: {err}");
        }
    }
}
