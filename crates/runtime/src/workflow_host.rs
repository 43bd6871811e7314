//! The runtime's side of a live workflow: what `hypergraph:workflow` asks of the world around an
//! activation (see [`WorkflowHost`]), answered from this process's store, registry and signals.
//! A store read that meets a database outage waits for the database instead of failing the
//! activation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::capabilities::workflow::{
    ChildResult, ChildTask, NewChild, WorkflowHost, LINGER_ANNOUNCED_POLL,
};
use crate::outage::retry_transient;
use crate::registry::{function_of, ResolvedTask};
use crate::scheduler::canonical_input;
use crate::signals::Signals;
use crate::store::now_micros;
use crate::Hypergraph;

#[async_trait]
impl WorkflowHost for Hypergraph {
    async fn child_results(&self, ids: &[String]) -> anyhow::Result<Vec<Option<ChildResult>>> {
        let outcomes =
            retry_transient("reading child results", || self.store.step_outcomes(ids)).await?;
        let mut results = Vec::with_capacity(outcomes.len());
        for outcome in &outcomes {
            let returns_result = match self.prepared_digest(&outcome.digest).await {
                Ok(prepared) => prepared
                    .task(function_of(&outcome.task))
                    .is_some_and(|t| returns_result(&t.export.ty)),
                Err(_) => false,
            };
            results.push(ChildResult::of(outcome, returns_result));
        }
        Ok(results)
    }

    async fn child_task(&self, task: &str) -> Result<Arc<dyn ChildTask>, String> {
        let resolved = retry_transient("resolving a child's task", || self.resolve(task))
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Arc::new(resolved))
    }

    async fn last_event_seq(&self) -> anyhow::Result<i64> {
        retry_transient("reading events", || self.store.last_event_seq()).await
    }

    async fn next_event(&self, name: &str, after: i64) -> anyhow::Result<Option<(i64, String)>> {
        retry_transient("reading events", || self.store.next_event(name, after)).await
    }

    fn signals(&self) -> &Signals {
        &self.signals
    }

    fn linger_poll(&self) -> Option<Duration> {
        self.listening().then_some(LINGER_ANNOUNCED_POLL)
    }
}

/// True when `func` returns exactly one `result`: a child of such a task that succeeds hands its
/// workflow the `ok` payload.
fn returns_result(func: &wasmtime::component::types::ComponentFunc) -> bool {
    let mut results = func.results();
    matches!(
        (results.next(), results.next()),
        (Some(wasmtime::component::types::Type::Result(_)), None)
    )
}

impl ChildTask for ResolvedTask {
    fn child(&self, input: &Value, index: u32) -> Result<NewChild, String> {
        let input = canonical_input(self, input).map_err(|e| format!("{e:#}"))?;
        Ok(NewChild {
            step_id: uuid::Uuid::now_v7().to_string(),
            index,
            task: self.name.clone(),
            deployment: self.deployment.name.clone(),
            version: self.deployment.version,
            digest: self.deployment.digest.clone(),
            input,
            policy: None,
            name: None,
            start_deadline: self.deployment.policy.start_deadline(now_micros()),
        })
    }
}
