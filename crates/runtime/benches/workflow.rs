//! `cargo bench -p hypergraph --bench workflow`: durable workflows on a SQLite file, with the
//! `tests/guests/flow` guest and one in-process worker (concurrency 32).
//!
//! (a) fan-out: a workflow starting 1,000 `work` children and joining them; wall time from submit
//!     to the workflow's result (every child is a durable step with its own journal and commit).
//! (b) chain: a workflow making 10 sequential child calls; end-to-end latency (submit to result)
//!     over 100 runs, one at a time; p50 and p95.
//! (c) resume: a workflow whose journal holds 1,000 completed child results (a chain of 1,000
//!     calls) is re-executed in a fresh instance with that journal until its next new call (the
//!     1,001st start, then the join that suspends it): the cost a long workflow pays per resume.
//!
//! Each measurement is repeated and the median round is reported. Set
//! `HYPERGRAPH_BENCH_QUICK=1` for a fast smoke run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::capabilities::InvocationContext;
use hypergraph_runtime::convert::params_from_json;
use hypergraph_runtime::invoke::{invoke, Invocation};
use hypergraph_runtime::journal::{Entry, Journal, WorkflowEntry};
use hypergraph_runtime::limits::Limits;
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::{Policy, Status};
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use serde_json::json;

fn quick() -> bool {
    std::env::var_os("HYPERGRAPH_BENCH_QUICK").is_some()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn flow() -> anyhow::Result<Vec<u8>> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let options = BuildOptions {
        target_dir: Some(repo.join("target/guests")),
        ..BuildOptions::default()
    };
    Ok(std::fs::read(build_guest(
        &repo.join("tests/guests/flow"),
        &options,
    )?)?)
}

async fn fresh(component: &[u8]) -> anyhow::Result<(tempfile::TempDir, Hypergraph)> {
    let dir = tempfile::tempdir()?;
    let hg = hypergraph_testing::open(dir.path()).await;
    hg.deploy("flow", component, &Policy::default()).await?;
    Ok((dir, hg))
}

/// Submits `task` and waits for it with a worker running; returns the wall time.
async fn timed_run(
    hg: &Hypergraph,
    task: &str,
    input: serde_json::Value,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let id = hg
        .submit(&RunRequest {
            task: task.into(),
            input,
            meta: vec![],
        })
        .await?;
    let result = hg.wait(&id, Some(Duration::from_secs(600))).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        result.status == Status::Succeeded,
        "{task} did not succeed: {:?}",
        result.error
    );
    Ok(elapsed)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds = if quick() { 1 } else { 3 };
    let fan = if quick() { 200 } else { 1_000 };
    let chains = if quick() { 20 } else { 100 };
    let history = if quick() { 200 } else { 1_000 };
    let component = flow()?;

    // (a) fan-out.
    let mut fan_out = Vec::new();
    for _ in 0..rounds {
        let (_dir, hg) = fresh(&component).await?;
        let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
        let input = json!({"prefix": "f", "n": fan, "sleep-ms": 0, "fail-index": null});
        fan_out.push(timed_run(&hg, "flow/fan-out", input).await?.as_secs_f64());
        worker.stop().await?;
    }
    println!(
        "(a) fan-out of {fan} children: {:.2} s wall (median of {rounds}; {:.0} children/s)",
        median(fan_out.clone()),
        fan as f64 / median(fan_out)
    );

    // (b) 10 sequential children, one run at a time.
    let (_dir, hg) = fresh(&component).await?;
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    timed_run(&hg, "flow/chain", json!({"prefix": "warm", "n": 10})).await?;
    let mut latencies = Vec::new();
    for i in 0..chains {
        let input = json!({"prefix": format!("c{i}"), "n": 10});
        latencies.push(timed_run(&hg, "flow/chain", input).await?);
    }
    latencies.sort();
    println!(
        "(b) 10 sequential children, {chains} runs: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );

    // (c) resume after `history` completed children: record a chain, then re-execute the
    // workflow with its journal and one more call to make.
    let started = Instant::now();
    let id = hg
        .submit(&RunRequest {
            task: "flow/chain".into(),
            input: json!({"prefix": "h", "n": history}),
            meta: vec![],
        })
        .await?;
    hg.wait(&id, Some(Duration::from_secs(600))).await?;
    let recording = started.elapsed();
    worker.stop().await?;
    let run = hg.store.run(&id).await?.context("the chain run exists")?;
    let root = &run.steps[0];
    let entries: Vec<Entry> = hg
        .store
        .journal(&root.id, root.attempt)
        .await?
        .iter()
        .map(Entry::from_record)
        .collect::<anyhow::Result<_>>()?;
    let calls = entries
        .iter()
        .filter(|e| matches!(e, Entry::Workflow(WorkflowEntry::Join { .. })))
        .count();
    let prepared = hg.prepared_digest(&run.digest).await?;
    let task = prepared.task("chain").context("chain export")?;
    let params = params_from_json(&task.export.ty, &json!({"prefix": "h", "n": history + 1}))?;
    let limits = Limits::default();
    let mut resumes = Vec::new();
    for _ in 0..(if quick() { 3 } else { 20 }) {
        let started = Instant::now();
        let outcome = invoke(
            &hg.engine,
            &prepared,
            task,
            Invocation {
                context: InvocationContext {
                    run_id: id.clone(),
                    task_name: "flow/chain".into(),
                    attempt: 1,
                },
                params: &params,
                limits: &limits,
                journal: Journal::resuming(entries.clone()),
                kv: None,
                workflow: Some(hg.clone()),
                linger: None,
                cancel: None,
            },
        )
        .await;
        resumes.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(
            outcome.produced.wait.is_some() && outcome.produced.children.len() == 1,
            "the resumed chain should start one new child and wait: {:?}",
            outcome.result
        );
    }
    println!(
        "(c) resume with {calls} completed child results ({} journal entries) to the next new \
         call: {:.2} ms (median of {}); recording that chain took {:.2} s",
        entries.len(),
        median(resumes.clone()) * 1e3,
        resumes.len(),
        recording.as_secs_f64()
    );
    Ok(())
}
