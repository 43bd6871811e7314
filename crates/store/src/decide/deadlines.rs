//! Deadlines: which schedule-to-start and run deadlines expired, and what fails with them.

use anyhow::Result;

use super::{cancel, errors, waits, Tx};
use crate::{Micros, Status};

/// Enforces the schedule-to-start and run deadlines that passed by `now` (a deadline equal to
/// `now` has passed): a queued step nobody started in time fails with
/// `schedule_to_start_timeout` (its run fails with it when it is the root step; a workflow
/// waiting for it counts it as finished); a run past its deadline fails with `run_timeout` and
/// its unfinished steps are cancelled ([`cancel::end_run`]).
pub async fn expire(tx: &mut impl Tx, now: Micros) -> Result<()> {
    let error = errors::schedule_to_start_timeout().to_string();
    let late = tx.fail_late_starts(now, now, &error).await?;
    let mut children = Vec::new();
    for step in &late {
        if step.parent_id.is_some() {
            children.push(step.step_id.as_str());
        } else {
            tx.end_run(&step.run_id, Status::Failed, &error, now)
                .await?;
        }
    }
    waits::wake_parents(tx, &children).await?;
    let overdue = tx.runs_past_deadline(now).await?;
    if overdue.is_empty() {
        return Ok(());
    }
    let error = errors::run_timeout();
    for id in overdue {
        cancel::end_run(tx, &id, Status::Failed, &error, now).await?;
    }
    Ok(())
}
