//! `hypergraph run`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

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
    if let Some(file) = &args.inputs {
        return submit_lines(hg, &args, file).await;
    }
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

/// `hypergraph run <task> --inputs <file>`: one run per JSON line, enqueued together.
async fn submit_lines(hg: &Hypergraph, args: &RunArgs, file: &str) -> Result<i32> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading --inputs from stdin")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("reading the --inputs file `{file}`"))?
    };
    let requests = inputs_of(&text)?
        .into_iter()
        .map(|input| RunRequest {
            task: args.task.clone(),
            input,
            meta: args.meta.clone(),
        })
        .collect::<Vec<_>>();
    // A wrong input is reported as `run N of M`: run N is line N.
    let ids = hg
        .submit_many(&requests)
        .await
        .with_context(|| format!("nothing submitted from --inputs `{file}`"))?;
    if args.json.json {
        print_json(&json!({ "run_ids": ids, "status": "queued" }));
    } else {
        for id in &ids {
            outln!("{id}");
        }
        eprintln!("{} runs queued; a worker executes them.", ids.len());
    }
    Ok(0)
}

/// The inputs of a JSON Lines text: one JSON value per line, so that run N is line N.
fn inputs_of(text: &str) -> Result<Vec<Value>> {
    let inputs = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            if line.trim().is_empty() {
                anyhow::bail!(
                    "--inputs line {} is blank: expected one JSON value per line",
                    n + 1
                );
            }
            serde_json::from_str(line)
                .with_context(|| format!("--inputs line {} is not valid JSON", n + 1))
        })
        .collect::<Result<Vec<Value>>>()?;
    if inputs.is_empty() {
        anyhow::bail!("--inputs holds no input: expected one JSON value per line");
    }
    Ok(inputs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_one_input_each_and_bad_lines_are_named() {
        let inputs = inputs_of("{\"key\": \"a\"}\n7\n\"text\"\n").unwrap();
        assert_eq!(inputs, vec![json!({"key": "a"}), json!(7), json!("text")]);
        let err = inputs_of("1\n{oops\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("line 2 is not valid JSON"),
            "{err:#}"
        );
        let err = inputs_of("1\n\n2\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2 is blank"), "{err:#}");
        let err = inputs_of("").unwrap_err();
        assert!(format!("{err:#}").contains("holds no input"), "{err:#}");
    }
}
