//! Decoding what every backend stores the same way: statuses, JSON text, policies, deployment
//! kinds and counts, and the checks and serialization of completions before they are written.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::{Completion, Deployment, DeploymentKind, Micros, Policy, Status};

/// Statuses a completion may set.
pub const COMPLETION_STATUSES: [Status; 3] = [Status::Succeeded, Status::Failed, Status::Cancelled];

/// A completion with its JSON values serialized.
pub struct Encoded<'a> {
    pub c: &'a Completion,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// Checks `completions` (a suspension is `running`, a retry `failed`, anything else a final
/// status) and serializes their JSON values.
pub fn encode(completions: &[Completion]) -> Result<Vec<Encoded<'_>>> {
    completions
        .iter()
        .map(|c| {
            let suspended = c.wait.is_some() && c.status == Status::Running;
            let retried = c.retry_at.is_some() && c.status == Status::Failed;
            if c.wait.is_some() != suspended || c.retry_at.is_some() != retried {
                bail!(
                    "a suspension must be running and a retry failed (step {} attempt {})",
                    c.step_id,
                    c.attempt
                );
            }
            if c.status != Status::Running && !COMPLETION_STATUSES.contains(&c.status) {
                bail!(
                    "a completion must be running (a suspension or a checkpoint), succeeded, \
                     failed or cancelled, not {} (step {} attempt {})",
                    c.status,
                    c.step_id,
                    c.attempt
                );
            }
            Ok(Encoded {
                c,
                output: c.output.as_ref().map(serde_json::to_string).transpose()?,
                error: c.error.as_ref().map(serde_json::to_string).transpose()?,
            })
        })
        .collect()
}

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
