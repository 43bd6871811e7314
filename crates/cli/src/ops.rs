//! Operating runs: `serve`, `runs cancel`, `runs resume`, `events send`.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{print_json, ServeArgs};
use crate::capabilities::workflow::{validate_event_name, MAX_EVENT_PAYLOAD_BYTES};
use crate::limits::{format_bytes, json_len};
use crate::resume::Resumed;
use crate::worker::{Worker, WorkerOptions};
use crate::Hypergraph;

/// `hypergraph serve`: workers until Ctrl-C or SIGTERM, then in-flight steps finish and commit.
pub(super) async fn serve(hg: &Hypergraph, args: &ServeArgs) -> Result<i32> {
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
            ..WorkerOptions::default()
        },
    );
    eprintln!(
        "serving: worker {} (concurrency {concurrency}); Ctrl-C or SIGTERM stops it",
        worker.info().id
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

/// `hypergraph runs cancel <id>`.
pub(super) async fn runs_cancel(hg: &Hypergraph, id: &str, as_json: bool) -> Result<i32> {
    let Some(cancelled) = hg.store.cancel_run(id).await? else {
        anyhow::bail!("no run `{id}` (list runs with `hypergraph runs list`)");
    };
    if as_json {
        print_json(
            &json!({ "run_id": id, "cancelled_steps": cancelled.steps, "changed": cancelled.changed }),
        );
    } else if cancelled.changed {
        outln!(
            "cancelled run {id}: {} unfinished step(s) cancelled; running attempts stop within a second",
            cancelled.steps
        );
    } else {
        outln!("run {id} had already finished; nothing changed");
    }
    Ok(0)
}

/// `hypergraph events send <name> [--payload <json>]`.
pub(super) async fn send_event(
    hg: &Hypergraph,
    name: &str,
    payload: Option<&serde_json::Value>,
    as_json: bool,
) -> Result<i32> {
    validate_event_name(name)?;
    let payload = payload.unwrap_or(&serde_json::Value::Null);
    let size = json_len(payload);
    anyhow::ensure!(
        size <= MAX_EVENT_PAYLOAD_BYTES,
        "the payload of event `{name}` is {}, larger than the limit of {}",
        format_bytes(size),
        format_bytes(MAX_EVENT_PAYLOAD_BYTES)
    );
    let (seq, woken) = hg.store.send_event(name, &payload.to_string()).await?;
    if as_json {
        print_json(&json!({ "event": name, "seq": seq, "woken": woken }));
    } else {
        outln!("sent event `{name}` (#{seq}); {woken} waiting workflow(s) woken");
    }
    Ok(0)
}

/// Prints what `runs resume` (or `runs replay --resume`) did.
pub(super) fn print_resumed(resumed: &[Resumed], as_json: bool) -> Result<i32> {
    if as_json {
        print_json(&resumed);
        return Ok(0);
    }
    if resumed.is_empty() {
        outln!("no runs match");
    }
    for r in resumed {
        let moved: Vec<String> = r
            .moved_to
            .iter()
            .map(|(name, version)| format!("{name} v{version}"))
            .collect();
        let moved = if moved.is_empty() {
            String::new()
        } else {
            format!(" on {}", moved.join(", "))
        };
        outln!(
            "resumed run {}: {} step(s) queued again{moved}; completed steps are reused",
            r.run_id,
            r.steps
        );
    }
    if !resumed.is_empty() {
        outln!("a worker executes them: `hypergraph serve` or `hypergraph worker --until-idle`");
    }
    Ok(0)
}
