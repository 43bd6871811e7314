//! Key-value isolation through the real binary: read-modify-write increments by queued runs
//! never lose an update, whether one worker runs them one at a time, one worker runs sixteen at
//! once, or two worker processes race on the same key.

use hypergraph_testing as common;

use std::sync::Arc;

use common::cli::{wait_within, Cli, DEADLINE};
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::Hypergraph;
use serde_json::{json, Value};

/// A database with the `kv-counter` guest deployed as `kv`.
fn counter() -> Cli {
    let cli = Cli::new();
    cli.deploy_guest("kv-counter", "kv", &[]);
    cli
}

/// Queues `n` runs of `kv/bump` on `key` (in one submission, so that they are all waiting when
/// the workers start).
fn queue_bumps(cli: &Cli, key: &str, n: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&cli.db).await.unwrap();
        let hg = Hypergraph::new(Arc::new(store), None).unwrap();
        let requests: Vec<RunRequest> = (0..n)
            .map(|_| RunRequest {
                task: "kv/bump".into(),
                input: json!(key),
                meta: vec![],
            })
            .collect();
        hg.submit_many(&requests).await.unwrap();
        hg.store.close().await.unwrap();
    });
}

/// The counter under `key`, read by one more increment.
fn count(cli: &Cli, key: &str) -> u64 {
    let run = cli.json(&[
        "run",
        "kv/bump",
        "--input",
        &json!(key).to_string(),
        "--wait",
        "--json",
    ]);
    assert_eq!(run["status"], "succeeded", "{run}");
    run["output"].as_u64().unwrap() - 1
}

fn succeeded(cli: &Cli) -> usize {
    let runs = cli.json(&["runs", "list", "--limit", "10000", "--json"]);
    let runs = runs.as_array().unwrap();
    assert!(
        runs.iter().all(|r| r["status"] == "succeeded"),
        "{:?}",
        runs.iter().find(|r| r["status"] != "succeeded")
    );
    runs.len()
}

#[test]
fn a_hundred_queued_increments_on_one_slot_end_at_a_hundred() {
    let cli = counter();
    queue_bumps(&cli, "visits", 100);
    let stats = cli.worker_until_idle(&["--concurrency", "1"]);
    eprintln!("worker stats: {stats}");
    assert_eq!(count(&cli, "visits"), 100);
    assert_eq!(succeeded(&cli), 101);
}

#[test]
fn two_hundred_increments_on_sixteen_slots_end_at_two_hundred() {
    let cli = counter();
    queue_bumps(&cli, "visits", 200);
    let stats = cli.worker_until_idle(&["--concurrency", "16"]);
    eprintln!("worker stats: {stats}");
    assert_eq!(count(&cli, "visits"), 200);
    assert_eq!(succeeded(&cli), 201);
    // Every conflict was re-executed under the same attempt: no run took a second attempt.
    let runs = cli.json(&["runs", "list", "--limit", "10000", "--json"]);
    assert!(runs.as_array().unwrap().iter().all(|r| r["attempts"] == 1));
}

#[test]
fn two_worker_processes_racing_on_one_key_lose_nothing() {
    let cli = counter();
    queue_bumps(&cli, "visits", 200);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            cli.cmd(&["worker", "--until-idle", "--concurrency", "8", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let out = wait_within(worker, DEADLINE, &["worker"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("worker stats: {stats}");
    }
    assert_eq!(count(&cli, "visits"), 200);
    assert_eq!(succeeded(&cli), 201);
}
