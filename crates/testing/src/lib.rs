//! Helpers shared by Hypergraph's integration tests and benchmarks: a real SQLite file in a temp
//! dir, fixtures, test guests built with `hypergraph build`'s builder, running submitted runs to
//! completion with a real worker, and ([`cli`]) driving the real `hypergraph` binary.

pub mod cli;

use std::path::{Path, PathBuf};

use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::location::DbLocation;
use hypergraph_runtime::store::{Durability, OpenOptions, Policy, RunDetail};
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bytes of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name)).expect("fixture exists")
}

/// The component of the test guest `tests/guests/<name>`, built (with `hypergraph build`'s
/// builder, into the shared `target/guests`) once per test process.
pub fn guest(name: &str) -> Vec<u8> {
    static BUILT: std::sync::Mutex<Vec<(String, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, bytes)) = built.iter().find(|(n, _)| n == name) {
        return bytes.clone();
    }
    let options = hypergraph_build::BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        ..hypergraph_build::BuildOptions::default()
    };
    let wasm = hypergraph_build::build_guest(&repo().join("tests/guests").join(name), &options)
        .unwrap_or_else(|e| panic!("building tests/guests/{name}: {e:#}"));
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()));
    built.push((name.to_string(), bytes.clone()));
    bytes
}

/// The variable that chooses the backend the end-to-end tests run on: unset or `sqlite` for a
/// fresh SQLite file per test, `postgres` for a fresh schema per test on the server named by
/// `HYPERGRAPH_TEST_POSTGRES` (scripts/test.sh runs the suites both ways).
pub const BACKEND_ENV: &str = "HYPERGRAPH_TEST_STORE";

/// The prefix of the schemas the end-to-end tests create on PostgreSQL (scripts/test.sh drops
/// them when the run ends).
pub const SCHEMA_PREFIX: &str = "hg_e2e_";

/// Whether the tests run on PostgreSQL (see [`BACKEND_ENV`]).
pub fn on_postgres() -> bool {
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_ENV}={other}: expected `sqlite` or `postgres`"),
    }
}

/// A fresh database for one test, as `--db` takes it: `dir/hypergraph.db`, or on PostgreSQL a
/// new schema of the test server.
pub fn location_in(dir: &Path) -> String {
    if !on_postgres() {
        return dir.join("hg.db").display().to_string();
    }
    postgres_location()
}

/// The PostgreSQL test server (`HYPERGRAPH_TEST_POSTGRES`); panics saying how to set it.
pub fn postgres_server() -> String {
    std::env::var("HYPERGRAPH_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "HYPERGRAPH_TEST_POSTGRES is not set: these tests need a PostgreSQL server, e.g. \
             HYPERGRAPH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test (scripts/test.sh \
             starts the local one and sets it)"
        )
    })
}

/// The rows of `sql` run by `psql` on the PostgreSQL test server, one `|`-separated line each.
pub fn psql(sql: &str) -> Vec<String> {
    let out = std::process::Command::new("psql")
        .arg(postgres_server())
        .args(["-Atq", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A fresh schema on the PostgreSQL test server, as `--db` takes it, whatever
/// [`BACKEND_ENV`] says.
pub fn postgres_location() -> String {
    let server = postgres_server();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sep = if server.contains('?') { '&' } else { '?' };
    format!(
        "{server}{sep}schema={SCHEMA_PREFIX}{}_{nanos}_{n}",
        std::process::id()
    )
}

/// A Hypergraph over a fresh database (see [`location_in`]) with its cache in `dir`.
pub async fn open(dir: &Path) -> Hypergraph {
    open_at(&location_of(dir), dir).await
}

/// The database [`open`] uses for `dir`: the same for every call with the same directory (a
/// file in it, or a PostgreSQL schema named after it).
pub fn location_of(dir: &Path) -> String {
    static CHOSEN: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, location)) = chosen.iter().find(|(d, _)| d == dir) {
        return location.clone();
    }
    let location = location_in(dir);
    chosen.push((dir.to_path_buf(), location.clone()));
    location
}

/// A Hypergraph over the database at `location` (as `--db` takes it) with its cache in `dir`:
/// another handle on a database [`open`] created, as a second process would have. Opened with
/// the durability `HYPERGRAPH_DURABILITY` names, as the binary does (default `strict`), so a
/// benchmark can measure both.
pub async fn open_at(location: &str, dir: &Path) -> Hypergraph {
    let location = DbLocation::parse(location).expect("test database location");
    let options = OpenOptions {
        durability: durability(),
        ..OpenOptions::default()
    };
    let store = hypergraph_runtime::store::open_with(&location, &options)
        .await
        .expect("open store");
    Hypergraph::new(store, Some(dir.join("cache"))).expect("engine")
}

/// The durability `HYPERGRAPH_DURABILITY` names (`strict` when unset).
pub fn durability() -> Durability {
    std::env::var("HYPERGRAPH_DURABILITY").map_or(Durability::Strict, |d| {
        d.parse()
            .unwrap_or_else(|e| panic!("HYPERGRAPH_DURABILITY: {e}"))
    })
}

/// On PostgreSQL, the number of transactions committed in the test database so far
/// (`pg_stat_database.xact_commit`, after waiting for the server to publish its counters);
/// `None` on SQLite.
pub async fn postgres_commits() -> Option<i64> {
    use hypergraph_store::sqlx::{self, Connection};
    if !on_postgres() {
        return None;
    }
    let server = std::env::var("HYPERGRAPH_TEST_POSTGRES").ok()?;
    // Backends publish their counters at most every second, and when idle.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut conn = sqlx::PgConnection::connect(&server).await.ok()?;
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .ok()
}

/// Deploys a fixture under `name` with `policy`.
pub async fn deploy(hg: &Hypergraph, name: &str, fixture_name: &str, policy: Policy) {
    hg.deploy(name, &fixture(fixture_name), &policy)
        .await
        .unwrap_or_else(|e| panic!("deploying {fixture_name}: {e:#}"));
}

/// Runs a worker until nothing is left to do.
pub async fn drain(hg: &Hypergraph) {
    Worker::new(hg.clone(), WorkerOptions::default())
        .run_until_idle()
        .await
        .expect("worker");
}

/// Waits for run `id` and returns everything stored about it.
pub async fn detail(hg: &Hypergraph, id: &str) -> RunDetail {
    hg.wait(id, None).await.expect("run finished");
    hg.store
        .run(id)
        .await
        .expect("read run")
        .expect("run exists")
}

/// Submits one run, executes it and returns it as stored.
pub async fn run(hg: &Hypergraph, task: &str, input: Value) -> RunDetail {
    let id = hg
        .submit(&RunRequest {
            task: task.into(),
            input,
            meta: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("submitting {task}: {e:#}"));
    drain(hg).await;
    detail(hg, &id).await
}

/// The `kind` of a stored error.
pub fn error_kind(run: &RunDetail) -> &str {
    run.error
        .as_ref()
        .and_then(|e| e.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("<no error>")
}

/// The `message` of a stored error.
pub fn error_message(run: &RunDetail) -> String {
    run.error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("<no error>")
        .to_string()
}

/// Where an HTTP/1.1 request's head ends in `buf` (just past its blank line) and the length of
/// the body its `content-length` header announces (0 without one); `None` until the whole head
/// has arrived. For the tests' small HTTP servers.
pub fn http_request_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some((end + 4, length))
}
