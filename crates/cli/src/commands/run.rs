//! `hypergraph run`.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::args::RunArgs;
use crate::io::{print_json, read_input};
use crate::render;
use crate::scheduler::RunRequest;
use crate::store::{RunResult, Status};
use crate::worker::{Worker, WorkerOptions};
use crate::Hypergraph;

/// `hypergraph run <task>`: submits the run; with `--wait`, executes it in this process and
/// prints its result (exit code 1 when it did not succeed).
pub(crate) async fn run(hg: &Hypergraph, args: RunArgs) -> Result<i32> {
    let request = RunRequest {
        task: args.task,
        input: read_input(args.input)?,
        meta: args.meta,
    };
    if !args.wait {
        let id = hg.submit(&request).await?;
        if args.json.json {
            print_json(&json!({ "run_id": id, "status": "queued" }));
        } else {
            outln!("{id}");
            eprintln!(
                "queued; a worker executes it (`hypergraph worker`). Follow it with \
                 `hypergraph runs show {id}`, or use `run --wait` to execute it here."
            );
        }
        return Ok(0);
    }

    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let waited = async {
        let id = hg.submit(&request).await?;
        wait_with_progress(hg, &id, args.wait_timeout).await
    }
    .await;
    worker.stop().await?;
    let run = waited?;
    if args.json.json {
        print_json(&render::run_result_json(&run));
    } else {
        out!("{}", render::run_result_text(&run));
    }
    Ok(if run.status == Status::Succeeded {
        0
    } else {
        1
    })
}

/// Waits for a run, telling the user on stderr what it is doing when the wait gets long.
async fn wait_with_progress(
    hg: &Hypergraph,
    id: &str,
    limit: Option<Duration>,
) -> Result<RunResult> {
    let started = Instant::now();
    let wait = hg.wait(id, limit);
    tokio::pin!(wait);
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.tick().await;
    loop {
        tokio::select! {
            run = &mut wait => return run,
            _ = ticker.tick() => {
                let status = hg.store.run_status(id).await?.map(|s| s.to_string()).unwrap_or_default();
                eprintln!("waiting for run {id}: {status} ({} s)", started.elapsed().as_secs());
            }
        }
    }
}
