//! Decoding what every backend stores the same way: statuses, JSON text, policies, deployment
//! kinds, counts and workers, and the rows the read queries of both backends return with the
//! same columns (see [`Columns`]).

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::{
    AttemptDetail, Deployment, DeploymentKind, HeldStep, JournalRecord, LogRecord, Micros, Policy,
    RunDetail, RunLogLine, RunSummary, Status, StepDetail, WorkerInfo, WorkerState, WorkerView,
};
use hypergraph_core::worker::RECENT;

/// A deployment from its stored columns.
pub fn deployment_from(
    name: String,
    version: i64,
    digest: String,
    policy: &str,
    created_at: Micros,
    kind: &str,
) -> Result<Deployment> {
    Ok(Deployment {
        name,
        version,
        digest,
        policy: parse_policy(policy)?,
        created_at,
        kind: kind_of(kind),
    })
}

/// The kind stored in a deployment's `kind` column.
pub fn kind_of(kind: &str) -> DeploymentKind {
    match kind {
        "dag" => DeploymentKind::Dag,
        _ => DeploymentKind::Component,
    }
}

/// A stored policy (JSON).
pub fn parse_policy(text: &str) -> Result<Policy> {
    serde_json::from_str(text)
        .with_context(|| format!("stored deployment policy is not valid: {text}"))
}

/// A stored status.
pub fn status_of(text: String) -> Result<Status> {
    text.parse()
}

/// A stored JSON value.
pub fn json_of(text: String) -> Result<Value> {
    serde_json::from_str(&text).with_context(|| format!("stored JSON value is not valid: {text}"))
}

/// A stored optional JSON value.
pub fn opt_json(text: Option<String>) -> Result<Option<Value>> {
    text.map(json_of).transpose()
}

/// A stored count or attempt number.
pub fn u32_of(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow!("stored count {n} is out of range"))
}

/// A worker's stored row: its registration, the schema version it registered with, its last
/// heartbeat and its clean stop.
pub struct WorkerRow {
    pub info: WorkerInfo,
    pub schema_version: i64,
    pub last_seen_at: Micros,
    pub stopped_at: Option<Micros>,
}

/// A worker as [`crate::Store::workers`] returns it: `row` with its state at `now` (decided by
/// [`WorkerState::at`], the same for every backend), the steps it holds, and the attempts it
/// reported the end of within [`hypergraph_core::worker::RECENT`] and last.
pub fn worker_view(
    row: WorkerRow,
    holding: Vec<HeldStep>,
    completed_recently: u64,
    last_completed_at: Option<Micros>,
    now: Micros,
) -> WorkerView {
    WorkerView {
        state: WorkerState::at(now, row.last_seen_at, row.info.heartbeat_ms, row.stopped_at),
        info: row.info,
        schema_version: row.schema_version,
        last_seen_at: row.last_seen_at,
        stopped_at: row.stopped_at,
        holding,
        completed_recently,
        last_completed_at,
    }
}

/// The start of the window of recent completions for a read at `now`.
pub fn recent_since(now: Micros) -> Micros {
    now.saturating_sub(i64::try_from(RECENT.as_micros()).unwrap_or(i64::MAX))
}

/// The columns of a row of a sqlx database that stores text as text and integers as 64-bit
/// integers (SQLite and PostgreSQL): the mappers below read rows of either backend.
pub trait Columns {
    /// Column `i` as text.
    fn text(&self, i: usize) -> Result<String>;
    /// Column `i` as text, or NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    /// Column `i` as an integer.
    fn int(&self, i: usize) -> Result<i64>;
    /// Column `i` as an integer, or NULL.
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
}

impl<R> Columns for R
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

/// A run of `runs list`, from `id, task, status, created_at, completed_at, <attempts>`.
pub fn run_summary_of(r: &impl Columns) -> Result<RunSummary> {
    Ok(RunSummary {
        id: r.text(0)?,
        task: r.text(1)?,
        status: status_of(r.text(2)?)?,
        created_at: r.int(3)?,
        completed_at: r.opt_int(4)?,
        attempts: u32_of(r.int(5)?)?,
    })
}

/// A run's status as shown, as an SQL expression over `runs` whose columns carry the prefix
/// given (`""` or `"r."`). A run stays `queued` in its row until it ends: claiming one of its
/// steps sets only `claimed_at` (a column no index holds, so the claim rewrites no index), and a
/// queued run with a claim is shown `running`. A run that binaries before `claimed_at` marked
/// `running` in its row reads as it did.
macro_rules! run_shown_status {
    ($prefix:literal) => {
        concat!(
            "CASE WHEN ",
            $prefix,
            "status = 'queued' AND ",
            $prefix,
            "claimed_at IS NOT NULL THEN 'running' ELSE ",
            $prefix,
            "status END"
        )
    };
}

/// [`run_shown_status!`] over the columns of `runs` unqualified.
pub const RUN_SHOWN_STATUS: &str = run_shown_status!("");

/// [`run_shown_status!`] over `runs` aliased `r`.
pub const RUN_SHOWN_STATUS_R: &str = run_shown_status!("r.");

/// The SQL condition that a run of `runs` aliased `r` is shown with `status`
/// ([`run_shown_status!`]). It tests `r.status` for equality, so the `(status, created_at)`
/// index serves it on both backends. A run is never `waiting` (its steps are).
pub fn run_status_is(status: Status) -> &'static str {
    match status {
        Status::Queued => "r.status = 'queued' AND r.claimed_at IS NULL",
        Status::Running => {
            "(r.status = 'running' OR (r.status = 'queued' AND r.claimed_at IS NOT NULL))"
        }
        Status::Waiting => "1 = 0",
        Status::Succeeded => "r.status = 'succeeded'",
        Status::Failed => "r.status = 'failed'",
        Status::Cancelled => "r.status = 'cancelled'",
    }
}

/// The columns [`run_detail_of`] reads, from `runs`.
pub const RUN_COLUMNS: &str = concat!(
    "id, task, deployment, version, digest, ",
    run_shown_status!(""),
    ", input, output, error, created_at, completed_at"
);

/// A run of `runs show`, from [`RUN_COLUMNS`], with its meta, steps and step counts.
fn run_detail_of(
    r: &impl Columns,
    meta: Vec<(String, String)>,
    steps: Vec<StepDetail>,
    step_counts: Vec<(Status, u64)>,
) -> Result<RunDetail> {
    Ok(RunDetail {
        id: r.text(0)?,
        task: r.text(1)?,
        deployment: r.text(2)?,
        version: r.int(3)?,
        digest: r.text(4)?,
        status: status_of(r.text(5)?)?,
        input: json_of(r.text(6)?)?,
        output: opt_json(r.opt_text(7)?)?,
        error: opt_json(r.opt_text(8)?)?,
        meta,
        created_at: r.int(9)?,
        completed_at: r.opt_int(10)?,
        steps,
        step_counts,
    })
}

/// A step's status as `runs show` shows it, as an SQL expression over `steps`: a queued step
/// that waits (for children, a timer or an event) is `waiting`.
pub const SHOWN_STATUS: &str =
    "CASE WHEN status = 'queued' AND wait IS NOT NULL THEN 'waiting' ELSE status END";

/// A run of `runs show` from the rows of its five queries: the run ([`RUN_COLUMNS`]), its meta
/// (`key, value` by key), its step counts (`{SHOWN_STATUS}, COUNT(*)` grouped by status), the
/// steps shown (`step_columns(SHOWN_STATUS)`) and their attempts ([`ATTEMPT_COLUMNS`], by step
/// and attempt). Step counts come out in [`Status::ALL`] order.
pub fn run_view_of<R: Columns>(
    run: &R,
    meta: &[R],
    counts: &[R],
    steps: &[R],
    attempts: &[R],
) -> Result<RunDetail> {
    let meta = meta
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut step_counts = counts
        .iter()
        .map(|r| Ok((status_of(r.text(0)?)?, r.int(1)? as u64)))
        .collect::<Result<Vec<_>>>()?;
    step_counts.sort_by_key(|(status, _)| Status::ALL.iter().position(|s| s == status));
    let mut by_step: HashMap<String, Vec<AttemptDetail>> = HashMap::new();
    for r in attempts {
        let (step_id, attempt) = attempt_of(r)?;
        by_step.entry(step_id).or_default().push(attempt);
    }
    let mut steps = steps.iter().map(step_of).collect::<Result<Vec<_>>>()?;
    for step in &mut steps {
        step.attempts = by_step.remove(&step.id).unwrap_or_default();
    }
    run_detail_of(run, meta, steps, step_counts)
}

/// The columns [`attempt_of`] reads, from `attempts a`.
pub const ATTEMPT_COLUMNS: &str = "a.step_id, a.attempt, a.status, a.worker_id, a.assigned_at, \
     a.started_at, a.completed_at, a.error, \
     (SELECT COUNT(*) FROM journal j WHERE j.step_id = a.step_id AND j.attempt = a.attempt), \
     (SELECT COUNT(*) FROM logs l WHERE l.step_id = a.step_id AND l.attempt = a.attempt), \
     a.reruns, a.hypergraph_version";

/// An attempt and the id of its step, from [`ATTEMPT_COLUMNS`].
pub fn attempt_of(r: &impl Columns) -> Result<(String, AttemptDetail)> {
    Ok((
        r.text(0)?,
        AttemptDetail {
            attempt: u32_of(r.int(1)?)?,
            status: status_of(r.text(2)?)?,
            worker_id: r.opt_text(3)?,
            assigned_at: r.opt_int(4)?,
            started_at: r.opt_int(5)?,
            completed_at: r.opt_int(6)?,
            error: opt_json(r.opt_text(7)?)?,
            journal_entries: u32_of(r.int(8)?)?,
            log_lines: u32_of(r.int(9)?)?,
            reruns: u32_of(r.int(10)?)?,
            hypergraph_version: r.opt_text(11)?,
        },
    ))
}

/// The columns [`step_of`] reads, from `steps`, with `status` the status as shown (`shown`,
/// which says `waiting` for a queued step that waits).
pub fn step_columns(shown: &str) -> String {
    format!(
        "id, task, {shown}, attempt, worker_id, digest, input, output, error, created_at, \
         assigned_at, started_at, completed_at, parent_id, child_index, name, lease_expires_at, \
         wake_at, lost_leases"
    )
}

/// A step of `runs show` (without its attempts), from [`step_columns`].
pub fn step_of(r: &impl Columns) -> Result<StepDetail> {
    Ok(StepDetail {
        id: r.text(0)?,
        task: r.text(1)?,
        status: status_of(r.text(2)?)?,
        attempt: u32_of(r.int(3)?)?,
        worker_id: r.opt_text(4)?,
        digest: r.text(5)?,
        input: json_of(r.text(6)?)?,
        output: opt_json(r.opt_text(7)?)?,
        error: opt_json(r.opt_text(8)?)?,
        created_at: r.int(9)?,
        assigned_at: r.opt_int(10)?,
        started_at: r.opt_int(11)?,
        completed_at: r.opt_int(12)?,
        parent_id: r.opt_text(13)?,
        child_index: r.opt_int(14)?.map(u32_of).transpose()?,
        name: r.opt_text(15)?,
        lease_expires_at: r.opt_int(16)?,
        wake_at: r.opt_int(17)?,
        lost_leases: u32_of(r.int(18)?)?,
        attempts: Vec::new(),
    })
}

/// The columns [`log_line_of`] reads, from `logs l`.
pub const LOG_LINE_COLUMNS: &str =
    "l.step_id, l.attempt, l.seq, l.at, l.stream, l.level, l.message";

/// A log line of a run, from [`LOG_LINE_COLUMNS`].
pub fn log_line_of(r: &impl Columns) -> Result<RunLogLine> {
    Ok(RunLogLine {
        step_id: r.text(0)?,
        attempt: u32_of(r.int(1)?)?,
        line: LogRecord {
            seq: u32_of(r.int(2)?)?,
            at: r.int(3)?,
            stream: r.text(4)?,
            level: r.text(5)?,
            message: r.text(6)?,
        },
    })
}

/// A journal record, from `seq, kind, data`.
pub fn journal_record_of(r: &impl Columns) -> Result<JournalRecord> {
    Ok(JournalRecord {
        seq: u32_of(r.int(0)?)?,
        kind: r.text(1)?,
        data: r.text(2)?,
    })
}
