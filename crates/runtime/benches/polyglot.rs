//! `cargo bench -p hypergraph --bench polyglot`: what a task costs in each guest language.
//!
//! Builds the `bump` guest of each language with `hypergraph build` (`tests/guests/rust-bump`,
//! `tests/guests/<python|js|c|go>-guarantees`), then measures per language:
//!
//! 1. component size;
//! 2. first compile (`Component::new`, no cache);
//! 3. load from the on-disk compile cache in a new process (this binary re-executed with
//!    `--load <cwasm>`: process start + engine + deserialize);
//! 4. fresh instance + trivial call through Hypergraph's `invoke` (new store, WASI context,
//!    journal, limits), p50 and p99 of single calls;
//! 5. durable throughput of trivial runs: `runs` submitted in one batch to a SQLite file and
//!    drained by one in-process worker (instantiate, call, commit per run).
//!
//! `HYPERGRAPH_BENCH_QUICK=1` for a smoke run; `HYPERGRAPH_BENCH_LANGS=python,js` to pick
//! languages; `HYPERGRAPH_BENCH_PROFILE=python` loops (4) only, for a profiler or an A/B
//! comparison (`HYPERGRAPH_BENCH_PROFILE_CALLS`, default 100,000 calls; the compile cache is
//! `target/bench-profile-compile-cache`, so only the first such run compiles).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::capabilities::InvocationContext;
use hypergraph_runtime::engine::{Engine, EngineOptions};
use hypergraph_runtime::invoke::{invoke, Invocation};
use hypergraph_runtime::journal::Journal;
use hypergraph_runtime::limits::Limits;
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::store::Policy;
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;

/// (language, project directory under the repository, trivial task)
const GUESTS: &[(&str, &str, &str)] = &[
    ("rust", "tests/guests/rust-bump", "bump"),
    ("python", "tests/guests/python-guarantees", "bump"),
    ("js", "tests/guests/js-guarantees", "bump"),
    ("c", "tests/guests/c-guarantees", "bump"),
    ("go", "tests/guests/go-guarantees", "bump"),
];

fn quick() -> bool {
    std::env::var_os("HYPERGRAPH_BENCH_QUICK").is_some()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // Child mode for measurement 3: load one cached artifact in a new process and exit.
    if let Some(at) = args.iter().position(|a| a == "--load") {
        let cache = PathBuf::from(&args[at + 1]);
        let bytes_path = PathBuf::from(&args[at + 2]);
        return load_in_process(&cache, &bytes_path);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

fn load_in_process(cache: &Path, component: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let engine = Engine::new(EngineOptions {
            cache_dir: Some(cache.to_path_buf()),
            max_instances: 0,
        })?;
        let bytes = std::fs::read(component)?;
        engine.prepare_bytes(&bytes).await?;
        anyhow::Ok(())
    })
}

async fn run() -> anyhow::Result<()> {
    let langs: Vec<String> = std::env::var("HYPERGRAPH_BENCH_LANGS")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| GUESTS.iter().map(|g| g.0.to_string()).collect());
    let profile = std::env::var("HYPERGRAPH_BENCH_PROFILE").ok();
    let calls = if quick() { 200 } else { 2_000 };
    let durable_runs = if quick() { 300 } else { 3_000 };

    let mut rows = Vec::new();
    for (lang, dir, task) in GUESTS {
        if !langs.iter().any(|l| l == lang) && profile.as_deref() != Some(lang) {
            continue;
        }
        if profile.as_deref().is_some_and(|p| p != *lang) {
            continue;
        }
        let options = BuildOptions {
            target_dir: Some(repo().join("target/guests")),
            ..BuildOptions::default()
        };
        let path = build_guest(&repo().join(dir), &options)?;
        let bytes = std::fs::read(&path)?;
        let work = tempfile::tempdir()?;

        // 2. first compile, no cache (not in profile mode, which reuses one compile cache).
        let mut compile = Duration::ZERO;
        if profile.is_none() {
            let engine = Engine::new(EngineOptions::default())?;
            let started = Instant::now();
            engine.compile(&bytes)?;
            compile = started.elapsed();
        }

        // The deployment everything else uses; its compile fills the disk cache.
        let store = SqliteStore::open(&work.path().join("bench.db")).await?;
        let cache = match profile {
            Some(_) => repo().join("target/bench-profile-compile-cache"),
            None => work.path().join("cache"),
        };
        let hg = Hypergraph::new(Arc::new(store), Some(cache.clone()))?;
        let report = hg.deploy(lang, &bytes, &Policy::default()).await?;
        let prepared = hg.prepared(&report.deployment).await?;
        let prepared_task = prepared.task(task).expect("bump task");

        // 3. load from the disk cache in a new process.
        let mut loads = Vec::new();
        for _ in 0..if profile.is_some() { 0 } else { 3 } {
            let started = Instant::now();
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("--load")
                .arg(&cache)
                .arg(&path)
                .status()?;
            anyhow::ensure!(status.success(), "loading in a new process failed");
            loads.push(started.elapsed());
        }
        loads.sort();

        // 4. fresh instance + trivial call.
        let limits = Limits::default();
        let iterations = match &profile {
            Some(_) => std::env::var("HYPERGRAPH_BENCH_PROFILE_CALLS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100_000),
            None => calls,
        };
        let mut latencies = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let started = Instant::now();
            let outcome = invoke(
                &hg.engine,
                &prepared,
                prepared_task,
                Invocation {
                    context: InvocationContext {
                        run_id: format!("bench-{i}"),
                        task_name: format!("{lang}/{task}"),
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
            latencies.push(started.elapsed());
            anyhow::ensure!(
                outcome.result.as_ref().ok() == Some(&serde_json::json!(1)),
                "{lang}/{task} did not return 1: {:?}",
                outcome.result
            );
        }
        latencies.sort();
        if profile.is_some() {
            println!(
                "{lang}: p50 {} p90 {} mean {}",
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.9)),
                ms(latencies.iter().sum::<Duration>() / latencies.len() as u32)
            );
            return Ok(());
        }

        // 5. durable throughput: one batch, drained by one worker.
        let requests = vec![
            RunRequest {
                task: format!("{lang}/{task}"),
                ..RunRequest::default()
            };
            durable_runs
        ];
        let started = Instant::now();
        let ids = hg.submit_many(&requests).await?;
        let stats = Worker::new(hg.clone(), WorkerOptions::default())
            .run_until_idle()
            .await?;
        anyhow::ensure!(stats.succeeded as usize == ids.len(), "{stats:?}");
        let throughput = durable_runs as f64 / started.elapsed().as_secs_f64();

        rows.push(format!(
            "| {lang} | {:.0} KB | {:.2} s | {} | {} / {} | {throughput:.0} runs/s |",
            bytes.len() as f64 / 1e3,
            compile.as_secs_f64(),
            ms(loads[1]),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        ));
    }
    println!("| language | component | first compile | load from disk cache, new process | fresh instance + trivial call, p50 / p99 | durable trivial runs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
