//! Decoding what every backend stores the same way: statuses, JSON text, policies, deployment
//! kinds and counts.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::{Deployment, DeploymentKind, Micros, Policy, Status};

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
