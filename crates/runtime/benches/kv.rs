//! `cargo bench -p hypergraph --bench kv`: durable key-value read-modify-write runs on SQLite, with
//! the `tests/guests/kv-counter` guest and one in-process worker (concurrency 32).
//!
//! (a) distinct keys: runs each incrementing its own key: no conflicts, so this is the cost of
//!     journaling the versions read and checking them at commit, against plain durable runs.
//! (b) one key: runs all incrementing the same key, 32 at a time: most commits conflict and are
//!     executed again; the final counter must equal the number of runs.
//!
//! Each round submits every run in one batch, then drains the queue; a fresh database per round,
//! the median round is reported. Set `HYPERGRAPH_BENCH_QUICK=1` for a fast smoke run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::store::Policy;
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use serde_json::json;

fn quick() -> bool {
    std::env::var_os("HYPERGRAPH_BENCH_QUICK").is_some()
}

fn kv_counter() -> anyhow::Result<Vec<u8>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let options = BuildOptions {
        target_dir: Some(repo.join("target/guests")),
        ..BuildOptions::default()
    };
    Ok(std::fs::read(build_guest(
        &repo.join("tests/guests/kv-counter"),
        &options,
    )?)?)
}

/// Submits `runs` increments (of key `key(i)`) in one batch and drains them with one worker;
/// returns runs per second and the worker's stats as JSON.
async fn round(
    component: &[u8],
    runs: usize,
    key: impl Fn(usize) -> String,
) -> anyhow::Result<(f64, serde_json::Value, u64)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db")).await?;
    let hg = Hypergraph::new(Arc::new(store), Some(dir.path().join("cache")))?;
    hg.deploy("kv", component, &Policy::default()).await?;
    let requests: Vec<RunRequest> = (0..runs)
        .map(|i| RunRequest {
            task: "kv/bump".into(),
            input: json!(key(i)),
            meta: vec![],
        })
        .collect();
    let start = Instant::now();
    hg.submit_many(&requests).await?;
    let stats = Worker::new(hg.clone(), WorkerOptions::default())
        .run_until_idle()
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    // One more increment of the first key reads what the runs left.
    let id = hg
        .submit(&RunRequest {
            task: "kv/bump".into(),
            input: json!(key(0)),
            meta: vec![],
        })
        .await?;
    Worker::new(hg.clone(), WorkerOptions::default())
        .run_until_idle()
        .await?;
    let last = hg.wait(&id, None).await?;
    let counter = last.output.and_then(|v| v.as_u64()).context("a count")? - 1;
    Ok((
        runs as f64 / elapsed,
        serde_json::to_value(&stats)?,
        counter,
    ))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let component = kv_counter()?;
    let rounds = if quick() { 1 } else { 3 };
    let runs = if quick() { 1_000 } else { 5_000 };
    let contended = if quick() { 200 } else { 1_000 };

    let mut distinct = Vec::new();
    for _ in 0..rounds {
        distinct.push(round(&component, runs, |i| format!("key-{i}")).await?);
    }
    distinct.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let (distinct_rate, distinct_stats, _) = distinct[distinct.len() / 2].clone();

    let mut one = Vec::new();
    for _ in 0..rounds {
        one.push(round(&component, contended, |_| "counter".to_string()).await?);
    }
    one.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let (one_rate, one_stats, counter) = one[one.len() / 2].clone();

    println!("| measurement | result |");
    println!("| --- | --- |");
    println!(
        "| (a) {runs} increments of distinct keys | {distinct_rate:.0} runs/s (worker: {distinct_stats}) |"
    );
    println!(
        "| (b) {contended} increments of one key, 32 slots | {one_rate:.0} runs/s, counter {counter} of {contended} (worker: {one_stats}) |"
    );
    Ok(())
}
