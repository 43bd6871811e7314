//! The records Hypergraph stores and exchanges: deployments, policies, runs, steps, attempts,
//! completions, journal and log records, key-value reads and writes, and the views read back.
//! No database and no WebAssembly here: the store, the capabilities and the runtime all speak
//! these types.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::retry::RetryPolicy;
use crate::time::{micros_after, Micros};
pub use crate::worker::{HeldStep, WorkerInfo, WorkerState, WorkerView};
pub use crate::workflow::{NewChild, Wait};

/// An execution policy: retry, timeouts and limits. Every field is optional, so one type serves
/// every layer: a deployment's policy (`None` fields fall back to the host defaults), and the
/// partial policies that override it (a DAG workflow's `[policy]`, a DAG step's
/// `[step.policy]`), applied with [`Policy::overlaid`]. Stored as JSON (deployments, step
/// overrides, bundles) with unset fields left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Maximum linear memory of one instance, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// Execution deadline of one attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Maximum number of log lines kept per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_lines: Option<u32>,
    /// Hosts the deployment's tasks may send HTTP requests to (see `HttpAllowlist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_allow: Vec<String>,
    /// When failed attempts are retried (default: never).
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry: RetryPolicy,
    /// Longest a step may wait in the queue before its first attempt starts, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    /// Longest a whole run may take, in milliseconds; then it fails and its unfinished steps
    /// are cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout_ms: Option<u64>,
    /// Longest log line kept, in bytes; a longer line is cut there and marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_line_bytes: Option<u64>,
    /// Log bytes kept per attempt; further lines are dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
    /// Largest task input accepted, in bytes of its JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<u64>,
    /// Largest task output (or application error value), in bytes of its JSON text; a larger
    /// one fails the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Key-value bytes (keys and values, every `set` counted) one attempt may write; past it the
    /// attempt fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kv_write_bytes: Option<u64>,
    /// How many lost leases (its worker died or stalled) a step survives: at this many it fails
    /// with `lease_expired` instead of being claimed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lost_leases: Option<u32>,
}

impl Policy {
    /// The schedule-to-start deadline of a step created at `now`.
    pub fn start_deadline(&self, now: Micros) -> Option<Micros> {
        self.schedule_to_start_ms.map(|ms| micros_after(now, ms))
    }

    /// The deadline of a run created at `now`.
    pub fn run_deadline(&self, now: Micros) -> Option<Micros> {
        self.run_timeout_ms.map(|ms| micros_after(now, ms))
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// One version of a deployment: a name bound to a component digest plus its policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// 1 for the first deploy of a name, incremented by each deploy of a different digest.
    pub version: i64,
    /// sha256 of the component bytes, lowercase hex.
    pub digest: String,
    /// What the digest names: a component, or a DAG workflow file.
    #[serde(default)]
    pub kind: DeploymentKind,
    pub policy: Policy,
    pub created_at: Micros,
}

/// What a deployment runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentKind {
    /// A WebAssembly component; its exports are tasks.
    #[default]
    Component,
    /// A DAG workflow file (TOML); the deployment name is the workflow.
    Dag,
}

impl DeploymentKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentKind::Component => "component",
            DeploymentKind::Dag => "dag",
        }
    }
}

impl Policy {
    /// This policy with every field that `over` sets replacing this one's: each `Some` field of
    /// `over`, its `retry` overlaid field by field ([`RetryPolicy::overlay`]), and its
    /// `http_allow` when not empty. Layers stack: host defaults < deployment < DAG workflow < DAG
    /// step, each a partial `Policy` (a DAG step's `[step.policy]`, stored with the step).
    pub fn overlaid(&self, over: &Policy) -> Policy {
        Policy {
            memory_limit_bytes: over.memory_limit_bytes.or(self.memory_limit_bytes),
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            max_log_lines: over.max_log_lines.or(self.max_log_lines),
            http_allow: if over.http_allow.is_empty() {
                self.http_allow.clone()
            } else {
                over.http_allow.clone()
            },
            retry: self.retry.overlay(&over.retry),
            schedule_to_start_ms: over.schedule_to_start_ms.or(self.schedule_to_start_ms),
            run_timeout_ms: over.run_timeout_ms.or(self.run_timeout_ms),
            max_log_line_bytes: over.max_log_line_bytes.or(self.max_log_line_bytes),
            max_log_bytes: over.max_log_bytes.or(self.max_log_bytes),
            max_input_bytes: over.max_input_bytes.or(self.max_input_bytes),
            max_output_bytes: over.max_output_bytes.or(self.max_output_bytes),
            max_kv_write_bytes: over.max_kv_write_bytes.or(self.max_kv_write_bytes),
            max_lost_leases: over.max_lost_leases.or(self.max_lost_leases),
        }
    }
}

/// Status of a run or a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    /// A workflow step suspended until its children finish, a timer fires or an event arrives.
    /// Stored as `queued` with a wait; shown as `waiting`.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Running,
        Status::Waiting,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The lowercase name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// True once the status can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown status `{s}`; expected one of: queued, running, waiting, succeeded, failed, cancelled"
                )
            })
    }
}

/// A run to enqueue: one step executing `task` on the pinned deployment version.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Run id (UUID v7 text). The single step gets its own id.
    pub id: String,
    pub step_id: String,
    /// Full task name, `<deployment>/<function>` or `<deployment>/<interface>.<function>`.
    pub task: String,
    pub deployment: String,
    pub version: i64,
    pub digest: String,
    /// Task input, already validated against the task's WIT signature.
    pub input: Value,
    /// Metadata tags (`--meta k=v`), keys unique.
    pub meta: Vec<(String, String)>,
    pub created_at: Micros,
    /// The step fails if no worker starts it by then (the deployment's schedule-to-start).
    pub start_deadline: Option<Micros>,
    /// The run fails if it has not finished by then (the deployment's run timeout).
    pub deadline: Option<Micros>,
}

/// A step handed to a worker by [`Store::claim_steps`].
#[derive(Clone, Debug)]
pub struct ClaimedStep {
    pub step_id: String,
    pub run_id: String,
    pub task: String,
    pub deployment: String,
    pub version: i64,
    pub digest: String,
    /// What `digest` names, so what executing the step means: a component's export, or (the
    /// root step of a DAG run) the DAG workflow file. The deployment's kind, never guessed from
    /// the task name.
    pub kind: DeploymentKind,
    pub input: Value,
    /// The attempt number this claim owns (1 for the first).
    pub attempt: u32,
    /// The policy of the pinned deployment version.
    pub policy: Policy,
    pub created_at: Micros,
    pub assigned_at: Micros,
    /// A workflow resuming (after a wait, or in a new attempt after a crash): the journal its
    /// earlier activations committed, to answer from before anything runs live. Empty otherwise.
    pub resume: Vec<JournalRecord>,
    /// The attempt `resume` was recorded under (`attempt` itself unless this is a new attempt).
    pub resume_attempt: u32,
    /// How many times this attempt was re-executed after a key-value conflict.
    pub reruns: u32,
}

/// One journaled host-call result, in call order within its attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// 0-based position in the attempt's journal.
    pub seq: u32,
    /// Entry kind, e.g. `wall_clock.now` (see `journal::Entry`).
    pub kind: String,
    /// The entry's JSON payload.
    pub data: String,
}

/// One captured log line of an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// 0-based position among the attempt's kept lines.
    pub seq: u32,
    pub at: Micros,
    /// `log`, `stdout` or `stderr`.
    pub stream: String,
    /// trace/debug/info/warn/error (stdout is `info`, stderr is `warn`).
    pub level: String,
    pub message: String,
}

/// A key-value read of an attempt, checked when the attempt commits: if what it read changed
/// since, the completion is not applied (see [`CommitOutcome::Conflict`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRead {
    /// A key, and the version read (0: the key was absent).
    Key {
        scope: String,
        key: String,
        version: i64,
    },
    /// The keys under a prefix: how many there were and the newest version among them (a
    /// version is a store-wide counter, so any insert or update raises it and a delete lowers
    /// the count).
    Prefix {
        scope: String,
        prefix: String,
        count: i64,
        max_version: i64,
    },
}

/// What [`Store::kv_list`] found under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvListing {
    /// The first keys in byte order, at most the limit asked for.
    pub keys: Vec<String>,
    /// How many keys the prefix holds in all, and their newest version (see [`KvRead::Prefix`]).
    pub count: i64,
    pub max_version: i64,
}

/// One buffered key-value write of an attempt (`value: None` deletes the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvWrite {
    /// `<tenant>/<deployment>`.
    pub scope: String,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// The result of one attempt, committed atomically by [`Store::complete_steps`].
#[derive(Clone, Debug)]
pub struct Completion {
    pub step_id: String,
    /// The attempt that produced this result; the fence.
    pub attempt: u32,
    pub worker_id: String,
    pub started_at: Micros,
    pub completed_at: Micros,
    /// `Succeeded`, `Failed` or `Cancelled` when the attempt ended; `Running` when it goes on:
    /// a suspension (with `wait`), or a lingering workflow's checkpoint (without), which stores
    /// the journal, logs and children so far and keeps the step running under its lease.
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub journal: Vec<JournalRecord>,
    pub logs: Vec<LogRecord>,
    /// The attempt's key-value writes, in order; applied only when `status` is `Succeeded` and
    /// the completion is committed, in the same transaction.
    pub kv_writes: Vec<KvWrite>,
    /// The key-value reads to validate before anything of the completion is applied.
    pub kv_reads: Vec<KvRead>,
    /// The run the step belongs to (children are created in it).
    pub run_id: String,
    /// Child steps a workflow started in this activation, created in the same transaction.
    pub children: Vec<NewChild>,
    /// Set when a workflow suspended: the step waits (status `queued` with a wait) instead of
    /// ending. `status` is then `Running` (the attempt goes on).
    pub wait: Option<Wait>,
    /// Set when a failed attempt is retried: the step is queued again, claimable from this time.
    pub retry_at: Option<Micros>,
    /// How many times this attempt was re-executed after key-value conflicts before this result
    /// ([`ClaimedStep::reruns`]): completions committed together that touch key-value data are
    /// checked most-reruns first, so the attempt that lost most rounds wins the next.
    pub reruns: u32,
}

impl Completion {
    /// True when the completion ends its step for good: not a suspension or checkpoint (the
    /// attempt goes on) and not a failure queued for a retry.
    pub fn ends_step(&self) -> bool {
        self.status != Status::Running && self.retry_at.is_none()
    }
}

/// Where a step stands, as a workflow's `join` sees its children.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The step's task and the component it ran.
    pub task: String,
    pub digest: String,
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<Value>,
}

/// What [`Store::cancel_run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cancelled {
    /// Steps cancelled (the run's unfinished steps, children included).
    pub steps: u64,
    /// False when the run had already finished: nothing changed.
    pub changed: bool,
}

/// Whether a completion was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The step is no longer running under this attempt (its lease expired and a newer attempt
    /// owns it); nothing was written.
    Fenced,
    /// The step was cancelled while the attempt ran; nothing was written.
    Cancelled,
    /// A key the attempt read changed before it committed ([`Completion::kv_reads`]): nothing of
    /// it was written, and the step is queued again to run under the same attempt number in a
    /// fresh instance (its `reruns` counted up).
    Conflict,
}

/// Filter for [`Store::list_runs`]; all conditions must hold.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub status: Option<Status>,
    /// Exact task name, or a deployment name (matches all its tasks).
    pub task: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<Micros>,
    /// Every tag must match.
    pub meta: Vec<(String, String)>,
    /// Newest first, at most this many (0 = the implementation's default, 100).
    pub limit: u32,
}

/// A run as listed by [`Store::list_runs`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub task: String,
    pub status: Status,
    pub created_at: Micros,
    pub completed_at: Option<Micros>,
    /// Attempts made so far, over all steps.
    pub attempts: u32,
}

/// What a waiter needs to know about a run, read in one query: status, output or error, and the
/// timings of its (first) step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub id: String,
    pub task: String,
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<Value>,
    /// Attempts made so far, over all steps.
    pub attempts: u32,
    pub created_at: Micros,
    pub completed_at: Option<Micros>,
    /// From creation to the first step's assignment to a worker.
    pub queue_us: Option<i64>,
    /// The first step's latest attempt, from start to completion.
    pub execution_us: Option<i64>,
}

/// Everything stored about one attempt of a step, except its journal and logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptDetail {
    pub attempt: u32,
    pub status: Status,
    pub worker_id: Option<String>,
    pub assigned_at: Option<Micros>,
    pub started_at: Option<Micros>,
    pub completed_at: Option<Micros>,
    pub error: Option<Value>,
    pub journal_entries: u32,
    pub log_lines: u32,
    /// How many times the attempt was re-executed after key-value conflicts.
    #[serde(default)]
    pub reruns: u32,
    /// The hypergraph version of the worker that ran it (as the worker registered it), when
    /// known.
    #[serde(default)]
    pub hypergraph_version: Option<String>,
}

/// One step of a run with its four timestamps and attempt history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepDetail {
    pub id: String,
    /// The workflow step that started this one, and its position among that workflow's children.
    /// A child without a position was *superseded*: `runs resume` continued its workflow from an
    /// earlier point of the journal than where it was started.
    pub parent_id: Option<String>,
    pub child_index: Option<u32>,
    /// The step's name in its DAG file (`on_failure` for the failure report); `None` otherwise.
    #[serde(default)]
    pub name: Option<String>,
    pub task: String,
    pub status: Status,
    /// The latest attempt number (0 while never claimed).
    pub attempt: u32,
    pub worker_id: Option<String>,
    pub digest: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub created_at: Micros,
    pub assigned_at: Option<Micros>,
    pub started_at: Option<Micros>,
    pub completed_at: Option<Micros>,
    /// While running: until when its worker's lease holds (past it, the step is claimed again).
    #[serde(default)]
    pub lease_expires_at: Option<Micros>,
    /// While queued: not claimed before this time (a retry's backoff, a timer, an event's
    /// timeout).
    #[serde(default)]
    pub wake_at: Option<Micros>,
    /// How many times the step's lease expired (its worker died or stalled).
    #[serde(default)]
    pub lost_leases: u32,
    pub attempts: Vec<AttemptDetail>,
}

/// A run with its steps, as shown by `runs show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: String,
    pub task: String,
    pub deployment: String,
    pub version: i64,
    pub digest: String,
    pub status: Status,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub meta: Vec<(String, String)>,
    pub created_at: Micros,
    pub completed_at: Option<Micros>,
    /// The steps asked for (see [`StepQuery`]): all of them from [`Store::run`].
    pub steps: Vec<StepDetail>,
    /// How many steps the run has in all, by status (`waiting` apart from `queued`).
    #[serde(default)]
    pub step_counts: Vec<(Status, u64)>,
}

impl RunDetail {
    /// How many steps the run has in all.
    pub fn step_total(&self) -> u64 {
        self.step_counts.iter().map(|(_, n)| n).sum()
    }
}

/// Which steps [`Store::run_view`] returns: those with `status` (all when `None`), in creation
/// order, at most `limit` (0: all). A run's root step always comes first when it matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepQuery {
    pub status: Option<Status>,
    pub limit: u32,
}

/// A log line with the attempt it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLogLine {
    pub step_id: String,
    pub attempt: u32,
    #[serde(flatten)]
    pub line: LogRecord,
}
