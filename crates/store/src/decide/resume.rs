//! Resuming a failed or cancelled run: which steps re-queue, where a workflow's journal is cut,
//! which children are superseded, pins.

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use super::{JournalRow, Tx};
use crate::Status;
use hypergraph_core::journal::{resume_cut, Entry};

/// See [`crate::Store::resume_run`]: re-queues the failed and cancelled steps of run `id`
/// (failed or cancelled itself, else an error), keeping every completed step and its output,
/// and queues the run again. A workflow continues in a new attempt whose journal is its last
/// journal cut by [`resume_cut`] (before the first join that saw a failed child), so it waits
/// for the re-run children and reuses everything else; children it started after the cut lose
/// their position and, with their own descendants, are superseded (not re-run). `pins` moves
/// the run and its re-queued steps to another version of their deployment (by deployment
/// name). Returns how many steps were re-queued, `None` when there is no such run.
pub async fn resume_run(
    tx: &mut impl Tx,
    id: &str,
    pins: &HashMap<String, (i64, String)>,
) -> Result<Option<u64>> {
    let Some((status, deployment)) = tx.run_status(id).await? else {
        return Ok(None);
    };
    anyhow::ensure!(
        matches!(status, Status::Failed | Status::Cancelled),
        "run {id} is {status}: only failed or cancelled runs can be resumed"
    );
    let steps = tx.resumable_steps(id).await?;
    let mut superseded: HashSet<String> = HashSet::new();
    let mut requeued = 0;
    for step in &steps {
        let step_id = step.step_id.as_str();
        // Children are created after their workflow, so a workflow comes first.
        if superseded.contains(step_id) {
            // And so are its own children.
            superseded.extend(tx.children_of(step_id).await?);
            continue;
        }
        requeued += 1;
        if step.activations > 0 {
            // A workflow: a new attempt that inherits its journal up to the first join that saw
            // a failure, so the re-queued children are waited for and the rest is reused.
            let (records, _) = tx.resume_journal(step_id).await?;
            let entries = records
                .iter()
                .map(Entry::from_record)
                .collect::<Result<Vec<_>>>()?;
            let cut = resume_cut(&entries);
            // Children started after the cut belong to the abandoned continuation: the resumed
            // workflow starts its own from that position on, so these lose their position (and
            // are not re-run).
            let started = entries[..cut]
                .iter()
                .filter(|e| e.started_child().is_some())
                .count() as u32;
            superseded.extend(tx.unposition_children(step_id, started).await?);
            let next = step.attempt + 1;
            tx.new_attempt(step_id, next).await?;
            let kept: Vec<JournalRow> = records[..cut].iter().map(|r| (step_id, next, r)).collect();
            tx.insert_journal(&kept).await?;
            tx.requeue_step(step_id, Some(next)).await?;
        } else {
            tx.requeue_step(step_id, None).await?;
        }
        if let Some((version, digest)) = pins.get(&step.deployment) {
            tx.pin_step(step_id, *version, digest).await?;
        }
    }
    tx.requeue_run(id).await?;
    if let Some((version, digest)) = pins.get(&deployment) {
        tx.pin_run(id, *version, digest).await?;
    }
    Ok(Some(requeued))
}
