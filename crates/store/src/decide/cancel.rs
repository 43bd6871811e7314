//! Cancellation: what a cancel, a run's failure or a step's end cascades to.

use anyhow::Result;
use serde_json::Value;

use super::{errors, Tx};
use crate::{Cancelled, Micros, Status};

/// See [`crate::Store::cancel_run`]: ends run `id` as cancelled at `now`, with every unfinished
/// step of it ([`end_run`]).
pub async fn cancel_run(tx: &mut impl Tx, id: &str, now: Micros) -> Result<Option<Cancelled>> {
    end_run(tx, id, Status::Cancelled, &errors::run_cancelled(), now).await
}

/// Ends run `id` with `status` and `error` at `now` if it is unfinished, cancelling its
/// unfinished steps (children included; their workers interrupt running attempts). `None` when
/// there is no such run; `changed: false` when it had ended already.
pub async fn end_run(
    tx: &mut impl Tx,
    id: &str,
    status: Status,
    error: &Value,
    now: Micros,
) -> Result<Option<Cancelled>> {
    let Some((current, _)) = tx.run_status(id).await? else {
        return Ok(None);
    };
    if current.is_terminal() {
        return Ok(Some(Cancelled {
            steps: 0,
            changed: false,
        }));
    }
    let unfinished = tx.unfinished_steps(id).await?;
    let error = error.to_string();
    let steps = tx.cancel_steps(&unfinished, now, &error).await?;
    tx.end_run(id, status, &error, now).await?;
    Ok(Some(Cancelled {
        steps,
        changed: true,
    }))
}

/// Cancels the unfinished descendants of the steps `ended` (just ended, none of them queued for
/// a retry): a workflow that ends takes the children it did not join with it, and theirs, so
/// nothing of a finished step runs on. Their workers interrupt running attempts.
pub async fn abandoned(tx: &mut impl Tx, ended: &[&str], now: Micros) -> Result<()> {
    let mut abandoned: Vec<String> = Vec::new();
    let mut level = tx.unfinished_children(ended).await?;
    while !level.is_empty() {
        let parents: Vec<&str> = level.iter().map(String::as_str).collect();
        let below = tx.unfinished_children(&parents).await?;
        abandoned.append(&mut level);
        level = below;
    }
    if abandoned.is_empty() {
        return Ok(());
    }
    let error = errors::abandoned().to_string();
    tx.cancel_steps(&abandoned, now, &error).await?;
    Ok(())
}
