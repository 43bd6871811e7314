//! Contracts of worker registration, heartbeats and states, the leases of dead and stopped
//! workers, and the worker and version every attempt records.

use std::time::Duration;

use super::{kind, success, Backend, Ctx, HOUR};
use crate::{CommitOutcome, Policy, Status, Store, WorkerInfo, WorkerState, WorkerView};

/// A worker registration heartbeating every `heartbeat_ms`, started at `started_at`.
pub fn worker(id: &str, version: &str, heartbeat_ms: u64, started_at: i64) -> WorkerInfo {
    WorkerInfo {
        id: id.to_string(),
        host: "test-host".to_string(),
        pid: 4242,
        version: version.to_string(),
        concurrency: 8,
        heartbeat_ms,
        started_at,
    }
}

/// The worker `id` of `listed`; panics when it is not there.
fn find<'a>(listed: &'a [WorkerView], id: &str) -> &'a WorkerView {
    listed
        .iter()
        .find(|w| w.info.id == id)
        .unwrap_or_else(|| panic!("worker {id} is not listed: {listed:?}"))
}

/// The state of each worker of `ids`, as listed now.
async fn states<S: Store>(store: &S, ids: &[&str]) -> Vec<WorkerState> {
    let listed = store.workers(HOUR).await.unwrap();
    ids.iter().map(|id| find(&listed, id).state).collect()
}

/// Workers are listed with what they registered, their state by multiples of their own
/// heartbeat interval (live, stale, dead; stopped after a clean stop), the steps they hold and
/// the attempts they reported the end of recently; a worker seen long ago is listed only while
/// it holds a step.
pub async fn workers_are_visible<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let started = t.now();
    let one = worker("w1", "1.2.3", 1000, started);
    s.register_worker(&one).await.unwrap();
    t.advance(Duration::from_millis(1));
    s.register_worker(&worker("w2", "1.2.4", 1000, t.now()))
        .await
        .unwrap();
    t.submit(2).await;
    let held = t.claim("w1", 2).await;
    t.advance(Duration::from_millis(500));
    let done_at = t.now();
    assert_eq!(
        s.complete_steps(&[success(&held[0], done_at)])
            .await
            .unwrap(),
        [CommitOutcome::Committed]
    );

    let listed = s.workers(HOUR).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|w| w.info.id.as_str()).collect();
    assert_eq!(ids, ["w2", "w1"], "newest start first");
    let w1 = find(&listed, "w1");
    assert_eq!(w1.info, one);
    assert!(w1.schema_version > 0, "{w1:?}");
    assert_eq!(
        (w1.state, w1.last_seen_at, w1.stopped_at),
        (WorkerState::Live, started, None)
    );
    let holding: Vec<(&str, u32)> = w1
        .holding
        .iter()
        .map(|h| (h.step_id.as_str(), h.attempt))
        .collect();
    assert_eq!(holding, [(held[1].step_id.as_str(), 1)]);
    assert_eq!(w1.holding[0].run_id, held[1].run_id);
    assert_eq!(w1.holding[0].task, "t/f");
    assert_eq!(
        w1.holding[0].lease_expires_at,
        Some(held[1].assigned_at + HOUR.as_micros() as i64)
    );
    assert_eq!(
        (w1.completed_recently, w1.last_completed_at),
        (1, Some(done_at))
    );
    let w2 = find(&listed, "w2");
    assert_eq!(w2.info.version, "1.2.4");
    assert!(w2.holding.is_empty());
    assert_eq!((w2.completed_recently, w2.last_completed_at), (0, None));

    // w1 heartbeats, w2 falls silent: stale after three intervals, dead after six.
    t.advance(Duration::from_millis(2500));
    s.heartbeat_worker("w1").await.unwrap();
    assert_eq!(
        find(&s.workers(HOUR).await.unwrap(), "w1").last_seen_at,
        t.now()
    );
    assert_eq!(
        states(s, &["w1", "w2"]).await,
        [WorkerState::Live, WorkerState::Live]
    );
    t.advance(Duration::from_millis(1000));
    assert_eq!(
        states(s, &["w1", "w2"]).await,
        [WorkerState::Live, WorkerState::Stale]
    );
    t.advance(Duration::from_millis(3000));
    assert_eq!(
        states(s, &["w1", "w2"]).await,
        [WorkerState::Stale, WorkerState::Dead]
    );
    // A heartbeat brings a worker back; a clean stop is `stopped`, whatever its silence.
    s.heartbeat_worker("w2").await.unwrap();
    s.stop_worker("w1").await.unwrap();
    let listed = s.workers(HOUR).await.unwrap();
    assert_eq!(find(&listed, "w2").state, WorkerState::Live);
    let w1 = find(&listed, "w1");
    assert_eq!(
        (w1.state, w1.stopped_at, w1.last_seen_at),
        (WorkerState::Stopped, Some(t.now()), t.now())
    );
    // Registering again (a restarted process reusing its id) runs again.
    s.register_worker(&one).await.unwrap();
    assert_eq!(states(s, &["w1"]).await, [WorkerState::Live]);

    // Completions age out of the recent window; the last one stays known.
    t.advance(Duration::from_secs(61));
    let listed = s.workers(HOUR).await.unwrap();
    let w1 = find(&listed, "w1");
    assert_eq!(
        (w1.completed_recently, w1.last_completed_at),
        (0, Some(done_at))
    );
    assert_eq!(w1.state, WorkerState::Dead);
    // Seen within 10 s: nobody; but w1 still holds a step, so it is listed.
    let recent = s.workers(Duration::from_secs(10)).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|w| w.info.id.as_str()).collect();
    assert_eq!(ids, ["w1"]);
    s.heartbeat_worker("w2").await.unwrap();
    let recent = s.workers(Duration::from_secs(10)).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|w| w.info.id.as_str()).collect();
    assert_eq!(ids, ["w2", "w1"]);
}

/// The leases of a dead worker (silent for more than six of its heartbeat intervals) and of a
/// stopped one end early: their steps are claimed again at once under a new attempt, the lost
/// attempt fails with `lease_expired`, and the dead worker's late result is fenced off. A live
/// or merely stale worker, and a worker that never registered, keep their leases.
pub async fn dead_workers_leases_are_reclaimed_early<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    for id in ["alive", "silent", "leaving"] {
        s.register_worker(&worker(id, "1.0.0", 1000, t.now()))
            .await
            .unwrap();
    }
    s.register_worker(&worker("rescuer", "2.0.0", 60_000, t.now()))
        .await
        .unwrap();
    t.submit(4).await;
    let kept = t.claim("alive", 1).await.remove(0);
    let lost = t.claim("silent", 1).await.remove(0);
    let left = t.claim("leaving", 1).await.remove(0);
    let anonymous = t.claim("unregistered", 1).await.remove(0);
    s.stop_worker("leaving").await.unwrap();

    // Six intervals of silence is stale, not dead: only the stopped worker's step is claimed.
    t.advance(Duration::from_secs(6));
    s.heartbeat_worker("alive").await.unwrap();
    let claimed = t.claim("rescuer", 4).await;
    let got: Vec<(&str, u32)> = claimed
        .iter()
        .map(|c| (c.step_id.as_str(), c.attempt))
        .collect();
    assert_eq!(got, [(left.step_id.as_str(), 2)]);

    // One more second: `silent` is dead, and its step is claimed long before its hour's lease.
    t.advance(Duration::from_secs(1));
    let claimed = t.claim("rescuer", 4).await;
    let got: Vec<(&str, u32)> = claimed
        .iter()
        .map(|c| (c.step_id.as_str(), c.attempt))
        .collect();
    assert_eq!(got, [(lost.step_id.as_str(), 2)]);
    assert_eq!(claimed[0].assigned_at, t.now());
    let detail = s.run(&lost.run_id).await.unwrap().unwrap();
    let step = &detail.steps[0];
    assert_eq!(
        (step.worker_id.as_deref(), step.lost_leases),
        (Some("rescuer"), 1)
    );
    let first = &step.attempts[0];
    assert_eq!(
        (first.status, first.worker_id.as_deref()),
        (Status::Failed, Some("silent"))
    );
    assert_eq!(kind(&first.error), Some("lease_expired"));
    assert_eq!(
        step.attempts[1].hypergraph_version.as_deref(),
        Some("2.0.0")
    );
    // The dead worker's result, if it ever comes, is discarded.
    let mut late = success(&lost, t.now());
    late.worker_id = "silent".to_string();
    assert_eq!(
        s.complete_steps(&[late]).await.unwrap(),
        [CommitOutcome::Fenced]
    );

    // The live worker and the unregistered one keep their steps, and complete them.
    assert!(t.claim("rescuer", 4).await.is_empty());
    let mut done = success(&kept, t.now());
    done.worker_id = "alive".to_string();
    let mut other = success(&anonymous, t.now());
    other.worker_id = "unregistered".to_string();
    assert_eq!(
        s.complete_steps(&[done, other]).await.unwrap(),
        [CommitOutcome::Committed, CommitOutcome::Committed]
    );
}

/// Every attempt records the worker that ran it and the hypergraph version that worker
/// registered; an unregistered worker's attempts have no version.
pub async fn attempts_record_worker_and_version<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    s.register_worker(&worker("w1", "9.8.7-test", 1000, t.now()))
        .await
        .unwrap();
    let runs = t.submit(2).await;
    let mine = t.claim("w1", 1).await.remove(0);
    let theirs = t.claim("unregistered", 1).await.remove(0);
    let mut other = success(&theirs, t.now());
    other.worker_id = "unregistered".to_string();
    s.complete_steps(&[success(&mine, t.now()), other])
        .await
        .unwrap();
    for (run, worker, version) in [
        (&runs[0], "w1", Some("9.8.7-test")),
        (&runs[1], "unregistered", None),
    ] {
        let detail = s.run(&run.id).await.unwrap().unwrap();
        let attempt = &detail.steps[0].attempts[0];
        assert_eq!(
            (
                attempt.worker_id.as_deref(),
                attempt.hypergraph_version.as_deref()
            ),
            (Some(worker), version),
            "{attempt:?}"
        );
    }
}
