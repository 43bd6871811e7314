//! Executing DAG workflows: a built-in workflow, written in Rust against the same journaled
//! workflow calls as a workflow component.
//!
//! The root step of a DAG run is executed by [`run_dag`] instead of a component. Like any
//! workflow it is re-executed from the start on every resume, with every earlier call answered
//! from its journal: it starts every step whose parents have all succeeded (in file order), then
//! waits for *any* started step to finish (`workflow.join_any`), and repeats. Each DAG step is a
//! child step of the run, called with an object keyed by its task's parameter names (`input`, a
//! parent's name, an `args` key; see [`crate::dag`]) and with its `[step.policy]` overriding its
//! deployment's. Once a step has failed (after its retries) no new step starts; when the running
//! ones have finished, the `on_failure` task (if any) is called with the list of failed steps and
//! their errors, and the run fails with the same list. A run that succeeds outputs an object
//! with every step's output by step name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use crate::capabilities::bindings::hypergraph::workflow::workflow::Host as _;
use crate::capabilities::kv::KvState;
use crate::capabilities::workflow::{ChildOptions, ChildResult, Linger, WorkflowState};
use crate::capabilities::{HostState, InvocationContext};
use crate::dag::{DagSpec, DagStep};
use crate::invoke::{ErrorKind, Outcome, TaskError};
use crate::journal::Journal;
use crate::limits::Limits;
use crate::store::{now_micros, ClaimedStep, Policy};
use crate::Hypergraph;

/// Runs one activation of the DAG workflow of `step` (whose digest names the DAG file).
/// Its joins linger when `linger` is set, like a workflow component's.
pub async fn run_dag(
    hg: &Hypergraph,
    step: &ClaimedStep,
    journal: Journal,
    linger: Option<Linger>,
) -> Result<Outcome> {
    let bytes = hg.component_bytes(&step.digest).await?;
    let text = std::str::from_utf8(&bytes).context("the stored DAG file is not UTF-8")?;
    let spec = DagSpec::parse(text).map_err(|e| anyhow::anyhow!("the stored DAG file: {e}"))?;
    let started_at = now_micros();
    let limits = Limits::from_policy(&step.policy);
    let mut state = HostState::new(
        InvocationContext {
            run_id: step.run_id.clone(),
            task_name: step.task.clone(),
            attempt: step.attempt,
        },
        &limits,
        journal,
        KvState::new(None, 0),
        WorkflowState::new(Some(Arc::new(hg.clone())), linger),
    );
    let result = drive(hg, &spec, &step.input, &mut state).await;
    let produced = state.finish();
    let result = match result {
        Ok(output) => Ok(output),
        Err(_) if produced.wait.is_some() => Ok(Value::Null),
        Err(error) => Err(match error.downcast::<DagFailed>() {
            Ok(failed) => TaskError {
                kind: ErrorKind::Application,
                message: failed.message(),
                backtrace: None,
                value: Some(failed.0),
            },
            Err(error) => TaskError::host(format!("{error:#}")),
        }),
    };
    Ok(Outcome {
        started_at,
        completed_at: now_micros(),
        result,
        produced,
    })
}

/// The run failed: the failed steps with their errors, as `[[step, error], ...]`.
#[derive(Debug)]
struct DagFailed(Value);

impl DagFailed {
    fn message(&self) -> String {
        let names: Vec<&str> = self
            .0
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| pair[0].as_str())
            .collect();
        format!("step(s) failed: {}", names.join(", "))
    }
}

impl std::fmt::Display for DagFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for DagFailed {}

/// The deterministic orchestration: the same spec, input and journal always make the same calls.
async fn drive(
    hg: &Hypergraph,
    spec: &DagSpec,
    input: &Value,
    state: &mut HostState,
) -> Result<Value> {
    let mut started: HashSet<String> = HashSet::new();
    let mut by_child: HashMap<u32, String> = HashMap::new();
    let mut outputs: HashMap<String, Value> = HashMap::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        if failures.is_empty() {
            let finished: HashSet<String> = outputs.keys().cloned().collect();
            let ready: Vec<&DagStep> = spec.ready(&finished, &started);
            for step in ready {
                let child = start_step(hg, spec, step, input, &outputs, &mut params, state).await?;
                match child {
                    Ok(index) => {
                        by_child.insert(index, step.name.clone());
                    }
                    Err(message) => {
                        failures.insert(step.name.clone(), message);
                    }
                }
                started.insert(step.name.clone());
            }
        }
        let running: Vec<u32> = by_child
            .iter()
            .filter(|(_, name)| !outputs.contains_key(*name) && !failures.contains_key(*name))
            .map(|(index, _)| *index)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if running.is_empty() {
            break;
        }
        let finished = state
            .workflow()
            .join_any(running)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        for (index, result) in finished {
            let name = by_child[&index].clone();
            match result {
                ChildResult::Ok(text) => {
                    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    outputs.insert(name, value);
                }
                ChildResult::Err { kind, message, .. } => {
                    failures.insert(name, format!("{kind}: {message}"));
                }
            }
        }
    }
    if failures.is_empty() {
        let output: Map<String, Value> = spec
            .steps
            .iter()
            .filter_map(|s| outputs.get(&s.name).map(|v| (s.name.clone(), v.clone())))
            .collect();
        return Ok(Value::Object(output));
    }
    let failed = Value::Array(
        failures
            .iter()
            .map(|(step, error)| json!([step, error]))
            .collect(),
    );
    if let Some(task) = &spec.on_failure {
        let param = task_params(hg, task)
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| "failures".into());
        let input = json!({ param: failed.clone() }).to_string();
        // The report's own failure does not change the run's.
        let mut workflow = state.workflow();
        workflow.set_next_child(ChildOptions {
            name: Some("on_failure".into()),
            policy: None,
        });
        let _ = workflow
            .call(task.clone(), input)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    }
    Err(DagFailed(failed).into())
}

/// Starts one DAG step as a child with its input and policy overrides; `Err(message)` when the
/// host refused to start it (an unknown task, an input that does not convert).
async fn start_step(
    hg: &Hypergraph,
    spec: &DagSpec,
    step: &DagStep,
    input: &Value,
    outputs: &HashMap<String, Value>,
    params: &mut HashMap<String, Vec<String>>,
    state: &mut HostState,
) -> Result<Result<u32, String>> {
    if !params.contains_key(&step.task) {
        params.insert(step.task.clone(), task_params(hg, &step.task).await?);
    }
    let step_input = spec
        .step_input(step, input, outputs, &params[&step.task])
        .map_err(|e| anyhow::anyhow!("step `{}`: {e}", step.name))?;
    let overrides = spec.step_policy(step);
    let mut workflow = state.workflow();
    workflow.set_next_child(ChildOptions {
        name: Some(step.name.clone()),
        policy: (overrides != Policy::default()).then_some(overrides),
    });
    workflow
        .start(step.task.clone(), step_input.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// The parameter names of `task`, by which DAG step inputs are keyed.
pub async fn task_params(hg: &Hypergraph, task: &str) -> Result<Vec<String>> {
    let resolved = hg.resolve(task).await?;
    Ok(resolved
        .task()
        .export
        .ty
        .params()
        .map(|(name, _)| name.to_string())
        .collect())
}
