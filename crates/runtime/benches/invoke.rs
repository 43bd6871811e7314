//! `cargo bench -p hypergraph --bench invoke`: the invocation floor, Hypergraph's in-memory
//! invocation path, and durable end-to-end throughput and latency on SQLite, in one run.
//!
//! (a) raw wasmtime: `InstancePre::instantiate_async` + call of a trivial export, in a new `Store`,
//!     on Hypergraph's own engine (same config: pooling allocator, epochs, CoW images).
//! (b) Hypergraph's `invoke`: the same export through the full per-attempt path (fresh store,
//!     WASI context, journal, log sink, limiter, epoch deadline, result conversion); no database.
//! (c) durable: 10,000 trivial runs submitted by 64 concurrent clients (each submit-then-wait in a
//!     loop) against a SQLite file, executed by one in-process worker; throughput and the latency
//!     each client observed from submit to result. Also a bulk variant: 10,000 runs submitted in
//!     one batch, then drained. Every durable round starts from a fresh database; a last round
//!     repeats the bulk variant on a database that already holds 50,000 completed runs.
//!
//! The durable rounds run on SQLite, or with `HYPERGRAPH_TEST_STORE=postgres` on a fresh schema
//! of the PostgreSQL server named by `HYPERGRAPH_TEST_POSTGRES` (then (c') also reports the
//! transactions committed per run); (c2) drains the bulk batch with two workers on separate
//! connections; (c3) submits one run at a time from one handle and waits for it there, while a
//! worker on a second handle (its own connections, as another process would have) executes it:
//! the latency across processes, from submission to the waiter seeing the result, and from
//! submission to the worker's claim.
//!
//! Each measurement is repeated and the median round is reported. Set
//! `HYPERGRAPH_BENCH_QUICK=1` for a fast smoke run, and `HYPERGRAPH_BENCH_INVOKE_ONLY=1` to
//! measure (a) and (b) alone.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use hypergraph_runtime::capabilities::InvocationContext;
use hypergraph_runtime::invoke::{invoke, Invocation};
use hypergraph_runtime::journal::Journal;
use hypergraph_runtime::limits::Limits;
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::{Policy, Status};
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use wasmtime::component::{Linker, Val};
use wasmtime::Store;

const COUNTER: &str = include_str!("../../../tests/fixtures/counter.wat");

fn quick() -> bool {
    std::env::var_os("HYPERGRAPH_BENCH_QUICK").is_some()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds = if quick() { 2 } else { 5 };
    let iterations = if quick() { 2_000 } else { 20_000 };
    let durable_runs = if quick() { 1_000 } else { 10_000 };

    let dir = tempfile::tempdir()?;
    let hg = hypergraph_testing::open(dir.path()).await;
    let report = hg
        .deploy("counter", COUNTER.as_bytes(), &Policy::default())
        .await?;
    let prepared = hg.prepared(&report.deployment).await?;
    let task = prepared.task("count").expect("count task");

    // (a) the floor.
    let engine = hg.engine.wasmtime();
    let linker: Linker<()> = Linker::new(engine);
    let pre = linker.instantiate_pre(&prepared.component)?;
    let mut raw_rounds = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..iterations {
            let mut store = Store::new(engine, ());
            store.set_epoch_deadline(100);
            let instance = pre.instantiate_async(&mut store).await?;
            let func = instance.get_func(&mut store, "count").expect("count");
            let mut results = [Val::Bool(false)];
            func.call_async(&mut store, &[], &mut results).await?;
            assert_eq!(results[0], Val::U32(1));
        }
        raw_rounds.push(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    let raw = median(raw_rounds);

    // (b) Hypergraph's in-memory invocation path.
    let limits = Limits::default();
    let mut full_rounds = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..iterations {
            let outcome = invoke(
                &hg.engine,
                &prepared,
                task,
                Invocation {
                    context: InvocationContext {
                        run_id: format!("bench-{i}"),
                        task_name: "counter/count".into(),
                        attempt: 1,
                    },
                    params: &[],
                    limits: &limits,
                    journal: Journal::recording(),
                    kv: None,
                    workflow: None,
                    linger: None,
                    cancel: None,
                },
            )
            .await;
            assert_eq!(outcome.result.unwrap(), serde_json::json!(1));
        }
        full_rounds.push(start.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    let full = median(full_rounds);
    if std::env::var_os("HYPERGRAPH_BENCH_INVOKE_ONLY").is_some() {
        println!("| (a) raw wasmtime instantiate + call | {raw:.2} µs/op |");
        println!("| (b) Hypergraph invoke (in memory) | {full:.2} µs/op |");
        println!("| (b)/(a) | {:.2}x |", full / raw);
        return Ok(());
    }

    // (c) durable, closed loop: 64 clients submit-then-wait, each round on a fresh database.
    let mut closed = Vec::new();
    for _ in 0..rounds.min(3) {
        let (_dir, hg) = fresh().await?;
        closed.push(durable_closed_loop(&hg, durable_runs, 64).await?);
    }
    closed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let (throughput, p50, p99) = closed[closed.len() / 2];

    // (c') durable, bulk: one batch submitted, then drained (on PostgreSQL, also counting the
    // transactions the server committed per run).
    let mut bulk = Vec::new();
    let mut commits = Vec::new();
    for _ in 0..rounds.min(3) {
        let (_dir, hg) = fresh().await?;
        let before = hypergraph_testing::postgres_commits().await;
        bulk.push(durable_bulk(&[hg], durable_runs).await?);
        if let (Some(before), Some(after)) = (before, hypergraph_testing::postgres_commits().await)
        {
            commits.push((after - before) as f64 / durable_runs as f64);
        }
    }
    let bulk = median(bulk);

    // (c2) the same batch drained by two workers, each with its own connections (as two
    // processes would be).
    let mut two = Vec::new();
    for _ in 0..rounds.min(3) {
        let (dir, hg) = fresh().await?;
        let location = hypergraph_testing::location_of(dir.path());
        let other = hypergraph_testing::open_at(&location, dir.path()).await;
        two.push(durable_bulk(&[hg, other], durable_runs).await?);
    }
    let two = median(two);

    // (c3) latency across handles: one run at a time, the worker idle in between.
    let (dir, submitter) = fresh().await?;
    let location = hypergraph_testing::location_of(dir.path());
    let executor = hypergraph_testing::open_at(&location, dir.path()).await;
    let cross = cross_handle_latency(&submitter, &executor, if quick() { 50 } else { 200 }).await?;

    // (c'') bulk again, on a database already holding 5 x `durable_runs` completed runs.
    let (_dir, big) = fresh().await?;
    let big = [big];
    for _ in 0..5 {
        durable_bulk(&big, durable_runs).await?;
    }
    let bulk_big = durable_bulk(&big, durable_runs).await?;

    println!("| measurement | result |");
    println!("| --- | --- |");
    println!("| (a) raw wasmtime instantiate + call | {raw:.1} µs/op |");
    println!("| (b) Hypergraph invoke (in memory) | {full:.1} µs/op |");
    println!("| (b)/(a) | {:.2}x |", full / raw);
    println!(
        "| (c) durable closed loop, {durable_runs} runs, 64 clients | {throughput:.0} runs/s, p50 {:.2} ms, p99 {:.2} ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!("| (c') durable bulk, {durable_runs} runs in one batch | {bulk:.0} runs/s |");
    if !commits.is_empty() {
        println!(
            "| (c') committed transactions per run (pg_stat_database) | {:.2} |",
            median(commits)
        );
    }
    println!("| (c2) the same, two workers | {two:.0} runs/s |");
    println!(
        "| (c3) one run at a time, submitted and awaited on one handle, executed on another | \
         submit to result p50 {:.1} ms, p99 {:.1} ms; submit to claim p50 {:.1} ms, p99 {:.1} ms |",
        cross.0.as_secs_f64() * 1e3,
        cross.1.as_secs_f64() * 1e3,
        cross.2.as_secs_f64() * 1e3,
        cross.3.as_secs_f64() * 1e3,
    );
    println!(
        "| (c'') the same, on a database already holding {} runs | {bulk_big:.0} runs/s |",
        5 * durable_runs
    );
    Ok(())
}

/// A Hypergraph over a new SQLite file with the trivial component deployed.
async fn fresh() -> anyhow::Result<(tempfile::TempDir, Hypergraph)> {
    let dir = tempfile::tempdir()?;
    let hg = hypergraph_testing::open(dir.path()).await;
    hg.deploy("counter", COUNTER.as_bytes(), &Policy::default())
        .await?;
    Ok((dir, hg))
}

/// Returns (runs/s, p50, p99) of submit-to-result latency.
async fn durable_closed_loop(
    hg: &Hypergraph,
    runs: usize,
    clients: usize,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let start = Instant::now();
    let per_client = runs / clients;
    let mut handles = Vec::new();
    for _ in 0..clients {
        let hg = hg.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let id = hg
                    .submit(&RunRequest {
                        task: "counter/count".into(),
                        ..RunRequest::default()
                    })
                    .await?;
                let run = hg.wait(&id, None).await?;
                anyhow::ensure!(run.status == Status::Succeeded, "run failed: {run:?}");
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let elapsed = start.elapsed();
    worker.stop().await?;
    latencies.sort();
    Ok((
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    ))
}

/// Returns runs/s for one batch of `runs` submitted at once (through the first handle) and
/// drained by one worker per handle in `hgs`.
async fn durable_bulk(hgs: &[Hypergraph], runs: usize) -> anyhow::Result<f64> {
    let hg = &hgs[0];
    let requests = vec![
        RunRequest {
            task: "counter/count".into(),
            ..RunRequest::default()
        };
        runs
    ];
    let start = Instant::now();
    let ids = hg.submit_many(&requests).await?;
    let workers: Vec<_> = hgs
        .iter()
        .map(|hg| {
            let hg = hg.clone();
            tokio::spawn(async move {
                Worker::new(hg, WorkerOptions::default())
                    .run_until_idle()
                    .await
            })
        })
        .collect();
    let mut succeeded = 0;
    for worker in workers {
        succeeded += worker.await??.succeeded as usize;
    }
    anyhow::ensure!(
        succeeded == ids.len(),
        "{succeeded} of {} runs succeeded",
        ids.len()
    );
    Ok(runs as f64 / start.elapsed().as_secs_f64())
}

/// Submits `runs` runs one at a time through `submitter` and waits for each there, while a worker
/// on `executor` runs them, pausing between runs so that the worker is idle (its poll backed off)
/// when each arrives. Returns p50 and p99 of submit-to-result, then of submit-to-claim (the
/// run's time in the queue, from the store).
async fn cross_handle_latency(
    submitter: &Hypergraph,
    executor: &Hypergraph,
    runs: usize,
) -> anyhow::Result<(Duration, Duration, Duration, Duration)> {
    let worker = Worker::new(executor.clone(), WorkerOptions::default()).spawn();
    let mut results = Vec::with_capacity(runs);
    let mut queued = Vec::with_capacity(runs);
    for _ in 0..runs {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t = Instant::now();
        let id = submitter
            .submit(&RunRequest {
                task: "counter/count".into(),
                ..RunRequest::default()
            })
            .await?;
        let run = submitter.wait(&id, Some(Duration::from_secs(30))).await?;
        results.push(t.elapsed());
        anyhow::ensure!(run.status == Status::Succeeded, "run failed: {run:?}");
        let queue_us = run.queue_us.context("a finished run was claimed")?;
        queued.push(Duration::from_micros(u64::try_from(queue_us)?));
    }
    worker.stop().await?;
    results.sort();
    queued.sort();
    Ok((
        percentile(&results, 0.50),
        percentile(&results, 0.99),
        percentile(&queued, 0.50),
        percentile(&queued, 0.99),
    ))
}
