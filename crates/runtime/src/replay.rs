//! Deterministic replay: re-execute recorded attempts against their journals.
//!
//! A [`RecordedRun`] holds everything needed to re-execute a run without the database or the
//! outside world: each step's input and, per attempt, the journal, logs and result. [`replay`] runs
//! every recorded attempt in a fresh instance of a component (the pinned one, or another version to
//! check an upgrade) with a [`Journal::replaying`] journal: every host call is answered from the
//! recording, nothing live is consulted, and the attempt is **identical** when the guest made the
//! same calls with the same arguments in the same order and produced the same result; otherwise the
//! report holds the first [`Divergence`].

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::capabilities::InvocationContext;
use crate::convert::params_from_json;
use crate::engine::{Engine, Prepared};
use crate::invoke::{invoke, Invocation, TaskError};
use crate::journal::{Divergence, Entry, Journal};
use crate::limits::Limits;
use crate::registry::function_of;
use crate::store::{DeploymentKind, JournalRecord, LogRecord, Micros, Policy, Status, Store};

/// Everything recorded about a run, as needed to replay it anywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRun {
    pub run_id: String,
    /// Full task name, `<deployment>/<function>`.
    pub task: String,
    pub deployment: String,
    pub version: i64,
    /// The digest of the component the run is pinned to.
    pub digest: String,
    /// The policy of the pinned deployment version (its limits apply to the replay too).
    pub policy: Policy,
    pub status: Status,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub meta: Vec<(String, String)>,
    pub created_at: Micros,
    pub steps: Vec<RecordedStep>,
}

/// One step of a recorded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep {
    pub step_id: String,
    pub task: String,
    /// The component the step ran (a workflow's children may run other components); empty in
    /// bundles written before steps recorded it, meaning the run's component.
    #[serde(default)]
    pub digest: String,
    /// What `digest` names: a component, or (the root step of a DAG run) a DAG workflow file,
    /// whose steps are replayed one by one as the run's other steps. Absent, in bundles, for a
    /// component.
    #[serde(default, skip_serializing_if = "is_component")]
    pub kind: DeploymentKind,
    pub input: Value,
    pub attempts: Vec<RecordedAttempt>,
}

fn is_component(kind: &DeploymentKind) -> bool {
    *kind == DeploymentKind::Component
}

/// One attempt of a recorded step: its journal, its logs and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedAttempt {
    pub attempt: u32,
    pub status: Status,
    /// The task's result (only for the attempt that succeeded).
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub journal: Vec<JournalRecord>,
    pub logs: Vec<LogRecord>,
}

impl RecordedAttempt {
    /// An attempt that never committed (its worker died and the lease expired) has no journal
    /// to replay.
    fn lost(&self) -> bool {
        self.error
            .as_ref()
            .and_then(|e| e.get("kind"))
            .and_then(Value::as_str)
            == Some("lease_expired")
    }
}

/// What replaying one attempt found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Identical,
    Diverged {
        divergence: Divergence,
    },
    /// Not replayable (e.g. the attempt never committed, or the run is still queued).
    Skipped {
        reason: String,
    },
}

/// The replay of one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptReplay {
    pub step_id: String,
    /// The step's task (empty in the placeholder of a run with nothing to replay, and in reports
    /// written before it was recorded).
    #[serde(default)]
    pub task: String,
    pub attempt: u32,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The replay of a whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub run_id: String,
    pub task: String,
    /// The digest of the component the replay ran (the pinned one unless another was given).
    pub digest: String,
    pub attempts: Vec<AttemptReplay>,
}

impl AttemptReplay {
    /// The only entry of the report of a run with no attempt to replay.
    fn nothing_to_replay(run: &RecordedRun) -> Self {
        Self {
            step_id: String::new(),
            task: String::new(),
            attempt: 0,
            verdict: Verdict::Skipped {
                reason: format!("the run is {} and has no completed attempt", run.status),
            },
        }
    }
}

impl ReplayReport {
    /// The first attempt that diverged, if any.
    pub fn first_divergence(&self) -> Option<&AttemptReplay> {
        self.attempts
            .iter()
            .find(|a| matches!(a.verdict, Verdict::Diverged { .. }))
    }

    /// True when no attempt diverged.
    pub fn identical(&self) -> bool {
        self.first_divergence().is_none()
    }

    /// Number of attempts actually replayed (not skipped).
    pub fn replayed(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| !matches!(a.verdict, Verdict::Skipped { .. }))
            .count()
    }
}

/// Loads everything recorded about run `id` from `store`.
pub async fn load(store: &dyn Store, id: &str) -> Result<RecordedRun> {
    let run = store
        .run(id)
        .await?
        .with_context(|| format!("run `{id}` not found"))?;
    let (policy, run_kind) = store
        .deployment_version(&run.deployment, run.version)
        .await?
        .map(|d| (d.policy, d.kind))
        .unwrap_or_default();
    let mut logs: BTreeMap<(String, u32), Vec<LogRecord>> = BTreeMap::new();
    for line in store.run_logs(id).await? {
        logs.entry((line.step_id, line.attempt))
            .or_default()
            .push(line.line);
    }
    let mut steps = Vec::new();
    for step in &run.steps {
        let mut attempts = Vec::new();
        for a in &step.attempts {
            if !a.status.is_terminal() {
                continue;
            }
            let last = a.attempt == step.attempt;
            attempts.push(RecordedAttempt {
                attempt: a.attempt,
                status: a.status,
                output: if last && a.status == Status::Succeeded {
                    step.output.clone()
                } else {
                    None
                },
                error: a.error.clone(),
                journal: store.journal(&step.id, a.attempt).await?,
                logs: logs
                    .remove(&(step.id.clone(), a.attempt))
                    .unwrap_or_default(),
            });
        }
        steps.push(RecordedStep {
            step_id: step.id.clone(),
            task: step.task.clone(),
            digest: step.digest.clone(),
            // Only a run's root step runs its deployment; children always run components.
            kind: if step.parent_id.is_none() {
                run_kind
            } else {
                DeploymentKind::Component
            },
            input: step.input.clone(),
            attempts,
        });
    }
    Ok(RecordedRun {
        run_id: run.id,
        task: run.task,
        deployment: run.deployment,
        version: run.version,
        digest: run.digest,
        policy,
        status: run.status,
        input: run.input,
        output: run.output,
        error: run.error,
        meta: run.meta,
        created_at: run.created_at,
        steps,
    })
}

/// Replays every recorded attempt of `run` in fresh instances of `prepared`.
pub async fn replay(
    engine: &Engine,
    prepared: &Prepared,
    run: &RecordedRun,
) -> Result<ReplayReport> {
    let mut attempts = Vec::new();
    for step in &run.steps {
        let other_component = !step.digest.is_empty() && step.digest != run.digest;
        for attempt in &step.attempts {
            let verdict = if step.kind == DeploymentKind::Dag {
                Verdict::Skipped {
                    reason: "a DAG workflow's root: its steps are replayed one by one".into(),
                }
            } else if other_component {
                Verdict::Skipped {
                    reason: format!(
                        "the step ran another component ({})",
                        &step.digest[..12.min(step.digest.len())]
                    ),
                }
            } else if attempt.lost() {
                Verdict::Skipped {
                    reason: "the attempt never committed (its lease expired)".into(),
                }
            } else if attempt.status == Status::Cancelled {
                Verdict::Skipped {
                    reason: "the attempt was cancelled while it ran and never committed".into(),
                }
            } else {
                replay_attempt(engine, prepared, run, step, attempt).await?
            };
            attempts.push(AttemptReplay {
                step_id: step.step_id.clone(),
                task: step.task.clone(),
                attempt: attempt.attempt,
                verdict,
            });
        }
    }
    if attempts.is_empty() {
        attempts.push(AttemptReplay::nothing_to_replay(run));
    }
    Ok(ReplayReport {
        run_id: run.run_id.clone(),
        task: run.task.clone(),
        digest: prepared.digest.clone(),
        attempts,
    })
}

fn diverged(expected: Value, actual: Value) -> Verdict {
    Verdict::Diverged {
        divergence: Divergence {
            seq: None,
            expected,
            actual,
        },
    }
}

async fn replay_attempt(
    engine: &Engine,
    prepared: &Prepared,
    run: &RecordedRun,
    step: &RecordedStep,
    attempt: &RecordedAttempt,
) -> Result<Verdict> {
    let function = function_of(&step.task);
    let Some(task) = prepared.task(function) else {
        return Ok(diverged(
            json!({ "task": function }),
            json!({ "missing": format!("the component has no task `{function}`") }),
        ));
    };
    let params = match params_from_json(&task.export.ty, &step.input) {
        Ok(params) => params,
        Err(e) => {
            return Ok(diverged(
                json!({ "input": step.input }),
                json!({ "rejected": format!("the recorded input does not fit the task's signature: {e}") }),
            ))
        }
    };
    let entries = attempt
        .journal
        .iter()
        .map(Entry::from_record)
        .collect::<Result<Vec<_>>>()?;
    let outcome = invoke(
        engine,
        prepared,
        task,
        Invocation {
            context: InvocationContext {
                run_id: run.run_id.clone(),
                task_name: step.task.clone(),
                attempt: attempt.attempt,
            },
            params: &params,
            limits: &Limits::from_policy(&run.policy),
            journal: Journal::replaying(entries),
            kv: None,
            workflow: None,
            linger: None,
            cancel: None,
        },
    )
    .await;
    if let Some(divergence) = outcome.produced.divergence {
        return Ok(Verdict::Diverged { divergence });
    }
    let expected = recorded_result(attempt);
    let actual = replayed_result(&outcome.result);
    Ok(if expected == actual {
        Verdict::Identical
    } else {
        diverged(expected, actual)
    })
}

/// The comparable result of a recorded attempt: `{"output": ...}` or `{"error": {kind, message,
/// value}}` (backtraces are left out: they name code locations, not behaviour).
fn recorded_result(attempt: &RecordedAttempt) -> Value {
    match (&attempt.status, &attempt.error) {
        (Status::Succeeded, _) => json!({ "output": attempt.output }),
        (_, Some(error)) => json!({ "error": {
            "kind": error.get("kind"),
            "message": error.get("message"),
            "value": error.get("value"),
        }}),
        (status, None) => json!({ "status": status }),
    }
}

fn replayed_result(result: &std::result::Result<Value, TaskError>) -> Value {
    match result {
        Ok(output) => json!({ "output": output }),
        Err(error) => {
            let error = serde_json::to_value(error).expect("errors serialize");
            json!({ "error": {
                "kind": error.get("kind"),
                "message": error.get("message"),
                "value": error.get("value"),
            }})
        }
    }
}

/// Caps the limits of `policy` (a bundle's, which came from elsewhere) at this host's: an
/// attempt's timeout at `timeout` and an instance's memory at `memory` bytes, whatever the
/// policy asks for. Returns a note for each limit it lowered: a replay that hits a lowered
/// limit may then diverge where the recording did not.
pub fn cap_limits(policy: &mut Policy, timeout: std::time::Duration, memory: u64) -> Vec<String> {
    let mut notes = Vec::new();
    let defaults = Limits::default();
    let asked = policy
        .timeout_ms
        .unwrap_or(defaults.timeout.as_millis() as u64);
    let cap = timeout.as_millis() as u64;
    if asked > cap {
        notes.push(format!(
            "the bundle asks for a {} timeout per attempt; replaying with this host's {} \
             (raise it with --timeout)",
            humantime::format_duration(std::time::Duration::from_millis(asked)),
            humantime::format_duration(timeout)
        ));
        policy.timeout_ms = Some(cap.max(1));
    }
    let asked = policy.memory_limit_bytes.unwrap_or(defaults.memory_bytes);
    if asked > memory {
        notes.push(format!(
            "the bundle asks for {} of memory per instance; replaying with this host's {} \
             (raise it with --memory)",
            crate::limits::format_bytes(asked),
            crate::limits::format_bytes(memory)
        ));
        policy.memory_limit_bytes = Some(memory);
    }
    notes
}

/// Which component a replay runs.
#[derive(Clone, Debug)]
pub enum ReplayWith {
    /// The component the run is pinned to.
    Pinned,
    /// Another version of the run's deployment.
    Version(i64),
    /// Any component (e.g. a candidate upgrade), as bytes.
    Component(Vec<u8>),
}

/// The result of checking a candidate component against past runs of a deployment.
#[derive(Clone, Debug, Serialize)]
pub struct UpgradeReport {
    pub deployment: String,
    /// Digest of the candidate component.
    pub digest: String,
    pub identical: usize,
    pub diverged: usize,
    /// Runs with nothing to replay (still queued, or only lost attempts).
    pub skipped: usize,
    pub runs: Vec<ReplayReport>,
}

impl crate::Hypergraph {
    /// Loads (compiling if needed) the component to replay with.
    async fn replay_component(
        &self,
        run: &RecordedRun,
        with: &ReplayWith,
    ) -> Result<std::sync::Arc<Prepared>> {
        match with {
            ReplayWith::Pinned => self.prepared_digest(&run.digest).await,
            ReplayWith::Version(version) => {
                let deployment = self
                    .store
                    .deployment_version(&run.deployment, *version)
                    .await?
                    .with_context(|| {
                        format!("deployment `{}` has no version {version}", run.deployment)
                    })?;
                self.prepared(&deployment).await
            }
            ReplayWith::Component(bytes) => self
                .engine
                .prepare_bytes(bytes)
                .await
                .context("the replacement component cannot be used"),
        }
    }

    /// Replays every recorded attempt of run `id` against its journal, on the pinned component or
    /// `with` another one. Nothing live is consulted and nothing is written.
    ///
    /// On the pinned components, every step is replayed on its own (a workflow's children may
    /// run other components, a DAG's steps always do); with another component, the steps of the
    /// run's own component are replayed on it and the others are skipped.
    pub async fn replay_run(&self, id: &str, with: &ReplayWith) -> Result<ReplayReport> {
        let run = load(self.store.as_ref(), id).await?;
        if !matches!(with, ReplayWith::Pinned) {
            let prepared = self.replay_component(&run, with).await?;
            return replay(&self.engine, &prepared, &run).await;
        }
        let mut digests: Vec<&str> = run
            .steps
            .iter()
            .filter(|s| s.kind == DeploymentKind::Component)
            .map(|s| {
                if s.digest.is_empty() {
                    run.digest.as_str()
                } else {
                    s.digest.as_str()
                }
            })
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let mut report = ReplayReport {
            run_id: run.run_id.clone(),
            task: run.task.clone(),
            digest: run.digest.clone(),
            attempts: Vec::new(),
        };
        for digest in digests {
            let prepared = self.prepared_digest(digest).await?;
            let part = RecordedRun {
                digest: digest.to_string(),
                steps: run
                    .steps
                    .iter()
                    .filter(|s| {
                        s.kind == DeploymentKind::Component
                            && (s.digest == digest || s.digest.is_empty() && run.digest == digest)
                    })
                    .cloned()
                    .collect(),
                ..run.clone()
            };
            let replayed = replay(&self.engine, &prepared, &part).await?;
            report.attempts.extend(replayed.attempts);
        }
        // Keep the run's order of steps and attempts.
        let order: Vec<&str> = run.steps.iter().map(|s| s.step_id.as_str()).collect();
        report.attempts.sort_by_key(|a| {
            (
                order
                    .iter()
                    .position(|id| *id == a.step_id)
                    .unwrap_or(usize::MAX),
                a.attempt,
            )
        });
        if report.attempts.is_empty() {
            report.attempts.push(AttemptReplay::nothing_to_replay(&run));
        }
        Ok(report)
    }

    /// Replays the newest `last` runs of `deployment` (and every in-flight one) against the
    /// candidate component `bytes`: the deploy gate. Nothing is written.
    pub async fn check_upgrade(
        &self,
        deployment: &str,
        bytes: &[u8],
        last: u32,
    ) -> Result<UpgradeReport> {
        if self.store.latest_deployment(deployment).await?.is_none() {
            anyhow::bail!("unknown deployment `{deployment}`");
        }
        let prepared = self
            .engine
            .prepare_bytes(bytes)
            .await
            .context("the candidate component cannot be used")?;
        let mut filter = crate::store::RunFilter {
            task: Some(deployment.to_string()),
            limit: last.max(1),
            ..Default::default()
        };
        let mut ids: Vec<String> = self
            .store
            .list_runs(&filter)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        filter.status = Some(Status::Running);
        filter.limit = 10_000;
        for run in self.store.list_runs(&filter).await? {
            if !ids.contains(&run.id) {
                ids.push(run.id);
            }
        }
        let mut report = UpgradeReport {
            deployment: deployment.to_string(),
            digest: prepared.digest.clone(),
            identical: 0,
            diverged: 0,
            skipped: 0,
            runs: Vec::new(),
        };
        for id in ids {
            let run = load(self.store.as_ref(), &id).await?;
            let replayed = replay(&self.engine, &prepared, &run).await?;
            if !replayed.identical() {
                report.diverged += 1;
            } else if replayed.replayed() == 0 {
                report.skipped += 1;
            } else {
                report.identical += 1;
            }
            report.runs.push(replayed);
        }
        Ok(report)
    }
}
