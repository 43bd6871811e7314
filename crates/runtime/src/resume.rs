//! Resuming failed runs: re-run their failed steps, reuse everything that completed.
//!
//! `hypergraph runs resume` (and `runs replay <id> --resume`) re-queues a failed or cancelled
//! run's failed and cancelled steps. Completed steps keep their outputs and are not executed
//! again; a workflow continues from its journal and waits for the re-run children (see
//! [`Store::resume_run`](crate::store::Store::resume_run)). By default the run stays on its pinned
//! deployment versions; with `latest` it moves to the newest version of each deployment involved,
//! e.g. after deploying a fix.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::store::{RunFilter, Status};
use crate::Hypergraph;

/// What resuming one run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resumed {
    pub run_id: String,
    /// Steps queued again.
    pub steps: u64,
    /// The deployment versions the run moved to (`latest`), by deployment name.
    pub moved_to: Vec<(String, i64)>,
}

impl Hypergraph {
    /// Resumes run `id`; see the module docs.
    pub async fn resume_run(&self, id: &str, latest: bool) -> Result<Resumed> {
        let run =
            self.store.run(id).await?.with_context(|| {
                format!("no run `{id}` (list runs with `hypergraph runs list`)")
            })?;
        let mut pins = HashMap::new();
        if latest {
            let mut names: Vec<&str> = run
                .steps
                .iter()
                .filter(|s| matches!(s.status, Status::Failed | Status::Cancelled))
                .map(|s| s.task.split('/').next().unwrap_or_default())
                .collect();
            names.push(&run.deployment);
            names.sort_unstable();
            names.dedup();
            for name in names {
                let newest = self
                    .store
                    .latest_deployment(name)
                    .await?
                    .with_context(|| format!("deployment `{name}` no longer exists"))?;
                pins.insert(name.to_string(), (newest.version, newest.digest));
            }
        }
        let steps = self
            .store
            .resume_run(id, &pins)
            .await?
            .with_context(|| format!("no run `{id}`"))?;
        self.signals.submitted.notify_waiters();
        let mut moved_to: Vec<(String, i64)> = pins
            .into_iter()
            .map(|(name, (version, _))| (name, version))
            .collect();
        moved_to.sort();
        Ok(Resumed {
            run_id: id.to_string(),
            steps,
            moved_to,
        })
    }

    /// Resumes every run matching `filter` (its status defaults to `failed`), oldest first.
    /// Stops at the first run that cannot be resumed, reporting which.
    pub async fn resume_runs(&self, filter: &RunFilter, latest: bool) -> Result<Vec<Resumed>> {
        let mut filter = filter.clone();
        filter.status.get_or_insert(Status::Failed);
        if filter.limit == 0 {
            filter.limit = 10_000;
        }
        let mut runs = self.store.list_runs(&filter).await?;
        runs.reverse();
        let mut resumed = Vec::with_capacity(runs.len());
        for run in runs {
            resumed.push(self.resume_run(&run.id, latest).await?);
        }
        Ok(resumed)
    }
}
