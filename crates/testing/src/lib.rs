//! Helpers shared by Hypergraph's integration tests and benchmarks: a real SQLite file in a temp
//! dir, fixtures, test guests built with `hypergraph build`'s builder, running submitted runs to
//! completion with a real worker, and ([`cli`]) driving the real `hypergraph` binary.

pub mod cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::store::{Policy, RunDetail};
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

/// A Hypergraph over a fresh SQLite file in `dir`.
pub async fn open(dir: &Path) -> Hypergraph {
    let store = SqliteStore::open(&dir.join("hypergraph.db"))
        .await
        .expect("open store");
    Hypergraph::new(Arc::new(store), Some(dir.join("cache"))).expect("engine")
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
