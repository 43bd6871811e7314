//! Decoding what every backend stores the same way: statuses, JSON text, policies, deployment
//! kinds, counts and workers.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::{
    Deployment, DeploymentKind, HeldStep, Micros, Policy, Status, WorkerInfo, WorkerState,
    WorkerView,
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

/// The time from `from` to `to` (both set), never negative: each is read from the clock of the
/// process that wrote it (a claimant reads "now" before its statements run, so a submission that
/// commits in between can look created after it was claimed; clocks of different machines
/// differ), so a span that comes out negative was too short to measure and is 0.
pub fn span(from: Option<Micros>, to: Option<Micros>) -> Option<Micros> {
    match (from, to) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).max(0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_need_both_ends_and_are_never_negative() {
        assert_eq!(span(Some(10), Some(25)), Some(15));
        assert_eq!(span(Some(25), Some(10)), Some(0));
        assert_eq!(span(None, Some(10)), None);
        assert_eq!(span(Some(10), None), None);
    }
}
