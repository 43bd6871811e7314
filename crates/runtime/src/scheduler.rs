//! Submitting runs and waiting for them.
//!
//! A submission resolves the task name, converts the JSON input against the task's WIT signature
//! (so a wrong shape fails before anything is stored or run), and enqueues the run with its single
//! step. Concurrent submissions from one process are group-committed: a single submitter task
//! writes everything queued since its last transaction in one transaction, and each caller returns
//! once its runs are durable. Any worker on the same database may then execute them.

use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::convert::{params_from_json, val_to_json};
use crate::limits::check_input_size;
use crate::registry::{ResolvedTask, Runnable};
use crate::store::{now_micros, NewRun, RunResult, Store};
use crate::Hypergraph;

/// Most runs written by one group-committed submission transaction.
const SUBMIT_BATCH: usize = 1024;

/// Longest pause between two looks at a run being waited for, when only polling finds the
/// end of a run executed by another process.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// [`WAIT_POLL`] while other processes' wake-ups reach the waiter: they announce the ends of
/// their runs, and polling only finds what was never announced (a run ended by its deadline,
/// an announcement lost).
const WAIT_POLL_LISTENING: Duration = Duration::from_secs(1);

/// Runs waiting to be written, and who to tell when they are.
struct Pending {
    runs: Vec<NewRun>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the task that group-commits this process's submissions.
pub(crate) struct Submitter {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Submitter {
    fn start(store: Arc<dyn Store>) -> Submitter {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(submit_loop(store, rx));
        Submitter { queue }
    }
}

/// Writes queued submissions, as many as are waiting (up to [`SUBMIT_BATCH`] runs) per
/// transaction. If a combined transaction fails, each submission is retried alone so one bad
/// submission cannot fail the others.
async fn submit_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut count = group[0].runs.len();
        while count < SUBMIT_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    count += next.runs.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let all: Vec<NewRun> = group.iter().flat_map(|p| p.runs.iter().cloned()).collect();
        if group.len() > 1 && store.submit_runs(&all).await.is_ok() {
            for pending in group {
                let _ = pending.done.send(Ok(()));
            }
            continue;
        }
        for pending in group {
            let result = store.submit_runs(&pending.runs).await;
            let _ = pending.done.send(result.map_err(|e| format!("{e:#}")));
        }
    }
}

/// A run to submit.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    pub task: String,
    /// The task input: an object keyed by parameter name (or the bare value for a one-parameter
    /// function); `null` for a function without parameters.
    pub input: Value,
    pub meta: Vec<(String, String)>,
}

/// Checks metadata tags: non-empty keys, no duplicate keys.
pub fn validate_meta(meta: &[(String, String)]) -> Result<()> {
    for (i, (key, _)) in meta.iter().enumerate() {
        if key.is_empty() {
            bail!("metadata keys must not be empty (use --meta key=value)");
        }
        if meta[..i].iter().any(|(k, _)| k == key) {
            bail!("metadata key `{key}` is given twice");
        }
    }
    Ok(())
}

/// Converts `input` against the task's signature and returns its canonical JSON form: an object
/// with every parameter by name, in the form `hypergraph` itself prints values.
pub fn canonical_input(task: &ResolvedTask, input: &Value) -> Result<Value> {
    check_input_size(input, &task.deployment.policy)
        .with_context(|| format!("invalid input for task `{}`", task.name))?;
    let export = &task.task().export;
    let params = params_from_json(&export.ty, input)
        .map_err(|e| anyhow::anyhow!("invalid input for task `{}`: {e}", task.name))?;
    let mut object = Map::new();
    for ((name, _), value) in export.ty.params().zip(&params) {
        object.insert(name.to_string(), val_to_json(value));
    }
    Ok(Value::Object(object))
}

impl Hypergraph {
    /// Validates and enqueues one run; returns its id.
    pub async fn submit(&self, request: &RunRequest) -> Result<String> {
        let mut ids = self.submit_many(std::slice::from_ref(request)).await?;
        Ok(ids.remove(0))
    }

    /// Validates and enqueues several runs in one transaction; returns their ids in order. Nothing
    /// is enqueued if any request is invalid.
    pub async fn submit_many(&self, requests: &[RunRequest]) -> Result<Vec<String>> {
        let mut runs = Vec::with_capacity(requests.len());
        let mut resolved: Option<Runnable> = None;
        for (i, request) in requests.iter().enumerate() {
            let which = || format!("run {} of {}", i + 1, requests.len());
            validate_meta(&request.meta)?;
            if resolved.as_ref().is_none_or(|r| r.name() != request.task) {
                resolved = Some(self.resolve_runnable(&request.task).await?);
            }
            // What the run executes, and its input: any JSON for a DAG workflow, the canonical
            // form of the task's parameters for a component's task.
            let (deployment, input) = match resolved.as_ref().expect("just resolved") {
                Runnable::Dag(dag) => {
                    check_input_size(&request.input, &dag.policy)
                        .with_context(|| format!("invalid input for workflow `{}`", request.task))
                        .with_context(which)?;
                    (dag, request.input.clone())
                }
                Runnable::Task(task) => (
                    &task.deployment,
                    canonical_input(task, &request.input).with_context(which)?,
                ),
            };
            let now = now_micros();
            runs.push(NewRun {
                start_deadline: deployment.policy.start_deadline(now),
                deadline: deployment.policy.run_deadline(now),
                id: uuid::Uuid::now_v7().to_string(),
                step_id: uuid::Uuid::now_v7().to_string(),
                task: request.task.clone(),
                deployment: deployment.name.clone(),
                version: deployment.version,
                digest: deployment.digest.clone(),
                input,
                meta: request.meta.clone(),
                created_at: now,
            });
        }
        let ids = runs.iter().map(|r| r.id.clone()).collect();
        let submitter = self
            .submitter
            .get_or_init(|| async { Submitter::start(self.store.clone()) })
            .await;
        let (done, written) = oneshot::channel();
        submitter
            .queue
            .send(Pending { runs, done })
            .map_err(|_| anyhow::anyhow!("the submitter stopped"))?;
        written
            .await
            .context("the submitter stopped")?
            .map_err(|e| anyhow::anyhow!("storing the runs failed: {e}"))?;
        self.signals.submitted.notify_waiters();
        Ok(ids)
    }

    /// Waits until run `id` reaches a terminal status and returns its result. Completions
    /// committed by this process wake the wait at once, and so do other processes' while their
    /// wake-ups reach this handle ([`Hypergraph::listening`]); otherwise runs executed by other
    /// processes are found by polling. `timeout` bounds the wait.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<RunResult> {
        let result = self.wait_inner(id, timeout).await;
        self.signals.runs.forget([id]);
        result
    }

    async fn wait_inner(&self, id: &str, timeout: Option<Duration>) -> Result<RunResult> {
        let started = Instant::now();
        let mut poll = Duration::from_millis(2);
        loop {
            let completed = self.signals.runs.register([id]);
            let run = self
                .store
                .run_result(id)
                .await?
                .with_context(|| format!("run `{id}` not found"))?;
            if run.status.is_terminal() {
                return Ok(run);
            }
            if let Some(limit) = timeout {
                if started.elapsed() >= limit {
                    bail!(
                        "run `{id}` is still {} after {} s; it keeps going — check it later \
                         with `hypergraph runs show {id}`",
                        run.status,
                        limit.as_secs()
                    );
                }
            }
            tokio::select! {
                _ = completed.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            let longest = if self.listening() {
                WAIT_POLL_LISTENING
            } else {
                WAIT_POLL
            };
            poll = (poll * 2).min(longest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_rules() {
        validate_meta(&[("a".into(), "1".into()), ("b".into(), "".into())]).unwrap();
        assert!(validate_meta(&[("".into(), "1".into())]).is_err());
        assert!(validate_meta(&[("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    }
}
