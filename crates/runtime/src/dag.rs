//! DAG workflows declared in TOML: steps (each a task), the parents each step waits for, static
//! arguments, and retry/timeout policies.
//!
//! ```toml
//! name = "transcripts-dag"
//! on_failure = "transcripts/report-failure"
//!
//! [policy]                 # defaults for every step
//! max_attempts = 3
//! backoff = "200ms"
//! timeout = "30s"
//! run_timeout = "1h"
//!
//! [[step]]
//! name = "fetch-a"
//! task = "transcripts/fetch-track"
//! [step.args]
//! track = 0
//!
//! [[step]]
//! name = "merge"
//! task = "transcripts/merge"
//! parents = ["fetch-a"]
//! [step.policy]
//! max_attempts = 5
//! ```
//!
//! **Input convention.** A step's task is called with a JSON object keyed by the task's parameter
//! names. Each parameter must be `input` (it receives the workflow input), the name of one of the
//! step's parents (it receives that parent's output), or a key of the step's `args` (it receives
//! that static value). Tasks thus stay typed by their WIT signature; [`DagSpec::validate`] checks
//! the convention against the tasks' parameter lists and [`DagSpec::step_input`] builds the object.
//!
//! [`DagSpec::parse`] only reads the file (TOML syntax, types, unknown keys); [`DagSpec::validate`]
//! checks everything else and reports every problem at once. The graph helpers
//! ([`DagSpec::topological_order`], [`DagSpec::ready`]) assume a validated spec.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::retry::{duration_serde, RetryOn, RetryPolicy};

/// The parameter name that receives the workflow input.
pub const INPUT_PARAM: &str = "input";

/// How workflow and step names are spelled, for error messages.
const NAME_RULE: &str = "names use lowercase letters, digits, `-` and `_`, and start with a letter";

/// Keys of a workflow file's top level.
const TOP_KEYS: &[&str] = &["name", "description", "on_failure", "policy", "step"];
/// Keys of a `[[step]]` table.
const STEP_KEYS: &[&str] = &["name", "task", "parents", "args", "policy"];
/// Keys of the workflow `[policy]` table.
const WORKFLOW_POLICY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "max_backoff",
    "retry_on",
    "timeout",
    "schedule_to_start",
    "run_timeout",
];
/// Keys of a `[step.policy]` table.
const STEP_POLICY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "max_backoff",
    "retry_on",
    "timeout",
    "schedule_to_start",
];

/// A workflow file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// The text is not valid TOML, or a value has the wrong type or a required key is missing;
    /// the message is toml's, with line, column and the offending line.
    #[error("{0}")]
    Toml(String),
    /// Keys that are not part of the format, one message per key, each naming the table it is in
    /// and suggesting the closest known key; displayed one per line.
    #[error("{}", .0.join("\n"))]
    UnknownKeys(Vec<String>),
    /// A step's `args` holds a value JSON cannot represent (a `nan` or infinite float).
    #[error("{0}")]
    Args(String),
}

/// Every problem [`DagSpec::validate`] found, in a stable order; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct DagErrors(pub Vec<String>);

/// A parsed workflow file. Build one with [`DagSpec::parse`]; it serializes to JSON in the same
/// shape as the TOML (steps under `step`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DagSpec {
    /// The workflow's name, used to start runs (`hypergraph run <name>`).
    pub name: String,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The task called with the map of failed step name to error when a run fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Defaults for every step, and the whole-run timeout.
    pub policy: DagPolicy,
    /// The steps, in file order.
    #[serde(rename = "step")]
    pub steps: Vec<DagStep>,
}

/// The workflow-level `[policy]`: defaults for every step plus the whole-run timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DagPolicy {
    /// Retry defaults for every step (the [`RetryPolicy`] keys, written flat in `[policy]`).
    #[serde(flatten)]
    pub retry: RetryPolicy,
    /// Execution timeout of each attempt of a step.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub timeout: Option<Duration>,
    /// How long a step may wait queued before it fails.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub schedule_to_start: Option<Duration>,
    /// Timeout of the whole run (workflow level only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub run_timeout: Option<Duration>,
}

/// A step's `[step.policy]`: overrides of the workflow's [`DagPolicy`] for this step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StepPolicy {
    /// Retry overrides (the [`RetryPolicy`] keys, written flat in `[step.policy]`).
    #[serde(flatten)]
    pub retry: RetryPolicy,
    /// Execution timeout of each attempt of this step.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub timeout: Option<Duration>,
    /// How long this step may wait queued before it fails.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub schedule_to_start: Option<Duration>,
}

/// One `[[step]]` of a workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DagStep {
    /// The step's name, unique in the workflow; children name it in `parents`, and a child's task
    /// parameter of this name receives this step's output.
    pub name: String,
    /// The task the step runs (`<deployment>/<function>`).
    pub task: String,
    /// Steps that must finish successfully before this one starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Static inputs, by parameter name (TOML datetimes become their RFC 3339 strings).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub args: Map<String, Value>,
    /// Overrides of the workflow policy for this step.
    pub policy: StepPolicy,
}

/// The typed form of a workflow file, before `args` is converted to JSON. The raw types deny
/// unknown fields only as a safety net: [`unknown_keys`] reports them first, with better messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    step: Vec<RawStep>,
}

/// The typed form of a `[[step]]`, before `args` is converted to JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    task: String,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    args: toml::Table,
    #[serde(default)]
    policy: RawPolicy,
}

/// The typed form of `[policy]` and `[step.policy]`. Written out rather than flattening
/// [`RetryPolicy`], so that toml's errors point at the offending value, not at the table header.
/// (`run_timeout` in a step policy never gets here: the unknown-key check rejects it.)
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default, with = "duration_serde")]
    backoff: Option<Duration>,
    #[serde(default, with = "duration_serde")]
    max_backoff: Option<Duration>,
    #[serde(default)]
    retry_on: Option<Vec<RetryOn>>,
    #[serde(default, with = "duration_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "duration_serde")]
    schedule_to_start: Option<Duration>,
    #[serde(default, with = "duration_serde")]
    run_timeout: Option<Duration>,
}

impl RawPolicy {
    /// The retry fields.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_backoff: self.max_backoff,
            retry_on: self.retry_on.clone(),
        }
    }
}

impl DagSpec {
    /// Reads a workflow file.
    ///
    /// Fails with [`DagError::Toml`] on a TOML syntax error, a value of the wrong type or a
    /// missing `name`/`task` (toml's message, with line and column); with
    /// [`DagError::UnknownKeys`] listing every key that is not part of the format (including
    /// `run_timeout` in a step policy); and with [`DagError::Args`] for a float in `args` that JSON
    /// cannot represent. Nothing else is checked here: see [`DagSpec::validate`].
    pub fn parse(text: &str) -> Result<DagSpec, DagError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|error| DagError::Toml(error.to_string()))?;
        let unknown = unknown_keys(&table);
        if !unknown.is_empty() {
            return Err(DagError::UnknownKeys(unknown));
        }
        let raw: RawSpec =
            toml::from_str(text).map_err(|error| DagError::Toml(error.to_string()))?;
        let steps = raw
            .step
            .into_iter()
            .map(|step| {
                let mut args = Map::new();
                for (key, value) in &step.args {
                    let json = toml_to_json(value, key).map_err(|path| {
                        DagError::Args(format!(
                            "step `{}`: `args` value `{path}` is not a finite number, \
                             which JSON cannot represent",
                            step.name
                        ))
                    })?;
                    args.insert(key.clone(), json);
                }
                Ok(DagStep {
                    name: step.name,
                    task: step.task,
                    parents: step.parents,
                    args,
                    policy: StepPolicy {
                        retry: step.policy.retry(),
                        timeout: step.policy.timeout,
                        schedule_to_start: step.policy.schedule_to_start,
                    },
                })
            })
            .collect::<Result<Vec<_>, DagError>>()?;
        Ok(DagSpec {
            name: raw.name,
            description: raw.description,
            on_failure: raw.on_failure,
            policy: DagPolicy {
                retry: raw.policy.retry(),
                timeout: raw.policy.timeout,
                schedule_to_start: raw.policy.schedule_to_start,
                run_timeout: raw.policy.run_timeout,
            },
            steps,
        })
    }

    /// Checks the workflow and reports every problem, each message naming the workflow part or
    /// step it is about.
    ///
    /// `task_params` returns a task's parameter names, or the message to report when there is no
    /// such task (the caller words it, e.g. with suggestions). Checked: the workflow name and every
    /// step name are valid ([`is_valid_name`]), step names are unique and not `input`, there is at
    /// least one step; every parent is another step of the workflow, listed once; the steps form
    /// no cycle (reported with its path); every task exists and each of its parameters is `input`,
    /// a parent or an `args` key; no `args` key is `input` or a parent (ambiguous) or unknown to
    /// the task; the `on_failure` task exists and takes exactly one parameter; the policies are
    /// valid ([`RetryPolicy::validate`] of the workflow policy and of each step's policy overlaid
    /// on it, and no zero timeout).
    pub fn validate(
        &self,
        task_params: &dyn Fn(&str) -> Result<Vec<String>, String>,
    ) -> Result<(), DagErrors> {
        let mut problems = Vec::new();
        if self.name.is_empty() {
            problems.push("workflow name is empty".to_string());
        } else if !is_valid_name(&self.name) {
            problems.push(format!(
                "workflow name `{}` is invalid: {NAME_RULE}",
                self.name
            ));
        }
        if self.steps.is_empty() {
            problems.push(format!(
                "workflow `{}` has no steps: declare at least one [[step]]",
                self.name
            ));
        }
        if let Some(task) = &self.on_failure {
            match task_params(task) {
                Err(message) => problems.push(format!("on_failure: {message}")),
                Ok(params) if params.len() != 1 => problems.push(format!(
                    "on_failure task `{task}` must take exactly one parameter (the map of failed \
                     step name to error), but takes {}{}",
                    params.len(),
                    if params.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", quoted_list(&params))
                    }
                )),
                Ok(_) => {}
            }
        }
        let workflow_retry_valid = match self.policy.retry.validate() {
            Ok(()) => true,
            Err(message) => {
                problems.push(format!("[policy]: {message}"));
                false
            }
        };
        for (key, value) in [
            ("timeout", self.policy.timeout),
            ("schedule_to_start", self.policy.schedule_to_start),
            ("run_timeout", self.policy.run_timeout),
        ] {
            if value.is_some_and(|duration| duration.is_zero()) {
                problems.push(format!("[policy]: {key} must be greater than zero"));
            }
        }

        let mut first_index: HashMap<&str, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            let label = step_label(index, step);
            if step.name.is_empty() {
                problems.push(format!("step {label} has an empty name"));
            } else if step.name == INPUT_PARAM {
                problems.push(format!(
                    "step name `{INPUT_PARAM}` is reserved: a parameter named `{INPUT_PARAM}` \
                     receives the workflow input"
                ));
            } else if !is_valid_name(&step.name) {
                problems.push(format!("step name {label} is invalid: {NAME_RULE}"));
            }
            if !step.name.is_empty() {
                if let Some(first) = first_index.get(step.name.as_str()) {
                    problems.push(format!(
                        "steps #{} and #{} are both named {label}: step names must be unique",
                        first + 1,
                        index + 1
                    ));
                } else {
                    first_index.insert(&step.name, index);
                }
            }
            self.check_parents(index, step, &mut problems);
            check_task(&label, step, task_params, &mut problems);
            if workflow_retry_valid && step.policy.retry != RetryPolicy::default() {
                if let Err(message) = self.policy.retry.overlay(&step.policy.retry).validate() {
                    problems.push(format!("step {label} [step.policy]: {message}"));
                }
            }
            for (key, value) in [
                ("timeout", step.policy.timeout),
                ("schedule_to_start", step.policy.schedule_to_start),
            ] {
                if value.is_some_and(|duration| duration.is_zero()) {
                    problems.push(format!(
                        "step {label} [step.policy]: {key} must be greater than zero"
                    ));
                }
            }
        }
        for cycle in self.graph().cycles() {
            let mut path = cycle
                .iter()
                .map(|&index| self.steps[index].name.as_str())
                .collect::<Vec<_>>();
            path.push(path[0]);
            problems.push(format!(
                "steps form a cycle (each is a parent of the next): {}",
                path.join(" -> ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DagErrors(problems))
        }
    }

    /// Reports parents of `step` (at `index`) that are missing, the step itself, or repeated.
    fn check_parents(&self, index: usize, step: &DagStep, problems: &mut Vec<String>) {
        let label = step_label(index, step);
        let mut seen = HashSet::new();
        for parent in &step.parents {
            if !seen.insert(parent.as_str()) {
                problems.push(format!(
                    "step {label} lists parent `{parent}` more than once"
                ));
            } else if *parent == step.name {
                problems.push(format!("step {label} lists itself as a parent"));
            } else if self.step(parent).is_none() {
                let names = self.steps.iter().map(|other| other.name.as_str());
                problems.push(format!(
                    "step {label} names parent `{parent}`, which is not a step of this \
                     workflow{}",
                    did_you_mean(parent, names)
                ));
            }
        }
    }

    /// The steps in an order where every step comes after all its parents; among steps whose
    /// parents are all placed, file order decides. Contains every step exactly once when the spec
    /// is valid; steps on or downstream of a cycle are left out, and parents that are not steps
    /// are ignored.
    pub fn topological_order(&self) -> Vec<&DagStep> {
        let graph = self.graph();
        let mut waiting_on = graph.parent_count.clone();
        let mut ready: BTreeSet<usize> = (0..self.steps.len())
            .filter(|&index| waiting_on[index] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.steps.len());
        while let Some(index) = ready.pop_first() {
            order.push(&self.steps[index]);
            for &child in &graph.children[index] {
                waiting_on[child] -= 1;
                if waiting_on[child] == 0 {
                    ready.insert(child);
                }
            }
        }
        order
    }

    /// The first step named `name`.
    pub fn step(&self, name: &str) -> Option<&DagStep> {
        self.steps.iter().find(|step| step.name == name)
    }

    /// The steps that can start now, in file order: neither in `started` nor in `finished`, with
    /// every parent in `finished` (which must hold only steps that finished successfully).
    pub fn ready<'a>(
        &'a self,
        finished: &HashSet<String>,
        started: &HashSet<String>,
    ) -> Vec<&'a DagStep> {
        self.steps
            .iter()
            .filter(|step| {
                !started.contains(&step.name)
                    && !finished.contains(&step.name)
                    && step.parents.iter().all(|parent| finished.contains(parent))
            })
            .collect()
    }

    /// The input of `step`'s task, whose parameter names are `params`: a JSON object with, for
    /// each parameter, `workflow_input` if it is `input`, the parent's entry in `outputs` if it
    /// names a parent, or else the `args` value of that key.
    ///
    /// Fails, with a message naming the step, when a parent's output is missing from `outputs`
    /// or a parameter is none of these (which [`DagSpec::validate`] rules out).
    pub fn step_input(
        &self,
        step: &DagStep,
        workflow_input: &Value,
        outputs: &HashMap<String, Value>,
        params: &[String],
    ) -> Result<Value, String> {
        let mut input = Map::new();
        for param in params {
            let value = if param == INPUT_PARAM {
                workflow_input.clone()
            } else if step.parents.contains(param) {
                outputs.get(param).cloned().ok_or_else(|| {
                    format!(
                        "step `{}` needs the output of parent `{param}`, which has none \
                         (it has not finished successfully)",
                        step.name
                    )
                })?
            } else if let Some(value) = step.args.get(param) {
                value.clone()
            } else {
                return Err(unmatched_param(&step.task, &step.name, param));
            };
            input.insert(param.clone(), value);
        }
        Ok(Value::Object(input))
    }

    /// The effective policy of `step`: the step's retry policy overlaid on the workflow's (still
    /// to be overlaid on host and deployment policies, which fill what neither sets), and the
    /// execution timeout and schedule-to-start timeout, the step's when set, else the workflow's.
    pub fn step_policy(&self, step: &DagStep) -> (RetryPolicy, Option<Duration>, Option<Duration>) {
        (
            self.policy.retry.overlay(&step.policy.retry),
            step.policy.timeout.or(self.policy.timeout),
            step.policy
                .schedule_to_start
                .or(self.policy.schedule_to_start),
        )
    }

    /// The parent-to-child edges between steps (parents resolved to the first step of that name;
    /// missing parents, self-references and repeats dropped).
    fn graph(&self) -> Graph {
        let mut first_index: HashMap<&str, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            first_index.entry(&step.name).or_insert(index);
        }
        let mut graph = Graph {
            children: vec![Vec::new(); self.steps.len()],
            parent_count: vec![0; self.steps.len()],
        };
        for (index, step) in self.steps.iter().enumerate() {
            for parent in &step.parents {
                let Some(&parent_index) = first_index.get(parent.as_str()) else {
                    continue;
                };
                // A step's edges are all added in this iteration, so a repeat is the last one.
                if parent_index != index && graph.children[parent_index].last() != Some(&index) {
                    graph.children[parent_index].push(index);
                    graph.parent_count[index] += 1;
                }
            }
        }
        graph
    }
}

/// Steps as a graph of indices into `DagSpec::steps`.
struct Graph {
    /// For each step, the steps that list it as a parent, in file order.
    children: Vec<Vec<usize>>,
    /// For each step, how many distinct parents it has.
    parent_count: Vec<usize>,
}

impl Graph {
    /// Cycles found by a depth-first search in file order, each as the steps along it (each a
    /// parent of the next, the last a parent of the first), rotated to start at the step that
    /// comes first in the file; every cyclic part of the graph yields at least one.
    fn cycles(&self) -> Vec<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.children.len()];
        let mut seen = HashSet::new();
        let mut cycles = Vec::new();
        for root in 0..self.children.len() {
            if marks[root] != Mark::New {
                continue;
            }
            marks[root] = Mark::OnPath;
            // The path from `root`, each node with the position of its next child to visit.
            let mut path = vec![(root, 0)];
            while let Some((node, next)) = path.last_mut() {
                let node = *node;
                let Some(&child) = self.children[node].get(*next) else {
                    marks[node] = Mark::Done;
                    path.pop();
                    continue;
                };
                *next += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::OnPath;
                        path.push((child, 0));
                    }
                    Mark::OnPath => {
                        let start = path
                            .iter()
                            .position(|&(on_path, _)| on_path == child)
                            .unwrap_or_default();
                        let mut cycle: Vec<usize> = path[start..].iter().map(|&(n, _)| n).collect();
                        let first = (0..cycle.len())
                            .min_by_key(|&at| cycle[at])
                            .unwrap_or_default();
                        cycle.rotate_left(first);
                        if seen.insert(cycle.clone()) {
                            cycles.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            }
        }
        cycles
    }
}

/// Whether `name` is a valid workflow or step name: non-empty ASCII lowercase letters, digits,
/// `-` and `_`, starting with a letter. Valid names never contain `/`, so a workflow name cannot
/// be mistaken for a task name (`<deployment>/<function>`).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks `step`'s task against the input convention and its `args` keys.
fn check_task(
    label: &str,
    step: &DagStep,
    task_params: &dyn Fn(&str) -> Result<Vec<String>, String>,
    problems: &mut Vec<String>,
) {
    for key in step.args.keys() {
        if key == INPUT_PARAM {
            problems.push(format!(
                "step {label} has an `args` key `{INPUT_PARAM}`, which is ambiguous: a parameter \
                 named `{INPUT_PARAM}` receives the workflow input"
            ));
        } else if step.parents.contains(key) {
            problems.push(format!(
                "step {label} has an `args` key `{key}`, which is ambiguous: `{key}` is also a \
                 parent, whose output a parameter of that name receives"
            ));
        }
    }
    let params = match task_params(&step.task) {
        Ok(params) => params,
        Err(message) => {
            problems.push(format!("step {label}: {message}"));
            return;
        }
    };
    for param in &params {
        let known =
            param == INPUT_PARAM || step.parents.contains(param) || step.args.contains_key(param);
        if !known {
            problems.push(unmatched_param(&step.task, &step.name, param));
        }
    }
    for key in step.args.keys() {
        if key != INPUT_PARAM && !step.parents.contains(key) && !params.contains(key) {
            let takes = if params.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!("its parameters: {}", quoted_list(&params))
            };
            problems.push(format!(
                "step {label} has an `args` key `{key}`, which task `{}` does not take ({takes}){}",
                step.task,
                did_you_mean(key, params.iter().map(String::as_str)),
            ));
        }
    }
}

/// The message for a task parameter that the input convention cannot fill.
fn unmatched_param(task: &str, step: &str, param: &str) -> String {
    format!(
        "task `{task}` of step `{step}` takes parameter `{param}`, which is not `{INPUT_PARAM}`, \
         a parent step or an `args` key"
    )
}

/// How messages name the step at `index`: its quoted name, or `#n` when the name is empty.
fn step_label(index: usize, step: &DagStep) -> String {
    if step.name.is_empty() {
        format!("#{}", index + 1)
    } else {
        format!("`{}`", step.name)
    }
}

/// The items quoted in backticks and separated by commas.
fn quoted_list<T: AsRef<str>>(items: &[T]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("`{}`", item.as_ref()))
        .collect();
    quoted.join(", ")
}

/// `"; did you mean `x`?"` for the candidate closest to `word`, or empty when none is close.
///
/// Closeness is the Jaro-Winkler similarity to the whole candidate or, slightly discounted, to
/// one of its `_`/`-`-separated parts of four or more characters (so `retires` finds `retry_on`);
/// 0.8 or more is close, and the first candidate wins a tie.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let closeness = |candidate: &str| {
        candidate
            .split(['_', '-'])
            .filter(|part| part.len() >= 4)
            .map(|part| 0.95 * strsim::jaro_winkler(word, part))
            .fold(strsim::jaro_winkler(word, candidate), f64::max)
    };
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates
        .into_iter()
        .filter(|candidate| *candidate != word)
    {
        let score = closeness(candidate);
        if score >= 0.8 && best.is_none_or(|(best_score, _)| score > best_score) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_default()
}

/// Every key of a workflow file that is not part of the format, as messages naming its table.
fn unknown_keys(top: &toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    check_keys(top.keys(), TOP_KEYS, "at the top level", &mut problems);
    if let Some(toml::Value::Table(policy)) = top.get("policy") {
        check_keys(
            policy.keys(),
            WORKFLOW_POLICY_KEYS,
            "in [policy]",
            &mut problems,
        );
    }
    let Some(toml::Value::Array(steps)) = top.get("step") else {
        return problems;
    };
    for (index, step) in steps.iter().enumerate() {
        let toml::Value::Table(step) = step else {
            continue;
        };
        let label = match step.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("`{name}`"),
            None => format!("#{}", index + 1),
        };
        let location = format!("in [[step]] {label}");
        check_keys(step.keys(), STEP_KEYS, &location, &mut problems);
        if let Some(toml::Value::Table(policy)) = step.get("policy") {
            if policy.contains_key("run_timeout") {
                problems.push(format!(
                    "`run_timeout` limits the whole run, so it is only allowed in the workflow's \
                     [policy], not in [step.policy] of step {label}"
                ));
            }
            let location = format!("in [step.policy] of step {label}");
            let keys = policy.keys().filter(|key| *key != "run_timeout");
            check_keys(keys, STEP_POLICY_KEYS, &location, &mut problems);
        }
    }
    problems
}

/// Adds a message for every key in `keys` that is not in `known` (which must not be empty), with
/// the closest known key as a suggestion, or the list of known keys when none is close.
fn check_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    known: &[&str],
    location: &str,
    problems: &mut Vec<String>,
) {
    for key in keys.filter(|key| !known.contains(&key.as_str())) {
        let suggestion = did_you_mean(key, known.iter().copied());
        problems.push(if suggestion.is_empty() {
            format!(
                "unknown key `{key}` {location} (known keys: {})",
                quoted_list(known)
            )
        } else {
            format!("unknown key `{key}` {location}{suggestion}")
        });
    }
}

/// Converts a TOML value to JSON (datetimes become their RFC 3339 text); on a `nan` or infinite
/// float, fails with the dotted path of that value below `path`.
fn toml_to_json(value: &toml::Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Value::Number)
            .ok_or_else(|| path.to_string())?,
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| toml_to_json(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, item)| Ok((key.clone(), toml_to_json(item, &format!("{path}.{key}"))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EXAMPLE: &str = r#"
# Runs are started with `hypergraph run <name> --input <json>`.
name = "transcripts-dag"
description = "Fetch two tracks, transcribe them, merge the transcripts"
# Task that receives the map of failed step name -> error when the run fails.
on_failure = "transcripts/report-failure"

[policy]
max_attempts = 3
backoff = "200ms"
timeout = "30s"
schedule_to_start = "5m"
run_timeout = "1h"

[[step]]
name = "fetch-a"
task = "transcripts/fetch-track"
[step.args]
track = 0

[[step]]
name = "fetch-b"
task = "transcripts/fetch-track"
[step.args]
track = 1

[[step]]
name = "transcribe-a"
task = "transcripts/transcribe-a"
parents = ["fetch-a"]
[step.policy]
timeout = "2m"

[[step]]
name = "transcribe-b"
task = "transcripts/transcribe-b"
parents = ["fetch-b"]

[[step]]
name = "merge"
task = "transcripts/merge"
parents = ["transcribe-a", "transcribe-b"]
[step.args]
format = "srt"
[step.policy]
max_attempts = 5
retry_on = ["trap", "application"]
"#;

    /// The tasks the tests know, with their parameter names.
    fn registry(task: &str) -> Result<Vec<String>, String> {
        let params: &[&str] = match task {
            "transcripts/fetch-track" => &["input", "track"],
            "transcripts/transcribe-a" => &["fetch-a"],
            "transcripts/transcribe-b" => &["fetch-b"],
            "transcripts/merge" => &["transcribe-a", "transcribe-b", "format"],
            "transcripts/report-failure" => &["failures"],
            "t/noop" => &[],
            "t/pair" => &["left", "right"],
            _ => return Err(format!("no task `{task}`")),
        };
        Ok(params.iter().map(|param| param.to_string()).collect())
    }

    fn example() -> DagSpec {
        DagSpec::parse(EXAMPLE).unwrap()
    }

    /// A workflow of `t/noop` steps, each `(name, parents)`.
    fn graph(steps: &[(&str, &[&str])]) -> DagSpec {
        DagSpec {
            name: "wf".to_string(),
            description: None,
            on_failure: None,
            policy: DagPolicy::default(),
            steps: steps
                .iter()
                .map(|(name, parents)| DagStep {
                    name: name.to_string(),
                    task: "t/noop".to_string(),
                    parents: parents.iter().map(|parent| parent.to_string()).collect(),
                    args: Map::new(),
                    policy: StepPolicy::default(),
                })
                .collect(),
        }
    }

    fn problems(spec: &DagSpec) -> Vec<String> {
        match spec.validate(&registry) {
            Ok(()) => Vec::new(),
            Err(DagErrors(problems)) => problems,
        }
    }

    fn names<'a>(steps: impl IntoIterator<Item = &'a DagStep>) -> Vec<&'a str> {
        steps.into_iter().map(|step| step.name.as_str()).collect()
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn unknown_keys_of(text: &str) -> Vec<String> {
        match DagSpec::parse(text) {
            Err(DagError::UnknownKeys(problems)) => problems,
            other => panic!("expected unknown keys, got {other:?}"),
        }
    }

    fn toml_error_of(text: &str) -> String {
        match DagSpec::parse(text) {
            Err(DagError::Toml(message)) => message,
            other => panic!("expected a TOML error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_example() {
        let spec = example();
        assert_eq!(spec.name, "transcripts-dag");
        assert_eq!(
            spec.description.as_deref(),
            Some("Fetch two tracks, transcribe them, merge the transcripts")
        );
        assert_eq!(
            spec.on_failure.as_deref(),
            Some("transcripts/report-failure")
        );
        assert_eq!(
            spec.policy,
            DagPolicy {
                retry: RetryPolicy {
                    max_attempts: Some(3),
                    backoff: Some(Duration::from_millis(200)),
                    ..RetryPolicy::default()
                },
                timeout: Some(Duration::from_secs(30)),
                schedule_to_start: Some(Duration::from_secs(300)),
                run_timeout: Some(Duration::from_secs(3600)),
            }
        );
        assert_eq!(
            names(&spec.steps),
            [
                "fetch-a",
                "fetch-b",
                "transcribe-a",
                "transcribe-b",
                "merge"
            ]
        );
        let fetch = &spec.steps[0];
        assert_eq!(fetch.task, "transcripts/fetch-track");
        assert!(fetch.parents.is_empty());
        assert_eq!(Value::Object(fetch.args.clone()), json!({"track": 0}));
        assert_eq!(fetch.policy, StepPolicy::default());
        let merge = spec.step("merge").unwrap();
        assert_eq!(merge.parents, ["transcribe-a", "transcribe-b"]);
        assert_eq!(Value::Object(merge.args.clone()), json!({"format": "srt"}));
        assert_eq!(merge.policy.retry.max_attempts, Some(5));
        assert_eq!(
            merge.policy.retry.retry_on,
            Some(vec![RetryOn::Trap, RetryOn::Application])
        );
        assert_eq!(
            spec.step("transcribe-a").unwrap().policy.timeout,
            Some(Duration::from_secs(120))
        );
        assert!(spec.step("missing").is_none());
    }

    #[test]
    fn the_example_is_valid() {
        assert_eq!(example().validate(&registry), Ok(()));
    }

    #[test]
    fn parses_a_minimal_file() {
        let spec =
            DagSpec::parse("name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"").unwrap();
        assert_eq!(spec, graph(&[("a", &[])]));
        assert_eq!(spec.validate(&registry), Ok(()));
    }

    #[test]
    fn serializes_in_the_file_shape() {
        let spec = DagSpec::parse(
            "name = \"wf\"\n[policy]\nmax_attempts = 2\ntimeout = \"90s\"\n\
             [[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [[step]]\nname = \"b\"\ntask = \"t/pair\"\nparents = [\"a\"]\n\
             [step.args]\nleft = 1\nright = [true]\n[step.policy]\nbackoff = \"1s\"",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({
                "name": "wf",
                "policy": {"max_attempts": 2, "timeout": "1m 30s"},
                "step": [
                    {"name": "a", "task": "t/noop", "policy": {}},
                    {
                        "name": "b",
                        "task": "t/pair",
                        "parents": ["a"],
                        "args": {"left": 1, "right": [true]},
                        "policy": {"backoff": "1s"},
                    },
                ],
            })
        );
    }

    #[test]
    fn converts_args_to_json() {
        let spec = DagSpec::parse(
            r#"
name = "wf"
[[step]]
name = "a"
task = "t/noop"
[step.args]
text = "hi"
count = -3
ratio = 0.5
flag = false
when = 1979-05-27T07:32:00Z
day = 1979-05-27
list = [1, "two", [3]]
nested = { inner = { deep = "yes" } }
"#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(spec.steps[0].args.clone()),
            json!({
                "text": "hi",
                "count": -3,
                "ratio": 0.5,
                "flag": false,
                "when": "1979-05-27T07:32:00Z",
                "day": "1979-05-27",
                "list": [1, "two", [3]],
                "nested": {"inner": {"deep": "yes"}},
            })
        );
    }

    #[test]
    fn rejects_args_json_cannot_hold() {
        let error = DagSpec::parse(
            "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.args]\npoints = [{ x = 1.0 }, { x = nan }]",
        )
        .unwrap_err();
        assert_eq!(
            error,
            DagError::Args(
                "step `a`: `args` value `points[1].x` is not a finite number, \
                 which JSON cannot represent"
                    .to_string()
            )
        );
    }

    #[test]
    fn toml_syntax_errors_keep_line_and_column() {
        let message = toml_error_of("name = \"wf\"\n[[step]\nname = \"a\"\n");
        assert!(message.contains("line 2, column"), "{message}");
        let message = toml_error_of("name = \"wf\"\n\n[[step]]\nname = \"a\"\ntask = t/noop\n");
        assert!(message.contains("line 5"), "{message}");
    }

    #[test]
    fn type_errors_and_missing_keys_name_the_line() {
        let message = toml_error_of("name = \"wf\"\n[[step]]\nname = \"a\"\n");
        assert!(message.contains("missing field `task`"), "{message}");
        let message = toml_error_of(
            "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\nparents = \"b\"\n",
        );
        assert!(message.contains("line 5"), "{message}");
        assert!(
            message.contains("invalid type: string \"b\", expected a sequence"),
            "{message}"
        );
        let message = toml_error_of("name = \"wf\"\n[policy]\ntimeout = \"soon\"\n");
        assert!(message.contains("invalid duration `soon`"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        let message = toml_error_of("name = \"wf\"\n[policy]\nmax_attempts = \"three\"\n");
        assert!(message.contains("line 3, column 16"), "{message}");
        assert!(
            message.contains("invalid type: string \"three\", expected u32"),
            "{message}"
        );
        let message = toml_error_of(
            "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.policy]\nretry_on = [\"trap\", \"oom\"]\n",
        );
        assert!(message.contains("line 6, column 21"), "{message}");
        assert!(message.contains("unknown variant `oom`"), "{message}");
        let message = toml_error_of("name = \"wf\"\n[policy]\nbackoff = \"1 fortnight\"\n");
        assert!(
            message.contains("invalid duration `1 fortnight`"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_table_and_a_suggestion() {
        let problems = unknown_keys_of(
            r#"
name = "wf"
descripton = "typo"
[policy]
retires = 3
[[step]]
name = "a"
task = "t/noop"
parent = ["b"]
[step.policy]
timeot = "1s"
[[step]]
task = "t/noop"
colour = "blue"
"#,
        );
        assert_eq!(
            problems,
            [
                "unknown key `descripton` at the top level; did you mean `description`?",
                "unknown key `retires` in [policy]; did you mean `retry_on`?",
                "unknown key `parent` in [[step]] `a`; did you mean `parents`?",
                "unknown key `timeot` in [step.policy] of step `a`; did you mean `timeout`?",
                "unknown key `colour` in [[step]] #2 (known keys: `name`, `task`, `parents`, \
                 `args`, `policy`)",
            ]
        );
        let message = DagError::UnknownKeys(problems).to_string();
        assert_eq!(message.lines().count(), 5);
    }

    #[test]
    fn suggestions_pick_the_closest_key() {
        let cases = [
            ("retries", "; did you mean `retry_on`?"),
            ("max_attempt", "; did you mean `max_attempts`?"),
            ("attempts", "; did you mean `max_attempts`?"),
            ("back_off", "; did you mean `backoff`?"),
            ("backof", "; did you mean `backoff`?"),
            ("max-backoff", "; did you mean `max_backoff`?"),
            ("schedule", "; did you mean `schedule_to_start`?"),
            ("runtimeout", "; did you mean `run_timeout`?"),
            ("colour", ""),
            ("delay", ""),
        ];
        for (word, expected) in cases {
            let suggestion = did_you_mean(word, WORKFLOW_POLICY_KEYS.iter().copied());
            assert_eq!(suggestion, expected, "{word}");
        }
        // A tie goes to the first candidate.
        assert_eq!(did_you_mean("ab", ["ax", "ay"]), "");
        assert_eq!(
            did_you_mean("step-c", ["step-a", "step-b"]),
            "; did you mean `step-a`?"
        );
    }

    #[test]
    fn a_misspelt_step_table_is_an_unknown_key() {
        assert_eq!(
            unknown_keys_of("name = \"wf\"\n[[steps]]\nname = \"a\"\ntask = \"t/noop\""),
            ["unknown key `steps` at the top level; did you mean `step`?"]
        );
    }

    #[test]
    fn run_timeout_is_workflow_level_only() {
        assert_eq!(
            unknown_keys_of(
                "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
                 [step.policy]\nrun_timeout = \"1h\"\n"
            ),
            [
                "`run_timeout` limits the whole run, so it is only allowed in the workflow's \
              [policy], not in [step.policy] of step `a`"
            ]
        );
    }

    #[test]
    fn args_keys_are_free() {
        let spec = DagSpec::parse(
            "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.args]\nretires = 1\nanything = { at = \"all\" }",
        )
        .unwrap();
        assert_eq!(spec.steps[0].args.len(), 2);
    }

    #[test]
    fn every_documented_key_parses() {
        let spec = DagSpec::parse(
            r#"
name = "wf"
description = "d"
on_failure = "t/one"
[policy]
max_attempts = 2
backoff = "1s"
max_backoff = "2s"
retry_on = ["timeout"]
timeout = "3s"
schedule_to_start = "4s"
run_timeout = "5s"
[[step]]
name = "a"
task = "t/noop"
parents = []
args = {}
[step.policy]
max_attempts = 6
backoff = "7s"
max_backoff = "8s"
retry_on = ["trap"]
timeout = "9s"
schedule_to_start = "10s"
"#,
        )
        .unwrap();
        let keys =
            |value: Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(keys(json.clone()).len(), TOP_KEYS.len());
        assert_eq!(
            keys(json["policy"].clone()).len(),
            WORKFLOW_POLICY_KEYS.len()
        );
        assert_eq!(
            keys(json["step"][0]["policy"].clone()).len(),
            STEP_POLICY_KEYS.len()
        );
        assert_eq!(
            spec.steps[0].policy.schedule_to_start,
            Some(Duration::from_secs(10))
        );
        assert_eq!(spec.policy.run_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn policy_key_lists_match_the_policy_types() {
        let retry = RetryPolicy {
            max_attempts: Some(2),
            backoff: Some(Duration::from_secs(1)),
            max_backoff: Some(Duration::from_secs(2)),
            retry_on: Some(vec![RetryOn::Trap]),
        };
        let keys = |value: Value| -> BTreeSet<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        let workflow = DagPolicy {
            retry: retry.clone(),
            timeout: Some(Duration::from_secs(1)),
            schedule_to_start: Some(Duration::from_secs(1)),
            run_timeout: Some(Duration::from_secs(1)),
        };
        let step = StepPolicy {
            retry,
            timeout: Some(Duration::from_secs(1)),
            schedule_to_start: Some(Duration::from_secs(1)),
        };
        let listed = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect();
        assert_eq!(
            keys(serde_json::to_value(workflow).unwrap()),
            listed(WORKFLOW_POLICY_KEYS)
        );
        assert_eq!(
            keys(serde_json::to_value(step).unwrap()),
            listed(STEP_POLICY_KEYS)
        );
    }

    #[test]
    fn valid_names() {
        for name in ["a", "transcripts-dag", "step_2", "x-1_y"] {
            assert!(is_valid_name(name), "{name}");
        }
        for name in [
            "", "1a", "-a", "_a", "A", "fetchA", "a/b", "a b", "a.b", "é",
        ] {
            assert!(!is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn error_empty_workflow_name() {
        let mut spec = graph(&[("a", &[])]);
        spec.name = String::new();
        assert_eq!(problems(&spec), ["workflow name is empty"]);
    }

    #[test]
    fn error_invalid_workflow_name() {
        let mut spec = graph(&[("a", &[])]);
        spec.name = "Transcripts/DAG".to_string();
        assert_eq!(
            problems(&spec),
            [
                "workflow name `Transcripts/DAG` is invalid: names use lowercase letters, digits, \
              `-` and `_`, and start with a letter"
            ]
        );
    }

    #[test]
    fn error_no_steps() {
        assert_eq!(
            problems(&graph(&[])),
            ["workflow `wf` has no steps: declare at least one [[step]]"]
        );
        let spec = DagSpec::parse("name = \"wf\"").unwrap();
        assert_eq!(
            problems(&spec),
            ["workflow `wf` has no steps: declare at least one [[step]]"]
        );
    }

    #[test]
    fn error_empty_step_name() {
        assert_eq!(
            problems(&graph(&[("a", &[]), ("", &["a"])])),
            ["step #2 has an empty name"]
        );
    }

    #[test]
    fn error_invalid_step_name() {
        assert_eq!(
            problems(&graph(&[("Fetch A", &[])])),
            ["step name `Fetch A` is invalid: names use lowercase letters, digits, `-` and `_`, \
              and start with a letter"]
        );
    }

    #[test]
    fn error_step_named_input() {
        assert_eq!(
            problems(&graph(&[("input", &[])])),
            [
                "step name `input` is reserved: a parameter named `input` receives the workflow \
              input"
            ]
        );
    }

    #[test]
    fn error_duplicate_step_names() {
        assert_eq!(
            problems(&graph(&[("a", &[]), ("b", &[]), ("a", &[]), ("a", &[])])),
            [
                "steps #1 and #3 are both named `a`: step names must be unique",
                "steps #1 and #4 are both named `a`: step names must be unique",
            ]
        );
    }

    #[test]
    fn error_unknown_parent() {
        let spec = graph(&[
            ("transcribe-a", &[]),
            ("transcribe-b", &[]),
            ("merge", &["transcribe-a", "transcribe-c"]),
            ("report", &["nothing-like-it"]),
        ]);
        assert_eq!(
            problems(&spec),
            [
                "step `merge` names parent `transcribe-c`, which is not a step of this \
                 workflow; did you mean `transcribe-a`?",
                "step `report` names parent `nothing-like-it`, which is not a step of this \
                 workflow",
            ]
        );
    }

    #[test]
    fn error_step_is_its_own_parent() {
        assert_eq!(
            problems(&graph(&[("a", &["a"])])),
            ["step `a` lists itself as a parent"]
        );
    }

    #[test]
    fn error_repeated_parent() {
        assert_eq!(
            problems(&graph(&[("a", &[]), ("b", &["a", "a"])])),
            ["step `b` lists parent `a` more than once"]
        );
    }

    #[test]
    fn error_cycle_with_its_path() {
        let spec = graph(&[
            ("start", &[]),
            ("a", &["start", "c"]),
            ("b", &["a"]),
            ("c", &["b"]),
        ]);
        assert_eq!(
            problems(&spec),
            ["steps form a cycle (each is a parent of the next): a -> b -> c -> a"]
        );
    }

    #[test]
    fn error_cycle_starts_at_the_first_step_in_the_file() {
        // The search enters the cycle at `c`, the report still starts at `a`.
        let spec = graph(&[("c", &["b"]), ("a", &["c"]), ("b", &["a"])]);
        assert_eq!(
            problems(&spec),
            ["steps form a cycle (each is a parent of the next): c -> a -> b -> c"]
        );
        let spec = graph(&[("x", &[]), ("b", &["a"]), ("a", &["b"])]);
        assert_eq!(
            problems(&spec),
            ["steps form a cycle (each is a parent of the next): b -> a -> b"]
        );
    }

    #[test]
    fn error_every_separate_cycle() {
        let spec = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["d"]), ("d", &["c"])]);
        assert_eq!(
            problems(&spec),
            [
                "steps form a cycle (each is a parent of the next): a -> b -> a",
                "steps form a cycle (each is a parent of the next): c -> d -> c",
            ]
        );
    }

    #[test]
    fn error_unknown_task() {
        let mut spec = graph(&[("a", &[])]);
        spec.steps[0].task = "t/nope".to_string();
        assert_eq!(problems(&spec), ["step `a`: no task `t/nope`"]);
    }

    #[test]
    fn error_parameter_the_convention_cannot_fill() {
        let mut spec = example();
        spec.steps[4].args.clear();
        assert_eq!(
            problems(&spec),
            [
                "task `transcripts/merge` of step `merge` takes parameter `format`, which is not \
              `input`, a parent step or an `args` key"
            ]
        );
    }

    #[test]
    fn error_args_key_input() {
        let mut spec = example();
        spec.steps[0].args.insert("input".to_string(), json!(1));
        assert_eq!(
            problems(&spec),
            [
                "step `fetch-a` has an `args` key `input`, which is ambiguous: a parameter named \
              `input` receives the workflow input"
            ]
        );
    }

    #[test]
    fn error_args_key_naming_a_parent() {
        let mut spec = example();
        spec.steps[4]
            .args
            .insert("transcribe-a".to_string(), json!("x"));
        assert_eq!(
            problems(&spec),
            [
                "step `merge` has an `args` key `transcribe-a`, which is ambiguous: \
              `transcribe-a` is also a parent, whose output a parameter of that name receives"
            ]
        );
    }

    #[test]
    fn error_args_key_the_task_does_not_take() {
        let mut spec = example();
        spec.steps[4]
            .args
            .insert("formats".to_string(), json!("vtt"));
        spec.steps[2].args.insert("speed".to_string(), json!(2));
        let mut noop = graph(&[("a", &[])]);
        noop.steps[0].args.insert("x".to_string(), json!(1));
        assert_eq!(
            problems(&spec),
            [
                "step `transcribe-a` has an `args` key `speed`, which task \
                 `transcripts/transcribe-a` does not take (its parameters: `fetch-a`)",
                "step `merge` has an `args` key `formats`, which task `transcripts/merge` does \
                 not take (its parameters: `transcribe-a`, `transcribe-b`, `format`); did you \
                 mean `format`?",
            ]
        );
        assert_eq!(
            problems(&noop),
            [
                "step `a` has an `args` key `x`, which task `t/noop` does not take (it takes no \
              parameters)"
            ]
        );
    }

    #[test]
    fn error_unknown_on_failure_task() {
        let mut spec = example();
        spec.on_failure = Some("transcripts/report".to_string());
        assert_eq!(
            problems(&spec),
            ["on_failure: no task `transcripts/report`"]
        );
    }

    #[test]
    fn error_on_failure_task_parameter_count() {
        let mut spec = example();
        spec.on_failure = Some("t/pair".to_string());
        assert_eq!(
            problems(&spec),
            [
                "on_failure task `t/pair` must take exactly one parameter (the map of failed step \
              name to error), but takes 2: `left`, `right`"
            ]
        );
        spec.on_failure = Some("t/noop".to_string());
        assert_eq!(
            problems(&spec),
            [
                "on_failure task `t/noop` must take exactly one parameter (the map of failed step \
              name to error), but takes 0"
            ]
        );
    }

    #[test]
    fn error_invalid_workflow_policy() {
        let mut spec = example();
        spec.policy.retry.max_attempts = Some(0);
        assert_eq!(
            problems(&spec),
            ["[policy]: max_attempts must be between 1 and 100, not 0"]
        );
    }

    #[test]
    fn error_invalid_step_policy_after_overlay() {
        let mut spec = example();
        // Valid alone, but longer than the workflow's cap once overlaid.
        spec.policy.retry.max_backoff = Some(Duration::from_secs(5));
        spec.steps[1].policy.retry.backoff = Some(Duration::from_secs(10));
        spec.steps[2].policy.retry.retry_on = Some(vec![]);
        assert_eq!(
            problems(&spec),
            [
                "step `fetch-b` [step.policy]: backoff 10s is longer than max_backoff 5s: \
                 lower backoff or raise max_backoff",
                "step `transcribe-a` [step.policy]: retry_on must list at least one of trap, \
                 timeout, retryable, application (to disable retries, set max_attempts = 1)",
            ]
        );
    }

    #[test]
    fn step_policies_are_not_rechecked_under_an_invalid_workflow_policy() {
        let mut spec = example();
        spec.policy.retry.backoff = Some(Duration::ZERO);
        assert_eq!(
            problems(&spec),
            ["[policy]: backoff must be greater than zero"]
        );
    }

    #[test]
    fn error_zero_timeouts() {
        let mut spec = example();
        spec.policy.timeout = Some(Duration::ZERO);
        spec.policy.schedule_to_start = Some(Duration::ZERO);
        spec.policy.run_timeout = Some(Duration::ZERO);
        spec.steps[0].policy.timeout = Some(Duration::ZERO);
        spec.steps[0].policy.schedule_to_start = Some(Duration::ZERO);
        assert_eq!(
            problems(&spec),
            [
                "[policy]: timeout must be greater than zero",
                "[policy]: schedule_to_start must be greater than zero",
                "[policy]: run_timeout must be greater than zero",
                "step `fetch-a` [step.policy]: timeout must be greater than zero",
                "step `fetch-a` [step.policy]: schedule_to_start must be greater than zero",
            ]
        );
    }

    #[test]
    fn validate_collects_every_problem() {
        let mut spec = graph(&[("a", &["b"]), ("b", &["a", "zz"]), ("Bad", &[])]);
        spec.name = "bad name".to_string();
        spec.steps[2].task = "t/missing".to_string();
        let errors = spec.validate(&registry).unwrap_err();
        assert_eq!(
            errors.0,
            [
                "workflow name `bad name` is invalid: names use lowercase letters, digits, `-` \
                 and `_`, and start with a letter",
                "step `b` names parent `zz`, which is not a step of this workflow",
                "step name `Bad` is invalid: names use lowercase letters, digits, `-` and `_`, \
                 and start with a letter",
                "step `Bad`: no task `t/missing`",
                "steps form a cycle (each is a parent of the next): a -> b -> a",
            ]
        );
        assert_eq!(errors.to_string(), errors.0.join("\n"));
    }

    #[test]
    fn topological_order_keeps_file_order_among_ready_steps() {
        let spec = graph(&[
            ("merge", &["left", "right"]),
            ("right", &["source"]),
            ("left", &["source"]),
            ("source", &[]),
            ("other", &[]),
        ]);
        assert_eq!(
            names(spec.topological_order()),
            ["source", "right", "left", "merge", "other"]
        );
        assert_eq!(
            names(example().topological_order()),
            [
                "fetch-a",
                "fetch-b",
                "transcribe-a",
                "transcribe-b",
                "merge"
            ]
        );
    }

    #[test]
    fn topological_order_leaves_out_cycles() {
        let spec = graph(&[
            ("a", &[]),
            ("b", &["a", "c"]),
            ("c", &["b"]),
            ("d", &["c"]),
            ("e", &[]),
        ]);
        assert_eq!(names(spec.topological_order()), ["a", "e"]);
    }

    #[test]
    fn ready_steps_follow_finished_parents() {
        let spec = example();
        let none = HashSet::new();
        assert_eq!(names(spec.ready(&none, &none)), ["fetch-a", "fetch-b"]);
        assert_eq!(names(spec.ready(&none, &set(&["fetch-a"]))), ["fetch-b"]);
        let finished = set(&["fetch-a"]);
        assert_eq!(
            names(spec.ready(&finished, &set(&["fetch-a", "fetch-b"]))),
            ["transcribe-a"]
        );
        let finished = set(&["fetch-a", "fetch-b", "transcribe-a"]);
        let started = set(&["fetch-a", "fetch-b", "transcribe-a", "transcribe-b"]);
        assert!(spec.ready(&finished, &started).is_empty());
        let finished = set(&["fetch-a", "fetch-b", "transcribe-a", "transcribe-b"]);
        assert_eq!(names(spec.ready(&finished, &started)), ["merge"]);
        let all = set(&[
            "fetch-a",
            "fetch-b",
            "transcribe-a",
            "transcribe-b",
            "merge",
        ]);
        assert!(spec.ready(&all, &all).is_empty());
        // A finished step is never ready again, even if the caller did not mark it started.
        assert!(spec.ready(&all, &none).is_empty());
    }

    #[test]
    fn step_input_follows_the_convention() {
        let spec = example();
        let outputs: HashMap<String, Value> = [
            ("transcribe-a".to_string(), json!({"text": "hello"})),
            ("transcribe-b".to_string(), json!({"text": "world"})),
        ]
        .into();
        let input = json!({"url": "https://example.com/a"});
        let params = registry("transcripts/merge").unwrap();
        assert_eq!(
            spec.step_input(spec.step("merge").unwrap(), &input, &outputs, &params),
            Ok(json!({
                "transcribe-a": {"text": "hello"},
                "transcribe-b": {"text": "world"},
                "format": "srt",
            }))
        );
        let params = registry("transcripts/fetch-track").unwrap();
        assert_eq!(
            spec.step_input(spec.step("fetch-b").unwrap(), &input, &outputs, &params),
            Ok(json!({"input": {"url": "https://example.com/a"}, "track": 1}))
        );
        assert_eq!(
            spec.step_input(spec.step("fetch-b").unwrap(), &input, &outputs, &[]),
            Ok(json!({}))
        );
    }

    #[test]
    fn step_input_needs_parent_outputs() {
        let spec = example();
        let outputs: HashMap<String, Value> = [("transcribe-a".to_string(), json!("a"))].into();
        let params = registry("transcripts/merge").unwrap();
        assert_eq!(
            spec.step_input(spec.step("merge").unwrap(), &json!(null), &outputs, &params),
            Err(
                "step `merge` needs the output of parent `transcribe-b`, which has none \
                 (it has not finished successfully)"
                    .to_string()
            )
        );
    }

    #[test]
    fn step_input_rejects_unmatched_parameters() {
        let spec = example();
        let params = vec!["extra".to_string()];
        assert_eq!(
            spec.step_input(
                spec.step("merge").unwrap(),
                &json!(null),
                &HashMap::new(),
                &params
            ),
            Err(
                "task `transcripts/merge` of step `merge` takes parameter `extra`, which is not \
                 `input`, a parent step or an `args` key"
                    .to_string()
            )
        );
    }

    #[test]
    fn step_policy_overlays_the_step_on_the_workflow() {
        let spec = example();
        let (retry, timeout, schedule_to_start) = spec.step_policy(spec.step("merge").unwrap());
        assert_eq!(
            retry,
            RetryPolicy {
                max_attempts: Some(5),
                backoff: Some(Duration::from_millis(200)),
                max_backoff: None,
                retry_on: Some(vec![RetryOn::Trap, RetryOn::Application]),
            }
        );
        assert_eq!(timeout, Some(Duration::from_secs(30)));
        assert_eq!(schedule_to_start, Some(Duration::from_secs(300)));
        let (retry, timeout, _) = spec.step_policy(spec.step("transcribe-a").unwrap());
        assert_eq!(retry, spec.policy.retry);
        assert_eq!(timeout, Some(Duration::from_secs(120)));
        let bare = graph(&[("a", &[])]);
        assert_eq!(
            bare.step_policy(&bare.steps[0]),
            (RetryPolicy::default(), None, None)
        );
    }
}
