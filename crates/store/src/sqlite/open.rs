//! Opening a SQLite database: creating and migrating it (retrying the races of processes opening
//! a new file at once), refusing a file that is not Hypergraph's, and the connections the store
//! holds.

use super::*;
use rusqlite::OpenFlags;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The newest schema version this binary knows (that of every database it opened, which it
/// migrated to it).
pub fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
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
        let options = OpenOptions {
            clock,
            ..OpenOptions::default()
        };
        Self::open_location_with(&DbLocation::Sqlite(path.to_path_buf()), &options).await
    }

    /// Opens the database file at `path` with `options` (see [`SqliteStore::open_with_clock`]).
    async fn open_path_with(path: &Path, options: &OpenOptions) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!(
                    "cannot create directory {} for the database {}",
                    parent.display(),
                    path.display()
                )
            })?;
        }
        Self::open_file(
            path.to_path_buf(),
            path.display().to_string(),
            None,
            options,
        )
        .await
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
        let options = OpenOptions {
            clock,
            ..OpenOptions::default()
        };
        Self::open_location_with(location, &options).await
    }

    /// [`SqliteStore::open_location`] with `options`: the clock (see
    /// [`SqliteStore::open_with_clock`]) and what an acknowledged commit survives (the writer's
    /// `synchronous` setting: `FULL` for [`Durability::Strict`], `NORMAL` for
    /// [`Durability::Relaxed`]).
    pub async fn open_location_with(
        location: &DbLocation,
        options: &OpenOptions,
    ) -> Result<SqliteStore> {
        match location {
            DbLocation::Sqlite(path) => Self::open_path_with(path, options).await,
            DbLocation::SqliteMemory => {
                let dir =
                    tempfile::tempdir().context("cannot create a private database directory")?;
                let path = dir.path().join("hypergraph.db");
                Self::open_file(path, location.to_string(), Some(dir), options).await
            }
            DbLocation::Postgres(_) => {
                anyhow::bail!("{location} is a PostgreSQL database, not a SQLite one")
            }
        }
    }

    async fn open_file(
        path: PathBuf,
        location: String,
        private: Option<tempfile::TempDir>,
        open: &OpenOptions,
    ) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous(open.durability))
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

        let writer = open_writer(&path, open.durability)
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
            sweeper: Sweeper::default(),
            clock: open.clock.clone(),
            durability: open.durability,
            _private: private,
        })
    }
}

/// Opens a rusqlite connection on an existing (migrated) database file with `flags`, waiting
/// up to [`BUSY_TIMEOUT`] for locks and caching up to `statements` prepared statements.
pub(super) fn open_connection(
    path: &Path,
    flags: OpenFlags,
    statements: usize,
) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(statements);
    Ok(conn)
}

/// SQLite's `synchronous` setting for `durability`: in WAL mode, `FULL` syncs the WAL at every
/// commit (a commit survives power loss), `NORMAL` only at checkpoints (a commit survives a crash
/// of the process; power loss may roll the last ones back).
fn synchronous(durability: Durability) -> SqliteSynchronous {
    match durability {
        Durability::Strict => SqliteSynchronous::Full,
        Durability::Relaxed => SqliteSynchronous::Normal,
    }
}

/// Opens the writing connection on an existing (migrated) database file, its commits as durable
/// as `durability` says.
pub(super) fn open_writer(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE, 256)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    let level = match durability {
        Durability::Strict => "full",
        Durability::Relaxed => "normal",
    };
    conn.pragma_update(None, "synchronous", level)?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.pragma_update(None, "temp_store", "memory")?;
    Ok(conn)
}

/// Opens a point-read connection on an existing database file.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's `synchronous` setting (SQLite: 1 = NORMAL, 2 = FULL).
    async fn writer_synchronous(store: &SqliteStore) -> i64 {
        let writer = store.writer.lock().await;
        writer
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn commits_are_synced_at_commit_unless_durability_is_relaxed() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::Sqlite(dir.path().join("hg.db"));
        let strict = SqliteStore::open_location(&location).await.unwrap();
        assert_eq!(strict.durability(), Durability::Strict);
        assert_eq!(writer_synchronous(&strict).await, 2, "strict is FULL");
        let relaxed = SqliteStore::open_location_with(
            &location,
            &OpenOptions {
                durability: Durability::Relaxed,
                ..OpenOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(writer_synchronous(&relaxed).await, 1, "relaxed is NORMAL");
    }
}
