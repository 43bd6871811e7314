//! Contracts of claiming, completing, leases, retries, deadlines, key-value storage and reads.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{failure, journal, kind, logs, success, Backend, Ctx, HOUR};
use crate::{CommitOutcome, KvRead, KvWrite, Policy, RunFilter, Status, StepQuery, Store};

fn write(key: &str, value: Option<&str>) -> KvWrite {
    KvWrite {
        scope: "default/t".into(),
        key: key.into(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

/// A completion's journal, logs, key-value writes, step and run status are committed together.
pub async fn atomic_completion<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let runs = t.submit(1).await;
    let step = t.claim("w1", 1).await.remove(0);
    assert_eq!(
        (step.run_id.as_str(), step.attempt),
        (runs[0].id.as_str(), 1)
    );
    assert_eq!(
        t.store().run_status(&step.run_id).await.unwrap(),
        Some(Status::Running)
    );
    let mut done = success(&step, t.now());
    done.journal = journal(3);
    done.logs = logs(2, t.now());
    done.kv_writes = vec![write("k", Some("v"))];
    let outcomes = t.store().complete_steps(&[done]).await.unwrap();
    assert_eq!(outcomes, [CommitOutcome::Committed]);
    let s = t.store();
    assert_eq!(s.journal(&step.step_id, 1).await.unwrap(), journal(3));
    assert_eq!(s.run_logs(&step.run_id).await.unwrap().len(), 2);
    assert_eq!(s.kv_get("default/t", "k").await.unwrap().unwrap().0, b"v");
    let result = s.run_result(&step.run_id).await.unwrap().unwrap();
    assert_eq!(result.status, Status::Succeeded);
    assert_eq!(result.output, Some(json!({ "ok": step.step_id })));
    assert_eq!(result.attempts, 1);
    // A failed completion records its error and applies none of its key-value writes.
    t.submit(1).await;
    let step = t.claim("w1", 1).await.remove(0);
    let mut failed = failure(&step, t.now());
    failed.kv_writes = vec![write("never", Some("x"))];
    s.complete_steps(&[failed]).await.unwrap();
    let result = s.run_result(&step.run_id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("trap"))
    );
    assert_eq!(s.kv_get("default/t", "never").await.unwrap(), None);
    assert!(
        t.claim("w1", 1).await.is_empty(),
        "nothing is left to claim"
    );
}

/// A completion of a superseded attempt changes nothing; the current attempt commits.
pub async fn fencing_by_attempt<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(1).await;
    let s = t.store();
    let first = s
        .claim_steps("w1", 1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    t.advance(Duration::from_secs(2));
    let second = s.claim_steps("w2", 1, HOUR).await.unwrap().remove(0);
    assert_eq!((second.step_id == first.step_id, second.attempt), (true, 2));
    let mut stale = success(&first, t.now());
    stale.journal = journal(2);
    stale.logs = logs(1, t.now());
    stale.kv_writes = vec![write("stale", Some("x"))];
    assert_eq!(
        s.complete_steps(&[stale]).await.unwrap(),
        [CommitOutcome::Fenced]
    );
    assert!(s.journal(&first.step_id, 1).await.unwrap().is_empty());
    assert!(s.run_logs(&first.run_id).await.unwrap().is_empty());
    assert_eq!(s.kv_get("default/t", "stale").await.unwrap(), None);
    assert_eq!(
        s.run_status(&first.run_id).await.unwrap(),
        Some(Status::Running)
    );
    let done = success(&second, t.now());
    assert_eq!(
        s.complete_steps(&[done]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    let detail = s.run(&first.run_id).await.unwrap().unwrap();
    assert_eq!(detail.status, Status::Succeeded);
    let attempts: Vec<_> = detail.steps[0]
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(attempts, [(1, Status::Failed), (2, Status::Succeeded)]);
    assert_eq!(
        kind(&detail.steps[0].attempts[0].error),
        Some("lease_expired")
    );
}

/// Concurrent claimers on two handles of one database never get the same step.
pub async fn exactly_one_claimant_across_handles<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let total = 200;
    t.submit(total).await;
    let other: Arc<B::Store> = Arc::new(t.backend.open_another().await.unwrap());
    let mine = Arc::new(t.backend.open_another().await.unwrap());
    let mut tasks = Vec::new();
    for (i, store) in [mine, other].into_iter().enumerate() {
        for j in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{i}{j}");
                let mut got = Vec::new();
                loop {
                    let steps = store.claim_steps(&worker, 3, HOUR).await.unwrap();
                    if steps.is_empty() {
                        return got;
                    }
                    got.extend(steps.into_iter().map(|s| (s.step_id, s.attempt)));
                }
            }));
        }
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for (id, attempt) in task.await.unwrap() {
            assert_eq!(attempt, 1);
            assert!(seen.insert(id), "a step was claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
}

/// A running step whose lease expired is claimed again under the next attempt, before queued
/// steps; not a moment before it expires.
pub async fn lease_expiry_and_reclaim<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(1).await;
    let s = t.store();
    let lost = s
        .claim_steps("w1", 1, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0);
    t.submit(1).await;
    t.advance(Duration::from_secs(9));
    let queued = s.claim_steps("w2", 1, HOUR).await.unwrap();
    assert_ne!(queued[0].step_id, lost.step_id, "the lease still holds");
    t.advance(Duration::from_secs(2));
    t.submit(1).await;
    let again = s.claim_steps("w3", 1, HOUR).await.unwrap();
    assert_eq!(
        (again[0].step_id.as_str(), again[0].attempt),
        (lost.step_id.as_str(), 2)
    );
    assert_eq!(again[0].assigned_at, t.now());
    let detail = s.run(&lost.run_id).await.unwrap().unwrap();
    assert_eq!(detail.steps[0].worker_id.as_deref(), Some("w3"));
    assert_eq!(detail.steps[0].lost_leases, 1);
    assert_eq!(
        detail.steps[0].lease_expires_at,
        Some(t.now() + HOUR.as_micros() as i64)
    );
}

/// Renewing a lease moves its expiry; only the owning worker's renewal counts.
pub async fn renewed_lease_is_not_reclaimed<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(1).await;
    let s = t.store();
    let lease = Duration::from_secs(10);
    let step = s.claim_steps("w1", 1, lease).await.unwrap().remove(0);
    t.advance(Duration::from_secs(8));
    let owned = [(step.step_id.clone(), step.attempt)];
    s.renew_leases("someone-else", &owned, HOUR).await.unwrap();
    s.renew_leases("w1", &owned, lease).await.unwrap();
    t.advance(Duration::from_secs(8));
    assert!(s.claim_steps("w2", 1, HOUR).await.unwrap().is_empty());
    t.advance(Duration::from_secs(3));
    assert_eq!(s.claim_steps("w2", 1, HOUR).await.unwrap().len(), 1);
}

/// A step that lost `max_lost_leases` leases fails with `lease_expired` instead of being
/// claimed again.
pub async fn max_lost_leases_fails_the_step<B: Backend>() {
    let policy = Policy {
        max_lost_leases: Some(2),
        ..Policy::default()
    };
    let t = Ctx::<B>::new(policy).await;
    t.submit(1).await;
    let s = t.store();
    let lease = Duration::from_secs(1);
    let first = s.claim_steps("w1", 1, lease).await.unwrap().remove(0);
    t.advance(Duration::from_secs(2));
    let second = s.claim_steps("w2", 1, lease).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    t.advance(Duration::from_secs(2));
    assert!(s.claim_steps("w3", 1, lease).await.unwrap().is_empty());
    let result = s.run_result(&first.run_id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("lease_expired"))
    );
    let late = success(&second, t.now());
    assert_ne!(
        s.complete_steps(&[late]).await.unwrap(),
        [CommitOutcome::Committed]
    );
}

/// A failed attempt queued for a retry is not claimable before `retry_at`, then runs under the
/// next attempt.
pub async fn retry_backoff<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(1).await;
    let s = t.store();
    let step = t.claim("w1", 1).await.remove(0);
    let mut retry = failure(&step, t.now());
    retry.retry_at = Some(t.now() + 5_000_000);
    assert_eq!(
        s.complete_steps(&[retry]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    assert_eq!(
        s.run_status(&step.run_id).await.unwrap(),
        Some(Status::Running)
    );
    assert!(
        t.claim("w1", 1).await.is_empty(),
        "claimable before its retry time"
    );
    t.advance(Duration::from_millis(4_999));
    assert!(
        t.claim("w1", 1).await.is_empty(),
        "claimable before its retry time"
    );
    t.advance(Duration::from_millis(1));
    let again = t.claim("w1", 1).await.remove(0);
    assert_eq!((again.step_id, again.attempt), (step.step_id.clone(), 2));
    let detail = s.run(&step.run_id).await.unwrap().unwrap();
    assert_eq!(detail.steps[0].attempts[0].status, Status::Failed);
}

/// A queued step nobody claimed before its schedule-to-start deadline fails, and so does its run.
pub async fn schedule_to_start_deadline<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let mut late = t.run("t/f", &[]);
    late.start_deadline = Some(t.now() + 1_000_000);
    let mut timely = t.run("t/f", &[]);
    timely.start_deadline = Some(t.now() + 10_000_000);
    let s = t.store();
    s.submit_runs(&[late.clone(), timely.clone()])
        .await
        .unwrap();
    t.advance(Duration::from_secs(2));
    let claimed = t.claim("w1", 2).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run_id, timely.id);
    let result = s.run_result(&late.id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("schedule_to_start_timeout"))
    );
}

/// A run past its deadline fails and its running attempt is fenced off as cancelled.
pub async fn run_deadline<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let mut run = t.run("t/f", &[]);
    run.deadline = Some(t.now() + 1_000_000);
    let s = t.store();
    s.submit_runs(std::slice::from_ref(&run)).await.unwrap();
    let step = t.claim("w1", 1).await.remove(0);
    t.advance(Duration::from_secs(2));
    assert!(t.claim("w2", 1).await.is_empty());
    let result = s.run_result(&run.id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("run_timeout"))
    );
    let owned = [(step.step_id.clone(), step.attempt)];
    assert_eq!(s.cancelled_steps(&owned).await.unwrap(), owned);
    let late = success(&step, t.now());
    assert_eq!(
        s.complete_steps(&[late]).await.unwrap(),
        [CommitOutcome::Cancelled]
    );
    assert_eq!(s.run_status(&run.id).await.unwrap(), Some(Status::Failed));
}

/// A deadline equal to now has passed: a queued step whose schedule-to-start deadline is now
/// fails instead of being claimed, and a run whose deadline is now fails.
pub async fn deadlines_are_inclusive<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let mut late = t.run("t/f", &[]);
    late.start_deadline = Some(t.now() + 1_000_000);
    let mut overdue = t.run("t/f", &[]);
    overdue.deadline = Some(t.now() + 1_000_000);
    let s = t.store();
    s.submit_runs(&[late.clone(), overdue.clone()])
        .await
        .unwrap();
    t.advance(Duration::from_secs(1));
    assert!(t.claim("w1", 2).await.is_empty(), "both deadlines are now");
    let result = s.run_result(&late.id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("schedule_to_start_timeout"))
    );
    let result = s.run_result(&overdue.id).await.unwrap().unwrap();
    assert_eq!(
        (result.status, kind(&result.error)),
        (Status::Failed, Some("run_timeout"))
    );
}

/// Key-value writes are visible once committed, in order (the last write of a key wins),
/// scoped; prefix reads list in byte order with the prefix's count and newest version.
pub async fn kv_visibility<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(2).await;
    let s = t.store();
    let steps = t.claim("w1", 2).await;
    let mut a = success(&steps[0], t.now());
    a.kv_writes = vec![
        write("p/2", Some("two")),
        write("p/1", Some("one")),
        write("q", Some("q")),
        // The same key twice: the later write wins.
        write("r", Some("first")),
        write("r", Some("second")),
    ];
    let mut b = success(&steps[1], t.now());
    b.kv_writes = vec![write("p/1", None), write("p/3", Some("three"))];
    s.complete_steps(&[a]).await.unwrap();
    let (_, v1) = s.kv_get("default/t", "p/2").await.unwrap().unwrap();
    s.complete_steps(&[b]).await.unwrap();
    assert_eq!(s.kv_get("default/t", "p/1").await.unwrap(), None);
    assert_eq!(s.kv_get("default/other", "p/2").await.unwrap(), None);
    assert_eq!(
        s.kv_get("default/t", "r").await.unwrap().unwrap().0,
        b"second"
    );
    let (_, v3) = s.kv_get("default/t", "p/3").await.unwrap().unwrap();
    assert!(
        v3 > v1,
        "each commit stamps a newer version ({v3} after {v1})"
    );
    let listing = s.kv_list("default/t", "p/", 1).await.unwrap();
    assert_eq!(listing.keys, ["p/2"]);
    assert_eq!((listing.count, listing.max_version), (2, v3));
    let other = t.backend.open_another().await.unwrap();
    assert_eq!(
        other.kv_get("default/t", "q").await.unwrap().unwrap().0,
        b"q"
    );
}

/// Of completions committed together that read the same key, the one whose attempt lost most
/// conflict rounds before is checked first and wins, whatever the batch order.
pub async fn kv_conflicts_favour_the_attempt_that_lost_most<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(3).await;
    let s = t.store();
    let steps = t.claim("w1", 3).await;
    let bump = |step, value: &str, reruns| {
        let mut c = success(step, t.now());
        c.kv_reads = vec![KvRead::Key {
            scope: "default/t".into(),
            key: "n".into(),
            version: 0,
        }];
        c.kv_writes = vec![write("n", Some(value))];
        c.reruns = reruns;
        c
    };
    let outcomes = s
        .complete_steps(&[
            bump(&steps[0], "fresh", 0),
            bump(&steps[1], "loser", 7),
            bump(&steps[2], "other", 2),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Conflict,
            CommitOutcome::Committed,
            CommitOutcome::Conflict
        ]
    );
    assert_eq!(
        s.kv_get("default/t", "n").await.unwrap().unwrap().0,
        b"loser"
    );
}

/// Completions committed together that read keys are each checked against the store and
/// against the writes of the ones checked before it: one that read a key an earlier one of the
/// batch writes conflicts; a failed completion's writes, and a fenced one's, are not applied.
pub async fn kv_batches_check_each_completion_against_the_ones_before<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(6).await;
    let s = t.store();
    let steps = t.claim("w1", 6).await;
    let read = |key: &str, version| KvRead::Key {
        scope: "default/t".into(),
        key: key.into(),
        version,
    };
    let mut first = success(&steps[0], t.now());
    first.kv_writes = vec![write("a", Some("0"))];
    s.complete_steps(&[first]).await.unwrap();
    let (_, a) = s.kv_get("default/t", "a").await.unwrap().unwrap();
    let mut holds = success(&steps[1], t.now());
    holds.kv_reads = vec![read("a", a)];
    holds.kv_writes = vec![write("b", Some("1"))];
    let mut reads_b = success(&steps[2], t.now());
    reads_b.kv_reads = vec![read("b", 0)];
    reads_b.kv_writes = vec![write("z", Some("2"))];
    let mut failed = failure(&steps[3], t.now());
    failed.kv_reads = vec![read("c", 0)];
    failed.kv_writes = vec![write("c", Some("3"))];
    let mut reads_c = success(&steps[4], t.now());
    reads_c.kv_reads = vec![read("c", 0), read("a", a)];
    reads_c.kv_writes = vec![write("d", Some("4"))];
    let mut stale = success(&steps[5], t.now());
    stale.attempt += 1;
    stale.kv_writes = vec![write("e", Some("5"))];
    let outcomes = s
        .complete_steps(&[holds, reads_b, failed, reads_c, stale])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Committed,
            CommitOutcome::Conflict,
            CommitOutcome::Committed,
            CommitOutcome::Committed,
            CommitOutcome::Fenced
        ]
    );
    let value = |key: &'static str| async move {
        s.kv_get("default/t", key).await.unwrap().map(|(v, _)| v)
    };
    assert_eq!(value("b").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value("d").await.as_deref(), Some(&b"4"[..]));
    for absent in ["z", "c", "e"] {
        assert_eq!(value(absent).await, None, "`{absent}` was written");
    }
}

/// A completion whose key or prefix reads no longer hold is refused and its step re-queued
/// under the same attempt; one whose reads hold commits.
pub async fn kv_conflicts<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    t.submit(3).await;
    let s = t.store();
    let steps = t.claim("w1", 3).await;
    let key = |version| KvRead::Key {
        scope: "default/t".into(),
        key: "n".into(),
        version,
    };
    let prefix = |count, max_version| KvRead::Prefix {
        scope: "default/t".into(),
        prefix: "n".into(),
        count,
        max_version,
    };
    let mut first = success(&steps[0], t.now());
    first.kv_reads = vec![key(0), prefix(0, 0)];
    first.kv_writes = vec![write("n", Some("1"))];
    let mut second = success(&steps[1], t.now());
    second.kv_reads = vec![key(0)];
    second.kv_writes = vec![write("n", Some("2"))];
    let mut third = success(&steps[2], t.now());
    third.kv_reads = vec![prefix(0, 0)];
    let outcomes = s.complete_steps(&[first, second, third]).await.unwrap();
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Committed,
            CommitOutcome::Conflict,
            CommitOutcome::Conflict
        ]
    );
    assert_eq!(s.kv_get("default/t", "n").await.unwrap().unwrap().0, b"1");
    let again = t.claim("w2", 3).await;
    let mut ids: Vec<_> = again
        .iter()
        .map(|c| (c.step_id.clone(), c.attempt))
        .collect();
    ids.sort();
    let mut want = vec![(steps[1].step_id.clone(), 1), (steps[2].step_id.clone(), 1)];
    want.sort();
    assert_eq!(
        ids, want,
        "conflicted steps run again under the same attempt"
    );
    let (_, version) = s.kv_get("default/t", "n").await.unwrap().unwrap();
    let mut retried = success(&again[0], t.now());
    retried.kv_reads = vec![key(version), prefix(1, version)];
    assert_eq!(
        s.complete_steps(&[retried]).await.unwrap(),
        [CommitOutcome::Committed]
    );
}

/// `list_runs` filters by status, task, creation time and every meta pair, newest first.
pub async fn list_runs_filters<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let a = t.run("t/f", &[("env", "prod"), ("team", "a")]);
    t.advance(Duration::from_secs(1));
    let b = t.run("t/g", &[("env", "prod")]);
    t.advance(Duration::from_secs(1));
    let c = t.run("t/f", &[("env", "dev"), ("team", "a")]);
    s.submit_runs(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    let ids = |runs: Vec<crate::RunSummary>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let filter = |f: RunFilter| RunFilter { limit: 100, ..f };
    let all = ids(s.list_runs(&filter(RunFilter::default())).await.unwrap());
    assert_eq!(all, [c.id.clone(), b.id.clone(), a.id.clone()]);
    let meta = |pairs: &[(&str, &str)]| RunFilter {
        meta: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..filter(RunFilter::default())
    };
    assert_eq!(
        ids(s.list_runs(&meta(&[("env", "prod")])).await.unwrap()),
        [b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        ids(s
            .list_runs(&meta(&[("env", "prod"), ("team", "a")]))
            .await
            .unwrap()),
        [a.id.as_str()]
    );
    let task = filter(RunFilter {
        task: Some("t/f".into()),
        ..Default::default()
    });
    assert_eq!(
        ids(s.list_runs(&task).await.unwrap()),
        [c.id.clone(), a.id.clone()]
    );
    let since = filter(RunFilter {
        since: Some(b.created_at),
        ..Default::default()
    });
    assert_eq!(
        ids(s.list_runs(&since).await.unwrap()),
        [c.id.clone(), b.id.clone()]
    );
    let limited = RunFilter {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(ids(s.list_runs(&limited).await.unwrap()), [c.id.as_str()]);
    // Finish `a`: the status filter sees it.
    let steps = t.claim("w1", 3).await;
    let of_a = steps.iter().find(|x| x.run_id == a.id).unwrap();
    s.complete_steps(&[success(of_a, t.now())]).await.unwrap();
    let done = filter(RunFilter {
        status: Some(Status::Succeeded),
        ..Default::default()
    });
    assert_eq!(ids(s.list_runs(&done).await.unwrap()), [a.id.as_str()]);
    let running = filter(RunFilter {
        status: Some(Status::Running),
        ..Default::default()
    });
    assert_eq!(
        ids(s.list_runs(&running).await.unwrap()),
        [c.id.clone(), b.id.clone()]
    );
}

/// A run reads `queued` until one of its steps is claimed, and `running` from then until it
/// ends, through every read: its status, its result, its view and the list filters. A reclaim
/// keeps it running.
pub async fn a_run_is_running_from_its_first_claim_until_it_ends<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let id = t.submit(1).await.remove(0).id;
    shows::<B>(&t, &id, Status::Queued).await;
    let lost = s
        .claim_steps("w1", 1, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0);
    shows::<B>(&t, &id, Status::Running).await;
    t.advance(Duration::from_secs(11));
    let again = t.claim("w2", 1).await.remove(0);
    assert_eq!(
        (again.step_id.as_str(), again.attempt),
        (lost.step_id.as_str(), 2)
    );
    shows::<B>(&t, &id, Status::Running).await;
    s.complete_steps(&[success(&again, t.now())]).await.unwrap();
    shows::<B>(&t, &id, Status::Succeeded).await;
}

/// Asserts that every read of run `id` shows it with `status`, and that listing by each status
/// finds it under that one only.
async fn shows<B: Backend>(t: &Ctx<B>, id: &str, status: Status) {
    let s = t.store();
    assert_eq!(s.run_status(id).await.unwrap(), Some(status));
    assert_eq!(s.run_result(id).await.unwrap().unwrap().status, status);
    let view = s
        .run_view(id, &StepQuery::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, status);
    for listed in Status::ALL {
        let filter = RunFilter {
            status: Some(listed),
            limit: 100,
            ..Default::default()
        };
        let found = s.list_runs(&filter).await.unwrap();
        let expected = if listed == status {
            vec![status]
        } else {
            vec![]
        };
        assert_eq!(
            found.iter().map(|r| r.status).collect::<Vec<_>>(),
            expected,
            "runs listed as {listed} when the run is {status}"
        );
    }
}

/// `run_view` returns the page of steps asked for (root first) and counts every step by status.
pub async fn run_view_pagination_and_counts<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let run = t.run("wf/main", &[]);
    s.submit_runs(std::slice::from_ref(&run)).await.unwrap();
    let parent = t.claim("w1", 1).await.remove(0);
    let children: Vec<_> = (0..4).map(|i| t.child(i)).collect();
    let wait = crate::Wait::Children(super::ids(&children));
    let start = super::suspend(&parent, t.now(), children, wait);
    s.complete_steps(&[start]).await.unwrap();
    let kids = t.claim("w1", 1).await;
    s.complete_steps(&[success(&kids[0], t.now())])
        .await
        .unwrap();
    let page = StepQuery {
        status: None,
        limit: 2,
    };
    let view = s.run_view(&run.id, &page).await.unwrap().unwrap();
    assert_eq!(view.steps.len(), 2);
    assert_eq!(
        view.steps[0].id, parent.step_id,
        "the root step comes first"
    );
    let mut counts = view.step_counts.clone();
    counts.sort_by_key(|(status, _)| status.as_str());
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 5);
    let count = |st: Status| counts.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
    assert_eq!((count(Status::Succeeded), count(Status::Queued)), (1, 3));
    let done = StepQuery {
        status: Some(Status::Succeeded),
        limit: 0,
    };
    let view = s.run_view(&run.id, &done).await.unwrap().unwrap();
    assert_eq!(
        view.steps.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&kids[0].step_id]
    );
    let whole = s.run(&run.id).await.unwrap().unwrap();
    assert_eq!(whole.steps.len(), 5);
    assert!(s.run_view("no-such-run", &page).await.unwrap().is_none());
}
