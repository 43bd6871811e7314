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

mod file;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::retry::RetryPolicy;
use crate::store::Policy;
use file::file_policy;

/// The parameter name that receives the workflow input.
pub const INPUT_PARAM: &str = "input";

/// How workflow and step names are spelled, for error messages.
const NAME_RULE: &str = "names use lowercase letters, digits, `-` and `_`, and start with a letter";

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
    /// Defaults for every step (retry, `timeout`, `schedule_to_start`), and the whole-run
    /// timeout (`run_timeout`): a partial [`Policy`], serialized in the file's shape.
    #[serde(serialize_with = "file_policy")]
    pub policy: Policy,
    /// The steps, in file order.
    #[serde(rename = "step")]
    pub steps: Vec<DagStep>,
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
    /// Overrides of the workflow policy for this step (never `run_timeout_ms`): a partial
    /// [`Policy`], serialized in the file's shape.
    #[serde(serialize_with = "file_policy")]
    pub policy: Policy,
}

impl DagSpec {
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
            ("timeout", self.policy.timeout_ms),
            ("schedule_to_start", self.policy.schedule_to_start_ms),
            ("run_timeout", self.policy.run_timeout_ms),
        ] {
            if value == Some(0) {
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
                ("timeout", step.policy.timeout_ms),
                ("schedule_to_start", step.policy.schedule_to_start_ms),
            ] {
                if value == Some(0) {
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

    /// The policy overrides `step` runs with: the step's `[step.policy]` overlaid on the
    /// workflow's `[policy]` (retry field by field; `timeout` and `schedule_to_start`, the step's
    /// when set, else the workflow's), without the workflow-only `run_timeout`. A partial
    /// [`Policy`], itself overlaid on the step task's deployment policy when the step runs.
    pub fn step_policy(&self, step: &DagStep) -> Policy {
        Policy {
            run_timeout_ms: None,
            ..self.policy.overlaid(&step.policy)
        }
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
