//! `hypergraph worker` and `hypergraph serve`: executing queued steps.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::args::{ServeArgs, WorkerArgs};
use crate::io::print_json;
use crate::store::location::DbLocation;
use crate::worker::{Worker, WorkerOptions};
use crate::Hypergraph;

/// What a worker says when it starts: the database it works on (a PostgreSQL URL without its
/// password), its id, concurrency and heartbeat, so that a worker is never a silent process.
fn started(worker: &Worker, location: &DbLocation, heartbeat: Duration) -> String {
    format!(
        "worker {} on {location} (concurrency {}, heartbeat every {})",
        worker.info().id,
        worker.info().concurrency,
        humantime::format_duration(heartbeat)
    )
}

/// `hypergraph worker`: executes queued steps until Ctrl-C or, with `--until-idle`, until none
/// is left, then prints what it did.
pub(crate) async fn worker(
    hg: &Hypergraph,
    location: &DbLocation,
    args: WorkerArgs,
) -> Result<i32> {
    let worker = Worker::new(
        hg.clone(),
        WorkerOptions {
            concurrency: args.concurrency,
            heartbeat: args.heartbeat.every,
            ..WorkerOptions::default()
        },
    );
    if !args.json.json {
        eprintln!(
            "{} started{}",
            started(&worker, location, args.heartbeat.every),
            if args.until_idle {
                "; stops when idle"
            } else {
                "; Ctrl-C stops it"
            }
        );
    }
    let stats = if args.until_idle {
        worker.run_until_idle().await?
    } else {
        worker
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    if args.json.json {
        print_json(&stats);
    } else {
        eprintln!(
            "worker stopped: {} executed, {} succeeded, {} failed, {} suspended, {} discarded (stale or cancelled attempts)",
            stats.executed, stats.succeeded, stats.failed, stats.suspended, stats.fenced
        );
    }
    Ok(0)
}

/// `hypergraph serve`: workers until Ctrl-C or SIGTERM, then in-flight steps finish and commit.
pub(crate) async fn serve(hg: &Hypergraph, location: &DbLocation, args: &ServeArgs) -> Result<i32> {
    let (concurrency, lease) = (args.concurrency, args.lease);
    anyhow::ensure!(
        lease >= Duration::from_millis(300),
        "--lease must be at least 300ms (it is renewed every third of it)"
    );
    let worker = Worker::new(
        hg.clone(),
        WorkerOptions {
            concurrency,
            lease,
            linger: args.linger,
            heartbeat: args.heartbeat.every,
            ..WorkerOptions::default()
        },
    );
    eprintln!(
        "serving: {}; Ctrl-C or SIGTERM stops it",
        started(&worker, location, args.heartbeat.every)
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let stats = worker
        .run_until(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await?;
    eprintln!(
        "stopped: {} executed, {} succeeded, {} failed, {} suspended, {} discarded (stale or \
         cancelled attempts), {} re-executed after key-value conflicts",
        stats.executed,
        stats.succeeded,
        stats.failed,
        stats.suspended,
        stats.fenced,
        stats.conflicts
    );
    Ok(0)
}
