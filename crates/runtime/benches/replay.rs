//! `cargo bench -p hypergraph --bench replay`: the cost of journaling a host call and of replaying
//! a long journal.
//!
//! (d) replay: an attempt that made 10,000 journaled host calls (monotonic clock reads) is loaded
//!     from SQLite once, then replayed against its journal (journal records parsed, fresh
//!     instance, every call answered and checked, result compared); median of 7 replays.
//! (e) recording overhead: the same 10,000-call loop executed live with every call journaled,
//!     against the same loop calling a host function that is not journaled
//!     (`hypergraph:task/context.attempt`); the difference per call is what journaling adds.
//!     Median of 7 invocations each.

use std::sync::Arc;
use std::time::Instant;

use hypergraph_runtime::capabilities::InvocationContext;
use hypergraph_runtime::invoke::{invoke, Invocation};
use hypergraph_runtime::journal::Journal;
use hypergraph_runtime::limits::Limits;
use hypergraph_runtime::replay::{load, replay};
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::store::Policy;
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use wasmtime::component::Val;

const HOST_CALLS: &str = include_str!("../../../tests/fixtures/host-calls.wat");
const CALLS: u32 = 10_000;
const ROUNDS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db")).await?;
    let hg = Hypergraph::new(Arc::new(store), Some(dir.path().join("cache")))?;
    let report = hg
        .deploy("calls", HOST_CALLS.as_bytes(), &Policy::default())
        .await?;
    let prepared = hg.prepared(&report.deployment).await?;

    // (d) record one 10,000-call attempt durably, then replay it.
    let id = hg
        .submit(&RunRequest {
            task: "calls/clock".into(),
            input: CALLS.into(),
            meta: vec![],
        })
        .await?;
    Worker::new(hg.clone(), WorkerOptions::default())
        .run_until_idle()
        .await?;
    let recorded = load(hg.store.as_ref(), &id).await?;
    let entries = recorded.steps[0].attempts[0].journal.len();
    anyhow::ensure!(entries == CALLS as usize, "journal has {entries} entries");
    let mut replays = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let report = replay(&hg.engine, &prepared, &recorded).await?;
        replays.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(report.identical(), "replay diverged: {report:?}");
    }
    let replay_ms = median(replays);

    // (e) live invocations: journaled vs unjournaled host calls.
    let limits = Limits::default();
    let per_call = |task: &'static str| {
        let hg = hg.clone();
        let prepared = prepared.clone();
        let limits = limits.clone();
        async move {
            let task = prepared.task(task).expect("task");
            let mut times = Vec::new();
            for _ in 0..ROUNDS {
                let start = Instant::now();
                let outcome = invoke(
                    &hg.engine,
                    &prepared,
                    task,
                    Invocation {
                        context: InvocationContext::default(),
                        params: &[Val::U32(CALLS)],
                        limits: &limits,
                        journal: Journal::recording(),
                        kv: None,
                        workflow: None,
                        linger: None,
                        cancel: None,
                    },
                )
                .await;
                times.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS));
                assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            }
            median(times)
        }
    };
    let journaled = per_call("clock").await;
    let unjournaled = per_call("context").await;

    println!("| measurement | result |");
    println!("| --- | --- |");
    println!("| (d) replay of an attempt with {entries} journal entries | {replay_ms:.1} ms |");
    println!("| (e) journaled host call (monotonic clock read), live | {journaled:.0} ns/call |");
    println!("| (e) unjournaled host call (context.attempt), live | {unjournaled:.0} ns/call |");
    println!(
        "| (e) recording overhead | {:.0} ns/call |",
        journaled - unjournaled
    );
    Ok(())
}
