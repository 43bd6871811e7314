//! Submitting runs and waiting for them.
//!
//! A submission resolves the task name, converts the JSON input against the task's WIT signature
//! (so a wrong shape fails before anything is stored or run), and enqueues the run with its single
//! step in one transaction. Any worker on the same database may then execute it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{Map, Value};

use crate::convert::{params_from_json, val_to_json};
use crate::registry::ResolvedTask;
use crate::runtime::Hypergraph;
use crate::store::{now_micros, NewRun, RunDetail};

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
        let mut resolved: Option<ResolvedTask> = None;
        for request in requests {
            validate_meta(&request.meta)?;
            if resolved.as_ref().map(|r| r.name != request.task).unwrap_or(true) {
                resolved = Some(self.resolve(&request.task).await?);
            }
            let task = resolved.as_ref().expect("just resolved");
            let input = canonical_input(task, &request.input)?;
            runs.push(NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                step_id: uuid::Uuid::now_v7().to_string(),
                task: request.task.clone(),
                deployment: task.deployment.name.clone(),
                version: task.deployment.version,
                digest: task.deployment.digest.clone(),
                input,
                meta: request.meta.clone(),
                created_at: now_micros(),
            });
        }
        self.store.submit_runs(&runs).await?;
        self.submitted.notify_waiters();
        Ok(runs.into_iter().map(|r| r.id).collect())
    }

    /// Waits until run `id` reaches a terminal status and returns it. Completions committed by this
    /// process wake the wait at once; runs executed by other processes are found by polling.
    /// `timeout` bounds the wait.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<RunDetail> {
        let started = Instant::now();
        let mut poll = Duration::from_millis(2);
        loop {
            let completed = self.completed.notified();
            let status = self
                .store
                .run_status(id)
                .await?
                .with_context(|| format!("run `{id}` not found"))?;
            if status.is_terminal() {
                return self
                    .store
                    .run(id)
                    .await?
                    .with_context(|| format!("run `{id}` not found"));
            }
            if let Some(limit) = timeout {
                if started.elapsed() >= limit {
                    bail!(
                        "run `{id}` is still {status} after {} s; it keeps going — check it \
                         later with `hypergraph runs show {id}`",
                        limit.as_secs()
                    );
                }
            }
            tokio::select! {
                _ = completed => {}
                _ = tokio::time::sleep(poll) => {}
            }
            poll = (poll * 2).min(Duration::from_millis(200));
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
