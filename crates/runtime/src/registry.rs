//! Deployments and task names: deploy a component under a name, list tasks, resolve a task name
//! to the component and export that run it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::convert::suggest;
use crate::dag::DagSpec;
use crate::engine::Prepared;
use crate::limits::validate_policy;
use crate::store::{Deployment, DeploymentKind, Policy};
use crate::Hypergraph;

/// A task as listed by `hypergraph tasks`.
#[derive(Clone, Debug, Serialize)]
pub struct TaskInfo {
    /// `<deployment>/<function>` or `<deployment>/<interface>.<function>`.
    pub name: String,
    /// The WIT signature, e.g. `func(name: string) -> string`.
    pub signature: String,
    pub deployment: String,
    pub version: i64,
    pub digest: String,
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize)]
pub struct DeployReport {
    pub deployment: Deployment,
    /// False when the name already pointed at this digest and policy (nothing changed).
    pub created: bool,
    pub tasks: Vec<TaskInfo>,
}

/// A task name resolved to the deployment version and export that run it.
pub struct ResolvedTask {
    pub name: String,
    pub deployment: Deployment,
    pub prepared: Arc<Prepared>,
    /// Index into `prepared.tasks`.
    pub index: usize,
}

/// What a run starts, resolved by the kind of its deployment ([`Hypergraph::resolve_runnable`]).
pub enum Runnable {
    /// A DAG workflow: the newest version of its deployment.
    Dag(Deployment),
    /// A component's task.
    Task(ResolvedTask),
}

impl Runnable {
    /// The name it was resolved from: the DAG's deployment name, or the task name.
    pub fn name(&self) -> &str {
        match self {
            Runnable::Dag(deployment) => &deployment.name,
            Runnable::Task(task) => &task.name,
        }
    }
}

impl ResolvedTask {
    /// The prepared export this task calls.
    pub fn task(&self) -> &crate::engine::PreparedTask {
        &self.prepared.tasks[self.index]
    }
}

/// The function part of a task name: `greet` for `hello/greet`, `pricing.quote` for
/// `orders/pricing.quote`.
pub fn function_of(task: &str) -> &str {
    task.split_once('/').map(|(_, f)| f).unwrap_or(task)
}

/// Checks a deployment name: letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn validate_deployment_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!(
            "invalid deployment name `{name}`: use 1 to 128 letters, digits, `-`, `_` or `.`, \
             starting with a letter or digit"
        );
    }
    Ok(())
}

fn task_infos(deployment: &Deployment, prepared: &Prepared) -> Vec<TaskInfo> {
    prepared
        .tasks
        .iter()
        .map(|t| TaskInfo {
            name: format!("{}/{}", deployment.name, t.export.name),
            signature: t.export.signature.clone(),
            deployment: deployment.name.clone(),
            version: deployment.version,
            digest: deployment.digest.clone(),
        })
        .collect()
}

impl Hypergraph {
    /// Deploys component `bytes` (binary or WAT text) under `name`: validates it (a component,
    /// every import satisfiable, no resources in task signatures, at least one task), stores it by
    /// digest and binds the name to it, creating a new version when the digest or policy changed.
    pub async fn deploy(&self, name: &str, bytes: &[u8], policy: &Policy) -> Result<DeployReport> {
        validate_deployment_name(name)?;
        validate_policy(policy)?;
        let prepared = self.engine.prepare_bytes(bytes).await?;
        let digest = &prepared.digest;
        if prepared.tasks.is_empty() {
            bail!("the component exports no functions, so it has no tasks to run");
        }
        self.store.put_component(digest, bytes).await?;
        let previous = self.store.latest_deployment(name).await?;
        let deployment = self
            .store
            .deploy(name, digest, DeploymentKind::Component, policy)
            .await?;
        let created = previous.as_ref().map(|p| p.version) != Some(deployment.version);
        Ok(DeployReport {
            tasks: task_infos(&deployment, &prepared),
            deployment,
            created,
        })
    }

    /// Deploys a DAG workflow file (TOML, see [`crate::dag`]) under `name` (default: the file's
    /// `name`): parses it, validates it against the deployed tasks (unknown tasks, parameters
    /// that are not `input`, a parent or an `args` key, missing parents, cycles, policies) and
    /// stores it. Runs are then started with `hypergraph run <name>`.
    pub async fn deploy_dag(
        &self,
        name: Option<&str>,
        text: &str,
        policy: &Policy,
    ) -> Result<DeployReport> {
        let spec = DagSpec::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = name.unwrap_or(&spec.name);
        validate_deployment_name(name)?;
        // The file's whole-run timeout, unless the command line set one.
        let policy = &Policy {
            run_timeout_ms: policy.run_timeout_ms.or(spec.policy.run_timeout_ms),
            ..policy.clone()
        };
        validate_policy(policy)?;
        let mut params = HashMap::new();
        for task in spec.steps.iter().map(|s| &s.task).chain(&spec.on_failure) {
            if !params.contains_key(task) {
                let found = crate::dag_runner::task_params(self, task)
                    .await
                    .map_err(|e| format!("{e:#}"));
                params.insert(task.clone(), found);
            }
        }
        spec.validate(&|task| {
            params
                .get(task)
                .cloned()
                .unwrap_or_else(|| Err(format!("unknown task `{task}`")))
        })
        .map_err(|errors| anyhow::anyhow!("the DAG file is not valid:\n{errors}"))?;
        let digest = crate::engine::digest(text.as_bytes());
        self.store.put_component(&digest, text.as_bytes()).await?;
        let previous = self.store.latest_deployment(name).await?;
        let deployment = self
            .store
            .deploy(name, &digest, DeploymentKind::Dag, policy)
            .await?;
        let created = previous.as_ref().map(|p| p.version) != Some(deployment.version);
        Ok(DeployReport {
            tasks: vec![TaskInfo {
                name: name.to_string(),
                signature: format!("dag({} steps)", spec.steps.len()),
                deployment: name.to_string(),
                version: deployment.version,
                digest: deployment.digest.clone(),
            }],
            deployment,
            created,
        })
    }

    /// Loads (compiling or reading the compile cache as needed) the component of a deployment.
    pub async fn prepared(&self, deployment: &Deployment) -> Result<Arc<Prepared>> {
        self.prepared_digest(&deployment.digest).await
    }

    /// Loads the stored component with `digest`, compiling or reading the compile cache as needed.
    /// Reading it waits out a database outage (a worker's attempt must not fail for one).
    pub async fn prepared_digest(&self, digest: &str) -> Result<Arc<Prepared>> {
        self.engine
            .prepare(digest, || {
                crate::outage::retry_transient("reading a component", || {
                    self.component_bytes(digest)
                })
            })
            .await
    }

    /// The bytes of the stored component with `digest`.
    pub async fn component_bytes(&self, digest: &str) -> Result<Vec<u8>> {
        self.store
            .component(digest)
            .await?
            .with_context(|| format!("component {digest} is missing from the store"))
    }

    /// Every task of the newest version of every deployment, sorted by name.
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>> {
        let mut tasks = Vec::new();
        for deployment in self.store.deployments().await? {
            if deployment.kind == DeploymentKind::Dag {
                continue;
            }
            let prepared = self.prepared(&deployment).await?;
            tasks.extend(task_infos(&deployment, &prepared));
        }
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tasks)
    }

    /// Resolves task `name` (`<deployment>/<function>`) on the newest version of its
    /// deployment, which must be a component. Unknown names (including names that differ only in
    /// case, and DAG workflow names) fail with the closest existing task names suggested.
    pub async fn resolve(&self, name: &str) -> Result<ResolvedTask> {
        match self.resolve_runnable(name).await? {
            Runnable::Task(task) => Ok(task),
            Runnable::Dag(_) => Err(self.unknown_task(name).await),
        }
    }

    /// Resolves what `hypergraph run <name>` starts, by the kind of the newest version of the
    /// deployment `name` names: a DAG workflow (`name` is the deployment's), or a component's
    /// task (`<deployment>/<function>`). Anything else fails as [`Hypergraph::resolve`] does.
    pub async fn resolve_runnable(&self, name: &str) -> Result<Runnable> {
        let (deployment_name, function) = match name.split_once('/') {
            Some((deployment, function)) => (deployment, Some(function)),
            None => (name, None),
        };
        let found = match self.store.latest_deployment(deployment_name).await? {
            Some(deployment) => match (deployment.kind, function) {
                (DeploymentKind::Dag, None) => return Ok(Runnable::Dag(deployment)),
                (DeploymentKind::Component, Some(function)) => {
                    let prepared = self.prepared(&deployment).await?;
                    prepared
                        .tasks
                        .iter()
                        .position(|t| t.export.name == function)
                        .map(|index| ResolvedTask {
                            name: name.to_string(),
                            deployment,
                            prepared,
                            index,
                        })
                }
                // A function of a DAG, or a component without a function: no such task.
                (DeploymentKind::Dag, Some(_)) | (DeploymentKind::Component, None) => None,
            },
            None => None,
        };
        match found {
            Some(task) => Ok(Runnable::Task(task)),
            None => Err(self.unknown_task(name).await),
        }
    }

    /// The error for a task name that resolves to nothing, with the closest existing names.
    async fn unknown_task(&self, name: &str) -> anyhow::Error {
        let names: Vec<String> = match self.tasks().await {
            Ok(tasks) => tasks.into_iter().map(|t| t.name).collect(),
            Err(error) => return error,
        };
        let mut message = format!("unknown task `{name}`");
        let suggestions = suggest(name, &names);
        if !suggestions.is_empty() {
            let quoted: Vec<String> = suggestions.iter().map(|s| format!("`{s}`")).collect();
            message.push_str(&format!("; did you mean {}?", quoted.join(" or ")));
        } else if names.is_empty() {
            message.push_str("; nothing is deployed yet (hypergraph deploy <file> --name <name>)");
        } else if !name.contains('/') {
            message.push_str("; task names look like `<deployment>/<function>`");
        }
        message.push_str(" (task names are case-sensitive; `hypergraph tasks` lists them all)");
        anyhow::anyhow!(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert_eq!(function_of("hello/greet"), "greet");
        assert_eq!(function_of("orders/pricing.quote"), "pricing.quote");
        assert_eq!(function_of("bare"), "bare");
    }

    #[test]
    fn deployment_names() {
        for ok in ["greet", "orders-v2", "a.b_c", "9lives"] {
            validate_deployment_name(ok).unwrap();
        }
        for bad in ["", "-x", "a/b", "a b", "é"] {
            assert!(validate_deployment_name(bad).is_err(), "{bad}");
        }
    }
}
