//! `hypergraph demo`: build, deploy and run every example, then show what was recorded.
//!
//! Each example directory with a `demo.json` takes part. That file names the deployment, its
//! optional retry policy and the runs to make: `{"deployment": "greet", "policy": {"max_attempts":
//! 3, "backoff": "200ms"}, "runs": [{"task": "greet/greet", "input": {...}, "meta": {"k":
//! "v"}}]}`. `policy` takes the keys of [`RetryPolicy`] (one attempt, no retries, without it).
//!
//! Long inputs, outputs and signatures are shortened in the printed output, with an ellipsis, so
//! that a line stays within about [`LINE_CHARS`] characters (`runs show` has them in full).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::Value;

use super::render;
use crate::builder::{build_guest, BuildOptions};
use crate::retry::RetryPolicy;
use crate::scheduler::RunRequest;
use crate::store::{Policy, RunFilter, Status};
use crate::worker::{Worker, WorkerOptions};
use crate::Hypergraph;

/// The width a printed run line is shortened to, in characters (its result gets at least
/// [`MIN_RESULT_CHARS`]).
const LINE_CHARS: usize = 160;
/// The longest input printed in full on a run line.
const INPUT_CHARS: usize = 60;
/// The least room a run's result gets on its line.
const MIN_RESULT_CHARS: usize = 60;
/// The longest signature printed in full in the tasks table.
const SIGNATURE_CHARS: usize = 110;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoFile {
    deployment: String,
    /// The deployment's retry policy (default: one attempt).
    #[serde(default)]
    policy: RetryPolicy,
    runs: Vec<DemoRun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoRun {
    task: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
}

/// `text` cut to `max` characters (at least 1), the cut marked with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.max(1) - 1).collect();
    short.push('…');
    short
}

/// A JSON value on one line, shortened to `max` characters.
fn shown(value: &Value, max: usize) -> Result<String> {
    Ok(shorten(&serde_json::to_string(value)?, max))
}

fn examples_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = [
        given,
        Some(PathBuf::from("examples")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_dir())
        .context("cannot find the examples directory; pass --examples <dir>")
}

/// Runs the demo against `hg` (the embedded SQLite database by default).
pub async fn run(hg: &Hypergraph, examples: Option<PathBuf>) -> Result<i32> {
    let started = Instant::now();
    let dir = examples_dir(examples)?.canonicalize()?;
    let target_dir = dir.join("../target/guests");
    let mut demos = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let demo_file = path.join("demo.json");
        if demo_file.is_file() {
            let demo: DemoFile = serde_json::from_str(&std::fs::read_to_string(&demo_file)?)
                .with_context(|| format!("reading {}", demo_file.display()))?;
            demos.push((path, demo));
        }
    }
    demos.sort_by(|a, b| a.0.cmp(&b.0));
    anyhow::ensure!(
        !demos.is_empty(),
        "no example with a demo.json in {}",
        dir.display()
    );

    outln!("== building and deploying {} examples", demos.len());
    for (path, demo) in &demos {
        let options = BuildOptions {
            target_dir: Some(target_dir.clone()),
            ..BuildOptions::default()
        };
        let crate_dir = path.clone();
        let t = Instant::now();
        let wasm = tokio::task::spawn_blocking(move || build_guest(&crate_dir, &options))
            .await?
            .with_context(|| format!("building {}", path.display()))?;
        let bytes = std::fs::read(&wasm)?;
        let policy = Policy {
            retry: demo.policy.clone(),
            ..Policy::default()
        };
        let report = hg
            .deploy(&demo.deployment, &bytes, &policy)
            .await
            .with_context(|| format!("deploying {}", path.display()))?;
        let retries = match policy.retry.max_attempts() {
            1 => String::new(),
            n => format!(
                ", up to {n} attempts per step (backoff {})",
                humantime::format_duration(policy.retry.backoff())
            ),
        };
        outln!(
            "built {} in {:.1} s ({} KiB) -> deployed `{}` v{}{retries}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            t.elapsed().as_secs_f64(),
            bytes.len() / 1024,
            report.deployment.name,
            report.deployment.version
        );
    }
    outln!("\n== tasks");
    let tasks: Vec<_> = hg
        .tasks()
        .await?
        .into_iter()
        .map(|mut task| {
            task.signature = shorten(&task.signature, SIGNATURE_CHARS);
            task
        })
        .collect();
    out!("{}", render::tasks_table(&tasks));

    let requests: Vec<RunRequest> = demos
        .iter()
        .flat_map(|(_, demo)| &demo.runs)
        .map(|r| RunRequest {
            task: r.task.clone(),
            input: r.input.clone(),
            meta: std::iter::once(("source".to_string(), "demo".to_string()))
                .chain(r.meta.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
        })
        .collect();
    outln!(
        "\n== running {} tasks, each in a fresh instance",
        requests.len()
    );
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let mut ids = Vec::new();
    for request in &requests {
        ids.push(hg.submit(request).await?);
    }
    let mut failed = 0;
    for (request, id) in requests.iter().zip(&ids) {
        let run = hg.wait(id, None).await?;
        let head = format!(
            "{} {} ->",
            request.task,
            shown(&request.input, INPUT_CHARS)?
        );
        let room = LINE_CHARS
            .saturating_sub(head.chars().count() + 1)
            .max(MIN_RESULT_CHARS);
        let result = match (&run.output, &run.error) {
            (Some(output), _) => shown(output, room)?,
            (None, Some(error)) => {
                failed += 1;
                let status = format!("{} ", run.status);
                let value = error.get("value").unwrap_or(error);
                status.clone() + &shown(value, room.saturating_sub(status.len()))?
            }
            _ => run.status.to_string(),
        };
        outln!("{head} {result}");
        // Retried steps, so that retries under the example's policy show.
        if let Some(detail) = hg.store.run(id).await? {
            for step in detail.steps.iter().filter(|s| s.attempts.len() > 1) {
                outln!(
                    "    retried: {} {} after {} attempts",
                    step.task,
                    step.status,
                    step.attempts.len()
                );
            }
        }
    }
    worker.stop().await?;

    outln!("\n== the runs, as recorded in the database");
    let runs = hg
        .store
        .list_runs(&RunFilter {
            meta: vec![("source".into(), "demo".into())],
            limit: ids.len() as u32,
            ..RunFilter::default()
        })
        .await?;
    out!("{}", render::runs_table(&runs));
    let succeeded = runs
        .iter()
        .filter(|r| r.status == Status::Succeeded)
        .count();
    outln!(
        "\n{succeeded} succeeded, {failed} failed (on purpose: application errors are recorded \
         like any result) in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    let first = ids.first().cloned().unwrap_or_default();
    outln!(
        "\nTry next:\n  \
         hypergraph tasks\n  \
         hypergraph run greet/greet --input '{{\"name\": \"you\"}}' --wait\n  \
         hypergraph runs show {first}\n  \
         hypergraph runs logs {first}\n  \
         hypergraph runs replay {first}          # re-execute it against its journal: identical\n  \
         hypergraph runs export {first} -o run.hgbundle && hypergraph replay run.hgbundle\n  \
         hypergraph runs list --status failed --meta source=demo\n  \
         hypergraph deploy examples/transcripts/pipeline.dag.toml   # the transcripts pipeline as a DAG\n  \
         hypergraph run transcripts-dag --input @examples/transcripts/inputs/review.json --wait\n  \
         hypergraph run greet/Greet --wait          # a typo gets suggestions\n  \
         hypergraph run greet/greet --input '{{\"name\": 42}}' --wait   # a wrong shape fails before running"
    );
    Ok(0)
}
