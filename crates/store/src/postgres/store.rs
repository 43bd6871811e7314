//! [`Store`] on PostgreSQL: each method is one transaction (writes, run again on deadlock) or one
//! query (reads).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use async_trait::async_trait;
use sqlx::Row;

use super::read::{self, deployment_of, DEPLOYMENT_COLUMNS};
use super::tx::PgTx;
use super::{workers, PgStore};
use crate::decide::{self, complete::encode};
use crate::rows::{journal_record_of, status_of, RUN_SHOWN_STATUS};
use crate::wake::Wakeups;
use crate::{
    Cancelled, ClaimedStep, CommitOutcome, Completion, Deployment, DeploymentKind, JournalRecord,
    KvListing, NewRun, Policy, RunDetail, RunFilter, RunLogLine, RunResult, RunSummary, Status,
    StepOutcome, StepQuery, Store, WorkerInfo, WorkerView,
};

/// The advisory-lock namespace of deployment names.
const DEPLOY_LOCK: i32 = 2;

#[async_trait]
impl Store for PgStore {
    async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO components (digest, bytes, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(bytes)
        .bind(bytes.len() as i64)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await
        .with_context(|| format!("cannot store component {digest}"))?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("cannot read component {digest}"))
    }

    async fn deploy(
        &self,
        name: &str,
        digest: &str,
        kind: DeploymentKind,
        policy: &Policy,
    ) -> Result<Deployment> {
        let policy_json = serde_json::to_string(policy)?;
        self.retrying(
            || format!("cannot deploy `{name}`"),
            || async {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(DEPLOY_LOCK)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM components WHERE digest = $1)",
                )
                .bind(digest)
                .fetch_one(&mut *tx)
                .await?;
                if !exists {
                    bail!(
                        "component {digest} is not stored; store it (put_component) before \
                         deploying it"
                    );
                }
                let latest = sqlx::query(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE name = $1 \
                     ORDER BY version DESC LIMIT 1"
                ))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| deployment_of(&r))
                .transpose()?;
                if let Some(latest) = &latest {
                    if latest.digest == digest && latest.kind == kind && latest.policy == *policy {
                        return Ok(latest.clone());
                    }
                }
                let deployment = Deployment {
                    name: name.to_string(),
                    version: latest.map_or(1, |d| d.version + 1),
                    digest: digest.to_string(),
                    kind,
                    policy: policy.clone(),
                    created_at: self.clock.now(),
                };
                sqlx::query(
                    "INSERT INTO deployments (name, version, digest, policy, created_at, kind) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&deployment.name)
                .bind(deployment.version)
                .bind(&deployment.digest)
                .bind(&policy_json)
                .bind(deployment.created_at)
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(deployment)
            },
        )
        .await
    }

    async fn latest_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE name = $1 \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("cannot read deployment `{name}`"))?
        .map(|r| deployment_of(&r))
        .transpose()
    }

    async fn deployment_version(&self, name: &str, version: i64) -> Result<Option<Deployment>> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("cannot read deployment `{name}` version {version}"))?
        .map(|r| deployment_of(&r))
        .transpose()
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        sqlx::query(&format!(
            "SELECT DISTINCT ON (name) {DEPLOYMENT_COLUMNS} FROM deployments \
             ORDER BY name, version DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .context("cannot list deployments")?
        .iter()
        .map(deployment_of)
        .collect()
    }

    async fn submit_runs(&self, runs: &[NewRun]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let inputs = runs
            .iter()
            .map(|r| serde_json::to_string(&r.input))
            .collect::<Result<Vec<_>, _>>()?;
        let mut versions: Vec<(&str, i64, &str)> = runs
            .iter()
            .map(|r| (r.deployment.as_str(), r.version, r.digest.as_str()))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        self.announcer.prepare();
        self.retrying(
            || format!("cannot submit {} run(s)", runs.len()),
            || async {
                let mut tx = self.pool.begin().await?;
                // Every run must pin an existing deployment version and that version's
                // component.
                for &(name, version, digest) in &versions {
                    let deployed: Option<String> = sqlx::query_scalar(
                        "SELECT digest FROM deployments WHERE name = $1 AND version = $2",
                    )
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(deployed) = deployed else {
                        bail!("deployment `{name}` version {version} does not exist");
                    };
                    if deployed != digest {
                        bail!(
                            "a run pins component {digest}, but deployment `{name}` version \
                             {version} is component {deployed}"
                        );
                    }
                }
                let id: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
                let step: Vec<&str> = runs.iter().map(|r| r.step_id.as_str()).collect();
                let task: Vec<&str> = runs.iter().map(|r| r.task.as_str()).collect();
                let deployment: Vec<&str> = runs.iter().map(|r| r.deployment.as_str()).collect();
                let version: Vec<i64> = runs.iter().map(|r| r.version).collect();
                let digest: Vec<&str> = runs.iter().map(|r| r.digest.as_str()).collect();
                let created: Vec<i64> = runs.iter().map(|r| r.created_at).collect();
                let deadline: Vec<Option<i64>> = runs.iter().map(|r| r.deadline).collect();
                let start: Vec<Option<i64>> = runs.iter().map(|r| r.start_deadline).collect();
                sqlx::query(
                    "INSERT INTO runs (id, task, deployment, version, digest, input, status, \
                     created_at, deadline) \
                     SELECT id, task, deployment, version, digest, input, 'queued', created_at, \
                     deadline FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], \
                     $5::text[], $6::text[], $7::bigint[], $8::bigint[]) \
                     AS v(id, task, deployment, version, digest, input, created_at, deadline)",
                )
                .bind(&id)
                .bind(&task)
                .bind(&deployment)
                .bind(&version)
                .bind(&digest)
                .bind(&inputs)
                .bind(&created)
                .bind(&deadline)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO steps (id, run_id, task, deployment, version, digest, input, \
                     status, attempt, created_at, start_deadline) \
                     SELECT id, run_id, task, deployment, version, digest, input, 'queued', 0, \
                     created_at, start_deadline FROM UNNEST($1::text[], $2::text[], $3::text[], \
                     $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[], \
                     $9::bigint[]) AS v(id, run_id, task, deployment, version, digest, input, \
                     created_at, start_deadline)",
                )
                .bind(&step)
                .bind(&id)
                .bind(&task)
                .bind(&deployment)
                .bind(&version)
                .bind(&digest)
                .bind(&inputs)
                .bind(&created)
                .bind(&start)
                .execute(&mut *tx)
                .await?;
                let (mut run, mut key, mut value) = (Vec::new(), Vec::new(), Vec::new());
                for r in runs {
                    for (k, v) in &r.meta {
                        run.push(r.id.as_str());
                        key.push(k.as_str());
                        value.push(v.as_str());
                    }
                }
                if !run.is_empty() {
                    sqlx::query(
                        "INSERT INTO run_meta (run_id, key, value) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
                    )
                    .bind(&run)
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            },
        )
        .await?;
        self.announcer.work();
        Ok(())
    }

    async fn claim_steps(
        &self,
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.retrying(
            || "cannot claim steps".to_string(),
            || async {
                let mut tx = self.pool.begin().await?;
                let claimed = self.claim(&mut tx, worker_id, max, lease).await?;
                tx.commit().await?;
                Ok(claimed)
            },
        )
        .await
    }

    async fn renew_leases(
        &self,
        worker_id: &str,
        steps: &[(String, u32)],
        lease: Duration,
    ) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let until = self
            .clock
            .now()
            .saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
        let attempts: Vec<i64> = steps.iter().map(|(_, a)| i64::from(*a)).collect();
        sqlx::query(
            "UPDATE steps SET lease_expires_at = $1 \
             FROM UNNEST($2::text[], $3::bigint[]) AS v(id, attempt) \
             WHERE steps.id = v.id AND steps.attempt = v.attempt \
             AND steps.worker_id = $4 AND steps.status = 'running'",
        )
        .bind(until)
        .bind(&ids)
        .bind(&attempts)
        .bind(worker_id)
        .execute(&self.pool)
        .await
        .context("cannot renew leases")?;
        Ok(())
    }

    async fn complete_steps(&self, completions: &[Completion]) -> Result<Vec<CommitOutcome>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let (outcomes, _) = self
            .complete_and_claim(completions, "", 0, Duration::ZERO)
            .await?;
        Ok(outcomes)
    }

    async fn complete_and_claim(
        &self,
        completions: &[Completion],
        worker_id: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<CommitOutcome>, Vec<ClaimedStep>)> {
        let encoded = encode(completions)?;
        self.announcer.prepare();
        let (outcomes, claimed) = self
            .retrying(
                || format!("cannot commit {} completion(s)", completions.len()),
                || async {
                    let mut tx = self.pool.begin().await?;
                    let outcomes = decide::complete::apply(
                        &mut PgTx::new(self, &mut tx),
                        &encoded,
                        self.clock.now(),
                    )
                    .await?;
                    let claimed = if max > 0 {
                        self.claim(&mut tx, worker_id, max, lease).await?
                    } else {
                        Vec::new()
                    };
                    tx.commit().await?;
                    Ok((outcomes, claimed))
                },
            )
            .await?;
        self.announce_completions(completions, &outcomes, claimed.len() == max);
        Ok((outcomes, claimed))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        read::list_runs(&self.pool, filter).await
    }

    async fn run_view(&self, id: &str, query: &StepQuery) -> Result<Option<RunDetail>> {
        read::run_view(&self.pool, id, query)
            .await
            .with_context(|| format!("cannot read run {id}"))
    }

    async fn run_status(&self, id: &str) -> Result<Option<Status>> {
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT {RUN_SHOWN_STATUS} FROM runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("cannot read the status of run {id}"))?
        .map(status_of)
        .transpose()
    }

    async fn run_result(&self, id: &str) -> Result<Option<RunResult>> {
        read::run_result(&self.pool, id)
            .await
            .with_context(|| format!("cannot read run {id}"))
    }

    async fn run_logs(&self, id: &str) -> Result<Vec<RunLogLine>> {
        read::run_logs(&self.pool, id)
            .await
            .with_context(|| format!("cannot read the logs of run {id}"))
    }

    async fn journal(&self, step_id: &str, attempt: u32) -> Result<Vec<JournalRecord>> {
        sqlx::query(
            "SELECT seq, kind, data FROM journal WHERE step_id = $1 AND attempt = $2 ORDER BY seq",
        )
        .bind(step_id)
        .bind(i64::from(attempt))
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("cannot read the journal of step {step_id} attempt {attempt}"))?
        .iter()
        .map(journal_record_of)
        .collect()
    }

    async fn step_outcomes(&self, ids: &[String]) -> Result<Vec<StepOutcome>> {
        read::step_outcomes(&self.pool, ids)
            .await
            .context("cannot read step results")
    }

    async fn last_event_seq(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::bigint FROM events")
            .fetch_one(&self.pool)
            .await
            .context("cannot read events")
    }

    async fn next_event(&self, name: &str, after: i64) -> Result<Option<(i64, String)>> {
        sqlx::query(
            "SELECT seq, payload FROM events WHERE name = $1 AND seq > $2 ORDER BY seq LIMIT 1",
        )
        .bind(name)
        .bind(after)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("cannot read events named `{name}`"))?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
    }

    async fn send_event(&self, name: &str, payload: &str) -> Result<(i64, u64)> {
        self.announcer.prepare();
        let sent = self
            .retrying(
                || format!("cannot send event `{name}`"),
                || async {
                    let mut tx = self.pool.begin().await?;
                    let sent = decide::waits::send_event(
                        &mut PgTx::new(self, &mut tx),
                        name,
                        payload,
                        self.clock.now(),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(sent)
                },
            )
            .await?;
        if sent.1 > 0 {
            self.announcer.work();
        }
        Ok(sent)
    }

    async fn cancel_run(&self, id: &str) -> Result<Option<Cancelled>> {
        self.announcer.prepare();
        let cancelled = self
            .retrying(
                || format!("cannot cancel run {id}"),
                || async {
                    let mut tx = self.pool.begin().await?;
                    let cancelled = decide::cancel::cancel_run(
                        &mut PgTx::new(self, &mut tx),
                        id,
                        self.clock.now(),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(cancelled)
                },
            )
            .await?;
        if cancelled.as_ref().is_some_and(|c| c.changed) {
            self.announcer.runs([id]);
        }
        Ok(cancelled)
    }

    async fn cancelled_steps(&self, steps: &[(String, u32)]) -> Result<Vec<(String, u32)>> {
        read::cancelled_steps(&self.pool, steps)
            .await
            .context("cannot read step statuses")
    }

    async fn resume_run(
        &self,
        id: &str,
        pins: &HashMap<String, (i64, String)>,
    ) -> Result<Option<u64>> {
        self.announcer.prepare();
        let resumed = self
            .retrying(
                || format!("cannot resume run {id}"),
                || async {
                    let mut tx = self.pool.begin().await?;
                    let resumed =
                        decide::resume::resume_run(&mut PgTx::new(self, &mut tx), id, pins).await?;
                    tx.commit().await?;
                    Ok(resumed)
                },
            )
            .await?;
        if resumed.is_some_and(|n| n > 0) {
            self.announcer.work();
        }
        Ok(resumed)
    }

    async fn kv_get(&self, scope: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        sqlx::query("SELECT value, version FROM kv WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("cannot read key `{key}`"))?
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
    }

    async fn kv_list(&self, scope: &str, prefix: &str, limit: u32) -> Result<KvListing> {
        read::kv_list(&self.pool, scope, prefix, limit)
            .await
            .with_context(|| format!("cannot list keys with prefix `{prefix}`"))
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<()> {
        workers::register(self, worker).await
    }

    async fn heartbeat_worker(&self, id: &str) -> Result<()> {
        workers::heartbeat(self, id).await
    }

    async fn stop_worker(&self, id: &str) -> Result<()> {
        workers::stop(self, id).await
    }

    async fn workers(&self, seen_within: Duration) -> Result<Vec<WorkerView>> {
        workers::list(self, seen_within).await
    }

    fn subscribe(&self) -> Option<Wakeups> {
        Some(self.listener.subscribe())
    }

    async fn close(&self) -> Result<()> {
        self.listener.stop();
        self.announcer.flush().await;
        self.pool.close().await;
        Ok(())
    }
}

impl PgStore {
    /// Announces what committed `completions` (with their `outcomes`) did, for other processes:
    /// the runs of the steps that ended may have ended, and steps may have become claimable
    /// (children created, parents woken, steps re-queued) unless the claim in the same
    /// transaction took fewer than it asked for (then it took everything claimable).
    fn announce_completions(
        &self,
        completions: &[Completion],
        outcomes: &[CommitOutcome],
        claimed_all_asked: bool,
    ) {
        let mut changed = false;
        let mut ended = Vec::new();
        for (completion, outcome) in completions.iter().zip(outcomes) {
            match outcome {
                CommitOutcome::Committed => {
                    changed = true;
                    if completion.ends_step() {
                        ended.push(completion.run_id.as_str());
                    }
                }
                CommitOutcome::Conflict => changed = true,
                CommitOutcome::Fenced | CommitOutcome::Cancelled => {}
            }
        }
        if !ended.is_empty() {
            self.announcer.runs(ended);
        }
        if changed && claimed_all_asked {
            self.announcer.work();
        }
    }
}
