//! `hypergraph demo`: build, deploy and run every example, then show what was recorded.
//!
//! Each example directory with a `demo.json` takes part. That file names the deployment and the
//! runs to make: `{"deployment": "greet", "runs": [{"task": "greet/greet", "input": {...},
//! "meta": {"k": "v"}}]}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::Value;

use super::render;
use crate::builder::{build_guest, BuildOptions};
use crate::runtime::Hypergraph;
use crate::scheduler::RunRequest;
use crate::store::{Policy, RunFilter, Status};
use crate::worker::{Worker, WorkerOptions};

#[derive(Deserialize)]
struct DemoFile {
    deployment: String,
    runs: Vec<DemoRun>,
}

#[derive(Deserialize)]
struct DemoRun {
    task: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
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

    println!("== building and deploying {} examples", demos.len());
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
        let report = hg
            .deploy(&demo.deployment, &bytes, &Policy::default())
            .await?;
        println!(
            "built {} in {:.1} s ({} KiB) -> deployed `{}` v{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            t.elapsed().as_secs_f64(),
            bytes.len() / 1024,
            report.deployment.name,
            report.deployment.version
        );
    }
    println!("\n== tasks");
    print!("{}", render::tasks_table(&hg.tasks().await?));

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
    println!(
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
        let result = match (&run.output, &run.error) {
            (Some(output), _) => format!("-> {}", serde_json::to_string(output)?),
            (None, Some(error)) => {
                failed += 1;
                format!(
                    "-> {} {}",
                    run.status,
                    serde_json::to_string(error.get("value").unwrap_or(error))?
                )
            }
            _ => format!("-> {}", run.status),
        };
        println!(
            "{} {} {}",
            request.task,
            serde_json::to_string(&request.input)?,
            result
        );
    }
    worker.stop().await?;

    println!("\n== the runs, as recorded in the database");
    let runs = hg
        .store
        .list_runs(&RunFilter {
            meta: vec![("source".into(), "demo".into())],
            limit: ids.len() as u32,
            ..RunFilter::default()
        })
        .await?;
    print!("{}", render::runs_table(&runs));
    let succeeded = runs
        .iter()
        .filter(|r| r.status == Status::Succeeded)
        .count();
    println!(
        "\n{succeeded} succeeded, {failed} failed (on purpose: application errors are recorded \
         like any result) in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    let first = ids.first().cloned().unwrap_or_default();
    println!(
        "\nTry next:\n  \
         hypergraph tasks\n  \
         hypergraph run greet/greet --input '{{\"name\": \"you\"}}' --wait\n  \
         hypergraph runs show {first}\n  \
         hypergraph runs logs {first}\n  \
         hypergraph runs replay {first}          # re-execute it against its journal: identical\n  \
         hypergraph runs export {first} -o run.hgbundle && hypergraph replay run.hgbundle\n  \
         hypergraph runs list --status failed --meta source=demo\n  \
         hypergraph run greet/Greet --wait          # a typo gets suggestions\n  \
         hypergraph run greet/greet --input '{{\"name\": 42}}' --wait   # a wrong shape fails before running"
    );
    Ok(0)
}
