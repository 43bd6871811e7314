//! Waits: when a suspended workflow's wait is over, which parents wake when children finish, and
//! what an event wakes.

use std::collections::HashSet;

use anyhow::{Context as _, Result};

use super::Tx;
use crate::{Completion, Micros, Wait};

/// How many finished children a workflow committing `wait` still waits for, given that
/// `unfinished` of the children it names have not finished yet: a join of all waits for every
/// unfinished one; a join of any is over (0) as soon as one of them has finished, else waits for
/// one. 0 means the wait is already over and the step is claimable at once. (Waits other than
/// for children count 0 here; they end by time or event.)
pub fn pending_children(wait: &Wait, unfinished: i64) -> i64 {
    match wait {
        Wait::Children(_) => unfinished,
        Wait::AnyChild(ids) if unfinished > 0 => {
            if unfinished < ids.len() as i64 {
                0
            } else {
                1
            }
        }
        _ => 0,
    }
}

/// The children `c` starts that its own wait joins: they are created awaited
/// ([`Tx::insert_children`]), since none of them can have finished yet.
pub fn joined_at_start(c: &Completion) -> HashSet<&str> {
    let created = || c.children.iter().map(|child| child.step_id.as_str());
    match &c.wait {
        Some(Wait::Children(ids) | Wait::AnyChild(ids)) if !c.children.is_empty() => {
            let joined: HashSet<&str> = ids.iter().map(String::as_str).collect();
            created().filter(|id| joined.contains(id)).collect()
        }
        _ => HashSet::new(),
    }
}

/// Settles the waits of `committed` suspensions: children that finished in the meantime and
/// events already sent count at once, so a wait that is already over leaves the step claimable.
/// The unfinished children a join names are marked awaited (their end counts down the join's
/// pending count, [`wake_parents`]); those the suspension itself starts were created awaited
/// ([`joined_at_start`]) and are unfinished, so only the others are looked at.
pub async fn settle(tx: &mut impl Tx, committed: &[&Completion]) -> Result<()> {
    for c in committed {
        match &c.wait {
            Some(wait @ (Wait::Children(ids) | Wait::AnyChild(ids))) => {
                let created = joined_at_start(c);
                let stored: Vec<String> = ids
                    .iter()
                    .filter(|id| !created.contains(id.as_str()))
                    .cloned()
                    .collect();
                let mut unfinished = created.len() as i64;
                if !stored.is_empty() {
                    unfinished += tx.await_unfinished(&stored).await?;
                }
                let pending = pending_children(wait, unfinished);
                if pending == 0 {
                    tx.end_wait(&c.step_id, c.attempt).await?;
                } else {
                    tx.set_pending(&c.step_id, c.attempt, pending).await?;
                }
            }
            Some(Wait::Event { name, after, .. }) => {
                // The event's timeout (`wake_at`) no longer holds the step back.
                if tx.event_sent_after(name, *after).await? {
                    tx.end_wait(&c.step_id, c.attempt).await?;
                }
            }
            Some(Wait::Timer(_)) | None => {}
        }
    }
    Ok(())
}

/// Counts the steps of `finished` (just ended) down in the workflows waiting for them, and
/// makes every workflow that no longer waits for any child claimable again.
pub async fn wake_parents(tx: &mut impl Tx, finished: &[&str]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let woken: Vec<String> = tx
        .count_down_parents(finished)
        .await?
        .into_iter()
        .filter(|(_, pending)| *pending <= 0)
        .map(|(id, _)| id)
        .collect();
    tx.end_child_waits(&woken).await
}

/// See [`crate::Store::send_event`]: records the event at `now` (its payload must be JSON) and
/// ends the wait of every step waiting for its name. Returns its sequence number and how many
/// steps it woke.
pub async fn send_event(
    tx: &mut impl Tx,
    name: &str,
    payload: &str,
    now: Micros,
) -> Result<(i64, u64)> {
    serde_json::from_str::<serde_json::Value>(payload)
        .with_context(|| format!("stored JSON value is not valid: {payload}"))
        .context("an event payload must be JSON")?;
    let seq = tx.insert_event(name, payload, now).await?;
    let woken = tx.end_event_waits(name).await?;
    Ok((seq, woken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_all_waits_for_every_unfinished_child_and_join_any_for_one() {
        let ids = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(pending_children(&Wait::Children(ids.clone()), 2), 2);
        assert_eq!(pending_children(&Wait::Children(ids.clone()), 0), 0);
        assert_eq!(pending_children(&Wait::AnyChild(ids.clone()), 3), 1);
        assert_eq!(pending_children(&Wait::AnyChild(ids.clone()), 2), 0);
        assert_eq!(pending_children(&Wait::AnyChild(ids), 0), 0);
        assert_eq!(pending_children(&Wait::Timer(5), 0), 0);
    }
}
