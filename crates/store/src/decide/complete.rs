//! Completing: how a batch of completions is applied, and everything a commit implies.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};

use super::{cancel, waits, Changed, JournalRow, LogRow, Tx};
use crate::{CommitOutcome, Completion, KvRead, KvWrite, Micros, Status, Wait};

/// Statuses a completion may set besides `running` (a suspension or a checkpoint).
const COMPLETION_STATUSES: [Status; 3] = [Status::Succeeded, Status::Failed, Status::Cancelled];

/// A completion checked by [`encode`], with its JSON values serialized.
#[derive(Debug)]
pub struct Encoded<'a> {
    /// The completion.
    pub c: &'a Completion,
    /// Its output and error as JSON text.
    pub output: Option<String>,
    pub error: Option<String>,
}

/// Checks `completions` (a suspension must be `running`, a retry `failed`; the status must be
/// one a completion may set) and serializes their JSON values. Fails naming the first
/// completion that is not valid.
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

/// How a completion leaves its step, as [`Tx::fence_and_complete`] writes it.
#[derive(Debug)]
pub struct StepEnd<'a> {
    /// The completion.
    pub e: &'a Encoded<'a>,
    /// The step's new status.
    pub status: &'static str,
    /// What it waits for (`children`, `timer` or `event`), if anything.
    pub wait: Option<&'static str>,
    /// The event it waits for.
    pub wait_event: Option<&'a str>,
    /// Not claimable before this time (a timer, an event's deadline, a retry's backoff).
    pub wake_at: Option<Micros>,
    /// When its attempt completed (`None` while the attempt goes on: suspended or
    /// checkpointed).
    pub completed_at: Option<Micros>,
}

/// How completion `e` leaves its step. A suspension (any [`Wait`]) leaves it `queued` with
/// what it waits for (`children`, `timer` until `wake_at`, `event` named `wait_event` until an
/// optional `wake_at`); a failure queued for a retry leaves it `queued` until `retry_at`;
/// anything else leaves it in the completion's status. A suspended or checkpointed attempt has
/// not completed.
pub fn step_end<'a>(e: &'a Encoded<'a>) -> StepEnd<'a> {
    let c = e.c;
    let (status, wait, wait_event, wake_at) = match (&c.wait, c.retry_at) {
        (Some(Wait::Children(_) | Wait::AnyChild(_)), _) => {
            ("queued", Some("children"), None, None)
        }
        (Some(Wait::Timer(until)), _) => ("queued", Some("timer"), None, Some(*until)),
        (Some(Wait::Event { name, deadline, .. }), _) => {
            ("queued", Some("event"), Some(name.as_str()), *deadline)
        }
        (None, Some(at)) => ("queued", None, None, Some(at)),
        (None, None) => (c.status.as_str(), None, None, None),
    };
    let completed_at = (status != "running" && wait.is_none()).then_some(c.completed_at);
    StepEnd {
        e,
        status,
        wait,
        wait_event,
        wake_at,
        completed_at,
    }
}

/// Applies `encoded` completions in order inside `tx` (see [`crate::Store::complete_steps`]),
/// with `now` as the time of the writes the store makes on its own; returns their outcomes in
/// order.
///
/// Each completion applies only where its fence holds (the step is `running` under its
/// attempt); one that reads or writes key-value data applies only if every read still holds,
/// checked after the key-value completions of the batch checked before it, which go most
/// [`Completion::reruns`] first, then in batch order (else it is [`CommitOutcome::Conflict`] and
/// its step runs again under the same attempt; batches that read no prefix are checked together,
/// see [`apply_kv_together`]). A committed completion's attempt mirrors its
/// step, and a run ends when its root step ends, with its outcome. Then, for every committed
/// completion: the children it started are created, its wait is settled ([`waits::settle`]),
/// the parents waiting for the steps that ended are counted down and woken
/// ([`waits::wake_parents`]), the unfinished descendants of those steps are cancelled
/// ([`cancel::abandoned`]), and its journal and logs are stored.
pub async fn apply(
    tx: &mut impl Tx,
    encoded: &[Encoded<'_>],
    now: Micros,
) -> Result<Vec<CommitOutcome>> {
    let mut outcomes = vec![CommitOutcome::Fenced; encoded.len()];
    // Completions are applied in order. A batch is split into segments in which every step
    // appears at most once; each segment is applied with a few multi-row statements, and a
    // repeated step (a worker bug, but it must not corrupt anything) sees the effect of the
    // earlier completions of the batch, as if applied one by one.
    let mut committed: Vec<&Completion> = Vec::with_capacity(encoded.len());
    // Of the committed completions that ended their step: those whose step has a parent (to
    // count down), and those whose step may have started children (to cancel the unfinished
    // ones). A step with no workflow activation before this completion started no children
    // except this completion's own.
    let mut ended_children: Vec<&str> = Vec::new();
    let mut ended_parents: Vec<&str> = Vec::new();
    let mut start = 0;
    while start < encoded.len() {
        let mut seen = HashSet::new();
        let end = encoded[start..]
            .iter()
            .position(|e| !seen.insert(e.c.step_id.as_str()))
            .map_or(encoded.len(), |p| start + p);
        let segment = &encoded[start..end];
        let mut applied: HashMap<String, Changed> = HashMap::with_capacity(segment.len());
        // Completions that touch key-value storage go one by one: each is checked against the
        // writes of those before it, the one re-executed most often after conflicts first (then
        // in batch order), so an attempt that keeps losing to newer ones wins once it is in a
        // batch with them. The others are applied together.
        let mut plain = Vec::with_capacity(segment.len());
        let mut with_kv = Vec::new();
        for (i, e) in segment.iter().enumerate() {
            if e.c.kv_reads.is_empty() && e.c.kv_writes.is_empty() {
                plain.push(step_end(e));
            } else {
                with_kv.push((i, e));
            }
        }
        with_kv.sort_by_key(|(_, e)| std::cmp::Reverse(e.c.reruns));
        let conflicted = if with_kv.iter().any(|(_, e)| reads_a_prefix(e.c)) {
            apply_kv_one_by_one(tx, &with_kv, &mut applied, now).await?
        } else {
            apply_kv_together(tx, &with_kv, &mut applied, now).await?
        };
        for (i, e) in conflicted {
            outcomes[start + i] = if tx.requeue_conflicted(&e.c.step_id, e.c.attempt).await? {
                CommitOutcome::Conflict
            } else {
                fenced(tx, &e.c.step_id).await?
            };
        }
        if !plain.is_empty() {
            let done = tx.fence_and_complete(&plain).await?;
            applied.extend(done.into_iter().map(|d| (d.step_id.clone(), d)));
        }
        let mut ids: Vec<&str> = Vec::with_capacity(applied.len());
        let mut ended_roots: Vec<&str> = Vec::new();
        for (i, e) in segment.iter().enumerate() {
            if let Some(changed) = applied.get(&e.c.step_id) {
                outcomes[start + i] = CommitOutcome::Committed;
                committed.push(e.c);
                ids.push(&e.c.step_id);
                if e.c.ends_step() {
                    let step = e.c.step_id.as_str();
                    if changed.root {
                        ended_roots.push(step);
                    } else {
                        ended_children.push(step);
                    }
                    if changed.activations > 0 || !e.c.children.is_empty() {
                        ended_parents.push(step);
                    }
                }
            } else if outcomes[start + i] != CommitOutcome::Conflict {
                outcomes[start + i] = fenced(tx, &e.c.step_id).await?;
            }
        }
        // The attempt mirrors the step: it goes on while its workflow waits or lingers, and
        // failed when the step is queued for a retry.
        tx.mirror_attempts(&ids).await?;
        // The run mirrors its root step once that has ended.
        tx.end_runs_with_root(&ended_roots).await?;
        start = end;
    }

    tx.insert_children(&committed, now).await?;
    waits::settle(tx, &committed).await?;
    waits::wake_parents(tx, &ended_children).await?;
    cancel::abandoned(tx, &ended_parents, now).await?;

    let journal: Vec<JournalRow> = committed
        .iter()
        .flat_map(|c| c.journal.iter().map(|j| (c.step_id.as_str(), c.attempt, j)))
        .collect();
    tx.insert_journal(&journal).await?;
    let logs: Vec<LogRow> = committed
        .iter()
        .flat_map(|c| c.logs.iter().map(|l| (c.step_id.as_str(), c.attempt, l)))
        .collect();
    tx.insert_logs(&logs).await?;
    Ok(outcomes)
}

/// Completions of one segment that touch key-value data, with their positions in it, in the
/// order they are checked.
type KvCompletions<'e, 'c> = [(usize, &'e Encoded<'c>)];

/// True when `c` read the keys under a prefix (such completions are checked one by one).
fn reads_a_prefix(c: &Completion) -> bool {
    c.kv_reads
        .iter()
        .any(|r| matches!(r, KvRead::Prefix { .. }))
}

/// Applies `with_kv` one by one: each is checked against the store as the ones before it left
/// it, and applied (fenced, then its writes) unless a read no longer holds. The steps changed go
/// into `applied`; returns the completions that conflicted.
async fn apply_kv_one_by_one<'e, 'c>(
    tx: &mut impl Tx,
    with_kv: &KvCompletions<'e, 'c>,
    applied: &mut HashMap<String, Changed>,
    now: Micros,
) -> Result<Vec<(usize, &'e Encoded<'c>)>> {
    let mut conflicted = Vec::new();
    for &(i, e) in with_kv {
        if kv_conflict(tx, &e.c.kv_reads).await? {
            conflicted.push((i, e));
            continue;
        }
        let done = tx.fence_and_complete(&[step_end(e)]).await?;
        if !done.is_empty() && e.c.status == Status::Succeeded {
            tx.apply_kv_writes(&e.c.kv_writes, now).await?;
        }
        applied.extend(done.into_iter().map(|d| (d.step_id.clone(), d)));
    }
    Ok(conflicted)
}

/// Applies `with_kv` (which read keys, no prefixes) with three statements whatever their
/// number: the versions of every key they read, then, in Rust, each checked in order against
/// those versions and against the keys written by the ones before it that pass; those that
/// pass are fenced together and their writes (of the succeeded ones the fence let through)
/// applied in order in one statement. The outcome is the one-by-one outcome, except that a
/// completion that read a key written by an earlier one of the batch whose fence then failed
/// (its lease was lost) conflicts and runs again, where one by one it would not have: a rare
/// extra re-execution, never a lost or wrong write. Returns the completions that conflicted.
async fn apply_kv_together<'e, 'c>(
    tx: &mut impl Tx,
    with_kv: &KvCompletions<'e, 'c>,
    applied: &mut HashMap<String, Changed>,
    now: Micros,
) -> Result<Vec<(usize, &'e Encoded<'c>)>> {
    let mut keys: Vec<(&str, &str)> = with_kv
        .iter()
        .flat_map(|(_, e)| e.c.kv_reads.iter())
        .filter_map(|r| match r {
            KvRead::Key { scope, key, .. } => Some((scope.as_str(), key.as_str())),
            KvRead::Prefix { .. } => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let stored: HashMap<(&str, &str), i64> = keys
        .iter()
        .copied()
        .zip(tx.kv_versions(&keys).await?)
        .map(|(k, v)| (k, v.unwrap_or(0)))
        .collect();
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    let (mut passing, mut conflicted) = (Vec::new(), Vec::new());
    for &(i, e) in with_kv {
        let holds = e.c.kv_reads.iter().all(|r| match r {
            KvRead::Key {
                scope,
                key,
                version,
            } => {
                let k = (scope.as_str(), key.as_str());
                !written.contains(&k) && stored.get(&k) == Some(version)
            }
            KvRead::Prefix { .. } => unreachable!("prefix reads go one by one"),
        });
        if !holds {
            conflicted.push((i, e));
            continue;
        }
        if e.c.status == Status::Succeeded {
            written.extend(
                e.c.kv_writes
                    .iter()
                    .map(|w| (w.scope.as_str(), w.key.as_str())),
            );
        }
        passing.push(e);
    }
    let ends: Vec<StepEnd> = passing.iter().map(|e| step_end(e)).collect();
    let done = tx.fence_and_complete(&ends).await?;
    let writes: Vec<KvWrite> = passing
        .iter()
        .filter(|e| e.c.status == Status::Succeeded)
        .filter(|e| done.iter().any(|d| d.step_id == e.c.step_id))
        .flat_map(|e| e.c.kv_writes.iter().cloned())
        .collect();
    tx.apply_kv_writes(&writes, now).await?;
    applied.extend(done.into_iter().map(|d| (d.step_id.clone(), d)));
    Ok(conflicted)
}

/// True when one of `reads` no longer holds: a key's version changed (or it appeared or
/// vanished), or a prefix's key count or newest version did.
pub async fn kv_conflict(tx: &mut impl Tx, reads: &[KvRead]) -> Result<bool> {
    for read in reads {
        let changed = match read {
            KvRead::Key {
                scope,
                key,
                version,
            } => tx.kv_version(scope, key).await?.unwrap_or(0) != *version,
            KvRead::Prefix {
                scope,
                prefix,
                count,
                max_version,
            } => tx.kv_prefix(scope, prefix).await? != (*count, *max_version),
        };
        if changed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why a completion of `step_id` was refused: the step was cancelled, or a newer attempt owns it.
async fn fenced(tx: &mut impl Tx, step_id: &str) -> Result<CommitOutcome> {
    Ok(match tx.step_status(step_id).await? {
        Some(Status::Cancelled) => CommitOutcome::Cancelled,
        _ => CommitOutcome::Fenced,
    })
}
