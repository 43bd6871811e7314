//! Contracts of workflows: children and joins, timers, events, cancellation and resume.

use std::collections::HashMap;
use std::time::Duration;

use hypergraph_core::journal::{Entry, Journal, WorkflowEntry};
use hypergraph_core::workflow::ChildResult;

use super::{failure, ids, kind, success, suspend, Backend, Ctx};
use crate::{ClaimedStep, CommitOutcome, JournalRecord, NewChild, Policy, Status, Store, Wait};

/// Submits a run of `wf/main` and claims its root step.
async fn workflow<B: Backend>(t: &Ctx<B>) -> ClaimedStep {
    let run = t.run("wf/main", &[]);
    t.store().submit_runs(&[run]).await.unwrap();
    t.claim("w1", 1).await.remove(0)
}

/// Claims every claimable step, sorted by step id.
async fn claim_all<B: Backend>(t: &Ctx<B>) -> Vec<ClaimedStep> {
    let mut steps = t.claim("w1", 100).await;
    steps.sort_by(|a, b| a.step_id.cmp(&b.step_id));
    steps
}

/// A workflow waiting for all its children is claimable again (same attempt, its journal to
/// resume from) only when the last one finished, failed ones included.
pub async fn join_all_children_wakes_parent<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..2).map(|i| t.child(i)).collect();
    let mut start = suspend(
        &parent,
        t.now(),
        children.clone(),
        Wait::Children(ids(&children)),
    );
    start.journal = super::journal(2);
    assert_eq!(
        s.complete_steps(&[start]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    let kids = claim_all(&t).await;
    assert_eq!(
        kids.iter().map(|k| k.step_id.clone()).collect::<Vec<_>>(),
        ids(&children)
    );
    let outcomes = s.step_outcomes(&ids(&children)).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == Status::Running));
    s.complete_steps(&[failure(&kids[0], t.now())])
        .await
        .unwrap();
    assert!(
        t.claim("w1", 10).await.is_empty(),
        "one child is still running"
    );
    s.complete_steps(&[success(&kids[1], t.now())])
        .await
        .unwrap();
    let woken = t.claim("w1", 10).await;
    assert_eq!(woken.len(), 1);
    assert_eq!(
        (woken[0].step_id.as_str(), woken[0].attempt),
        (parent.step_id.as_str(), 1)
    );
    assert_eq!(woken[0].resume, super::journal(2));
    let outcomes = s.step_outcomes(&ids(&children)).await.unwrap();
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Status::Failed, Status::Succeeded]);
    // A failed child does not end its run; the workflow's own completion does.
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Running)
    );
    s.complete_steps(&[success(&woken[0], t.now())])
        .await
        .unwrap();
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Succeeded)
    );
}

/// A workflow waiting for any of its children wakes when the first one finishes.
pub async fn join_any_child_wakes_parent<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..3).map(|i| t.child(i)).collect();
    let start = suspend(
        &parent,
        t.now(),
        children.clone(),
        Wait::AnyChild(ids(&children)),
    );
    s.complete_steps(&[start]).await.unwrap();
    let kids = claim_all(&t).await;
    assert_eq!(kids.len(), 3);
    s.complete_steps(&[success(&kids[1], t.now())])
        .await
        .unwrap();
    let woken = t.claim("w1", 10).await;
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].step_id, parent.step_id);
}

/// A workflow that started two children and joined the first, claimed again once that one
/// succeeded; with its children and their claims (the second is still running).
async fn first_child_joined<B: Backend>(
    t: &Ctx<B>,
) -> (ClaimedStep, Vec<NewChild>, Vec<ClaimedStep>) {
    let s = t.store();
    let parent = workflow(t).await;
    let children: Vec<NewChild> = (0..2).map(|i| t.child(i)).collect();
    let only_first = Wait::Children(vec![children[0].step_id.clone()]);
    s.complete_steps(&[suspend(&parent, t.now(), children.clone(), only_first)])
        .await
        .unwrap();
    let kids = claim_all(t).await;
    s.complete_steps(&[success(&kids[0], t.now())])
        .await
        .unwrap();
    let parent = t.claim("w1", 1).await.remove(0);
    (parent, children, kids)
}

/// A wait committed after what it waits for happened leaves the step claimable at once.
pub async fn wait_already_satisfied<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let (parent, children, kids) = first_child_joined(&t).await;
    // Both children finish before the workflow's next wait is committed.
    s.complete_steps(&[success(&kids[1], t.now())])
        .await
        .unwrap();
    let all = Wait::Children(ids(&children));
    s.complete_steps(&[suspend(&parent, t.now(), Vec::new(), all)])
        .await
        .unwrap();
    let again = t.claim("w1", 1).await;
    assert_eq!(again.len(), 1, "the wait was already over");
    assert_eq!(again[0].step_id, parent.step_id);
    let any = Wait::AnyChild(ids(&children));
    s.complete_steps(&[suspend(&again[0], t.now(), Vec::new(), any)])
        .await
        .unwrap();
    assert_eq!(
        t.claim("w1", 1).await.len(),
        1,
        "any finished child satisfies join-any"
    );
}

/// A join-any committed when one of the children it names has finished and another has not is
/// over at once.
pub async fn join_any_already_satisfied_by_one_child<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let (parent, children, _) = first_child_joined(&t).await;
    // The second child is still running.
    let any = Wait::AnyChild(ids(&children));
    s.complete_steps(&[suspend(&parent, t.now(), Vec::new(), any)])
        .await
        .unwrap();
    let again = t.claim("w1", 1).await;
    assert_eq!(
        again.iter().map(|c| c.step_id.as_str()).collect::<Vec<_>>(),
        [parent.step_id.as_str()],
        "one finished child satisfies join-any"
    );
}

/// A join naming a finished child, an unfinished one started earlier and one the suspension
/// itself starts waits for each unfinished one: the workflow is claimable again only once both
/// have finished, whichever finishes first.
pub async fn join_of_earlier_and_new_children<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let (parent, children, kids) = first_child_joined(&t).await;
    let new = t.child(2);
    let all = Wait::Children(vec![
        children[0].step_id.clone(),
        children[1].step_id.clone(),
        new.step_id.clone(),
    ]);
    s.complete_steps(&[suspend(&parent, t.now(), vec![new.clone()], all)])
        .await
        .unwrap();
    let started = t.claim("w1", 10).await;
    assert_eq!(
        started
            .iter()
            .map(|c| c.step_id.as_str())
            .collect::<Vec<_>>(),
        [new.step_id.as_str()],
        "only the new child is claimable: the join waits"
    );
    s.complete_steps(&[success(&started[0], t.now())])
        .await
        .unwrap();
    assert!(
        t.claim("w1", 10).await.is_empty(),
        "the earlier child is still running"
    );
    s.complete_steps(&[success(&kids[1], t.now())])
        .await
        .unwrap();
    let woken = t.claim("w1", 10).await;
    assert_eq!(
        woken.iter().map(|c| c.step_id.as_str()).collect::<Vec<_>>(),
        [parent.step_id.as_str()]
    );
}

/// A child nobody started before its schedule-to-start deadline fails, and counts as finished
/// for the workflow waiting for it, which wakes; the run goes on.
pub async fn late_child_wakes_parent<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let mut child = t.child(0);
    child.start_deadline = Some(t.now() + 1_000_000);
    let wait = Wait::Children(vec![child.step_id.clone()]);
    s.complete_steps(&[suspend(&parent, t.now(), vec![child.clone()], wait)])
        .await
        .unwrap();
    t.advance(Duration::from_secs(2));
    let woken = t.claim("w1", 10).await;
    assert_eq!(
        woken.iter().map(|c| c.step_id.as_str()).collect::<Vec<_>>(),
        [parent.step_id.as_str()],
        "the late child is not claimed; its workflow wakes"
    );
    let outcomes = s.step_outcomes(&[child.step_id.clone()]).await.unwrap();
    assert_eq!(
        (outcomes[0].status, kind(&outcomes[0].error)),
        (Status::Failed, Some("schedule_to_start_timeout"))
    );
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Running)
    );
}

/// A workflow sleeping until a time is claimable once the clock passes it, not before.
pub async fn timers<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let until = t.now() + 10_000_000;
    s.complete_steps(&[suspend(&parent, t.now(), Vec::new(), Wait::Timer(until))])
        .await
        .unwrap();
    assert!(t.claim("w1", 1).await.is_empty());
    t.advance(Duration::from_millis(9_990));
    assert!(t.claim("w1", 1).await.is_empty(), "the timer has not fired");
    t.advance(Duration::from_millis(20));
    let woken = t.claim("w1", 1).await;
    assert_eq!((woken.len(), woken[0].attempt), (1, 1));
}

/// Sending an event wakes every step waiting for its name, and only those.
pub async fn events<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let after = s.last_event_seq().await.unwrap();
    let a = workflow(&t).await;
    let b = workflow(&t).await;
    let wait = |name: &str| Wait::Event {
        name: name.into(),
        after,
        deadline: None,
    };
    s.complete_steps(&[
        suspend(&a, t.now(), Vec::new(), wait("go")),
        suspend(&b, t.now(), Vec::new(), wait("other")),
    ])
    .await
    .unwrap();
    assert!(t.claim("w1", 2).await.is_empty());
    let (seq, woken) = s.send_event("go", r#"{"x":1}"#).await.unwrap();
    assert!(seq > after);
    assert_eq!(woken, 1);
    assert_eq!(s.last_event_seq().await.unwrap(), seq);
    assert_eq!(
        s.next_event("go", after).await.unwrap(),
        Some((seq, r#"{"x":1}"#.into()))
    );
    assert_eq!(s.next_event("go", seq).await.unwrap(), None);
    let claimed = t.claim("w1", 2).await;
    assert_eq!(
        claimed.iter().map(|c| &c.step_id).collect::<Vec<_>>(),
        [&a.step_id]
    );
    assert!(s.send_event("bad", "not json").await.is_err());
}

/// A wait for an event already sent is over at once; an event wait with a deadline ends when
/// the clock passes it.
pub async fn event_wait_already_satisfied_and_deadline<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let a = workflow(&t).await;
    let (seq, woken) = s.send_event("early", "1").await.unwrap();
    assert_eq!(woken, 0);
    let early = Wait::Event {
        name: "early".into(),
        after: seq - 1,
        deadline: None,
    };
    s.complete_steps(&[suspend(&a, t.now(), Vec::new(), early)])
        .await
        .unwrap();
    let a = t.claim("w1", 1).await.remove(0);
    let deadline = t.now() + 5_000_000;
    let timed = Wait::Event {
        name: "late".into(),
        after: seq,
        deadline: Some(deadline),
    };
    s.complete_steps(&[suspend(&a, t.now(), Vec::new(), timed)])
        .await
        .unwrap();
    assert!(t.claim("w1", 1).await.is_empty());
    t.advance(Duration::from_secs(6));
    assert_eq!(
        t.claim("w1", 1).await.len(),
        1,
        "the wait's deadline passed"
    );
}

/// Cancelling a run cancels every unfinished step of it, fences running attempts (their
/// completions get `Cancelled`) and is idempotent.
pub async fn cancel_cascade<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..3).map(|i| t.child(i)).collect();
    s.complete_steps(&[suspend(
        &parent,
        t.now(),
        children.clone(),
        Wait::Children(ids(&children)),
    )])
    .await
    .unwrap();
    let kids = t.claim("w1", 1).await;
    let done = t.claim("w1", 1).await.remove(0);
    s.complete_steps(&[success(&done, t.now())]).await.unwrap();
    t.advance(Duration::from_secs(1));
    let cancelled = s.cancel_run(&parent.run_id).await.unwrap().unwrap();
    assert!(cancelled.changed);
    assert_eq!(
        cancelled.steps, 3,
        "the workflow, the running child and the queued child"
    );
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Cancelled)
    );
    let running = [
        (kids[0].step_id.clone(), kids[0].attempt),
        (done.step_id.clone(), 1),
    ];
    assert_eq!(s.cancelled_steps(&running).await.unwrap(), running[..1]);
    let late = success(&kids[0], t.now());
    assert_eq!(
        s.complete_steps(&[late]).await.unwrap(),
        [CommitOutcome::Cancelled]
    );
    assert!(t.claim("w1", 10).await.is_empty());
    let outcomes = s.step_outcomes(&ids(&children)).await.unwrap();
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Cancelled).count(),
        2
    );
    assert!(
        statuses.contains(&Status::Succeeded),
        "a finished child stays finished"
    );
    let detail = s.run(&parent.run_id).await.unwrap().unwrap();
    assert_eq!(detail.completed_at, Some(t.now()));
    let again = s.cancel_run(&parent.run_id).await.unwrap().unwrap();
    assert!(!again.changed);
    assert!(s.cancel_run("no-such-run").await.unwrap().is_none());
}

/// A workflow that ends takes the children it did not join (and theirs) with it.
pub async fn workflow_end_cancels_unjoined_children<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..2).map(|i| t.child(i)).collect();
    let first = Wait::Children(vec![children[0].step_id.clone()]);
    s.complete_steps(&[suspend(&parent, t.now(), children.clone(), first)])
        .await
        .unwrap();
    let kids = claim_all(&t).await;
    // The second child starts a grandchild and waits for it.
    let grandchild = t.child(0);
    let wait = Wait::Children(vec![grandchild.step_id.clone()]);
    s.complete_steps(&[
        success(&kids[0], t.now()),
        suspend(&kids[1], t.now(), vec![grandchild.clone()], wait),
    ])
    .await
    .unwrap();
    // The workflow wakes (its child finished) and the grandchild starts running.
    let woken = claim_all(&t).await;
    assert_eq!(woken.len(), 2);
    let parent = woken
        .iter()
        .find(|c| c.step_id != grandchild.step_id)
        .unwrap();
    let running = woken
        .iter()
        .find(|c| c.step_id == grandchild.step_id)
        .unwrap();
    s.complete_steps(&[success(parent, t.now())]).await.unwrap();
    let owned = [(running.step_id.clone(), running.attempt)];
    assert_eq!(
        s.cancelled_steps(&owned).await.unwrap(),
        owned,
        "running descendants are fenced"
    );
    let mut all = ids(&children);
    all.push(grandchild.step_id.clone());
    let outcomes = s.step_outcomes(&all).await.unwrap();
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [Status::Succeeded, Status::Cancelled, Status::Cancelled]
    );
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Succeeded)
    );
    assert!(t.claim("w1", 10).await.is_empty());
}

/// A workflow that starts children in its only activation and ends without joining them takes
/// them with it (it had no earlier activation).
pub async fn workflow_ending_in_its_first_activation_cancels_the_children_it_started<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..2).map(|i| t.child(i)).collect();
    let mut done = success(&parent, t.now());
    done.children = children.clone();
    let outcomes = s.complete_steps(&[done]).await.unwrap();
    assert_eq!(outcomes, [CommitOutcome::Committed]);
    let outcomes = s.step_outcomes(&ids(&children)).await.unwrap();
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Status::Cancelled, Status::Cancelled]);
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Succeeded)
    );
    assert!(t.claim("w1", 10).await.is_empty());
}

/// Fails the workflow `parent` (a root step) with `journal` (the entries its activation added),
/// checks that its run failed, resumes the run and returns how many steps it re-queued.
async fn fail_and_resume<B: Backend>(
    t: &Ctx<B>,
    parent: &ClaimedStep,
    journal: Vec<JournalRecord>,
) -> Option<u64> {
    let s = t.store();
    let mut failed = failure(parent, t.now());
    failed.journal = journal;
    s.complete_steps(&[failed]).await.unwrap();
    assert_eq!(
        s.run_status(&parent.run_id).await.unwrap(),
        Some(Status::Failed)
    );
    s.resume_run(&parent.run_id, &HashMap::new()).await.unwrap()
}

/// Resuming a failed run re-queues its failed steps under a new attempt and keeps the rest;
/// only failed or cancelled runs resume.
pub async fn resume_requeues_failed_steps<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    t.submit(1).await;
    let step = t.claim("w1", 1).await.remove(0);
    s.complete_steps(&[failure(&step, t.now())]).await.unwrap();
    assert_eq!(
        s.resume_run(&step.run_id, &HashMap::new()).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.run_status(&step.run_id).await.unwrap(),
        Some(Status::Queued)
    );
    let again = t.claim("w1", 1).await.remove(0);
    assert_eq!(
        (again.step_id.as_str(), again.attempt),
        (step.step_id.as_str(), 2)
    );
    s.complete_steps(&[success(&again, t.now())]).await.unwrap();
    let result = s.run_result(&step.run_id).await.unwrap().unwrap();
    assert_eq!((result.status, result.error), (Status::Succeeded, None));
    assert!(s.resume_run(&step.run_id, &HashMap::new()).await.is_err());
    assert_eq!(
        s.resume_run("no-such-run", &HashMap::new()).await.unwrap(),
        None
    );
}

/// Resuming a failed workflow re-queues it in a new attempt whose journal is cut before the
/// first join that saw a failed child; that child is re-queued, the succeeded one kept.
pub async fn resume_cuts_the_journal<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let children: Vec<NewChild> = (0..2).map(|i| t.child(i)).collect();
    let starts: Vec<Entry> = children
        .iter()
        .map(|c| {
            Entry::from(WorkflowEntry::Start {
                task: c.task.clone(),
                input: c.input.to_string(),
                child: Some(c.index),
                step_id: Some(c.step_id.clone()),
                error: None,
            })
        })
        .collect();
    let mut start = suspend(
        &parent,
        t.now(),
        children.clone(),
        Wait::Children(ids(&children)),
    );
    start.journal = Journal::to_records(&starts);
    s.complete_steps(&[start]).await.unwrap();
    let kids = claim_all(&t).await;
    s.complete_steps(&[success(&kids[0], t.now()), failure(&kids[1], t.now())])
        .await
        .unwrap();
    let parent = t.claim("w1", 1).await.remove(0);
    let mut entries = starts.clone();
    entries.push(Entry::from(WorkflowEntry::Join {
        children: vec![0, 1],
        results: vec![
            ChildResult::Ok("{}".into()),
            ChildResult::Err {
                kind: "trap".into(),
                message: "boom".into(),
                value: None,
            },
        ],
    }));
    // An activation commits only the entries it added.
    let added = Journal::to_records(&entries)[starts.len()..].to_vec();
    assert_eq!(fail_and_resume(&t, &parent, added).await, Some(2));
    let mut resumed = claim_all(&t).await;
    resumed.sort_by_key(|c| c.step_id != parent.step_id);
    assert_eq!(resumed.len(), 2, "the workflow and its failed child");
    assert_eq!(
        (resumed[0].step_id.as_str(), resumed[0].attempt),
        (parent.step_id.as_str(), 2)
    );
    assert_eq!(
        resumed[0].resume,
        Journal::to_records(&starts),
        "cut before the failed join"
    );
    assert_eq!(
        (resumed[1].step_id.as_str(), resumed[1].attempt),
        (kids[1].step_id.as_str(), 2)
    );
    let outcomes = s.step_outcomes(&[kids[0].step_id.clone()]).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Succeeded);
    assert_eq!(kind(&outcomes[0].error), None);
}

/// A workflow that joined a failed child, went on to start another and failed: resuming it cuts
/// its journal before that join, so the child it started after the cut loses its position and
/// is superseded (not re-queued), with what it started.
pub async fn resume_supersedes_children_after_the_cut<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    let parent = workflow(&t).await;
    let (first, second) = (t.child(0), t.child(1));
    let start = |c: &NewChild| {
        Entry::from(WorkflowEntry::Start {
            task: c.task.clone(),
            input: c.input.to_string(),
            child: Some(c.index),
            step_id: Some(c.step_id.clone()),
            error: None,
        })
    };
    let join = |index: u32| {
        Entry::from(WorkflowEntry::Join {
            children: vec![index],
            results: vec![ChildResult::Err {
                kind: "trap".into(),
                message: "boom".into(),
                value: None,
            }],
        })
    };
    let entries = vec![start(&first), join(0), start(&second), join(1)];
    let records = Journal::to_records(&entries);
    let mut suspended = suspend(
        &parent,
        t.now(),
        vec![first.clone()],
        Wait::Children(vec![first.step_id.clone()]),
    );
    suspended.journal = records[..1].to_vec();
    s.complete_steps(&[suspended]).await.unwrap();
    let kid = t.claim("w1", 1).await.remove(0);
    s.complete_steps(&[failure(&kid, t.now())]).await.unwrap();
    let parent = t.claim("w1", 1).await.remove(0);
    // The workflow handles the failure and starts the second child.
    let mut suspended = suspend(
        &parent,
        t.now(),
        vec![second.clone()],
        Wait::Children(vec![second.step_id.clone()]),
    );
    suspended.journal = records[1..3].to_vec();
    s.complete_steps(&[suspended]).await.unwrap();
    let kid = t.claim("w1", 1).await.remove(0);
    s.complete_steps(&[failure(&kid, t.now())]).await.unwrap();
    let parent = t.claim("w1", 1).await.remove(0);
    assert_eq!(
        fail_and_resume(&t, &parent, records[3..].to_vec()).await,
        Some(2),
        "the workflow and its first child"
    );
    let mut resumed = claim_all(&t).await;
    resumed.sort_by_key(|c| c.step_id != parent.step_id);
    let claimed: Vec<&str> = resumed.iter().map(|c| c.step_id.as_str()).collect();
    assert_eq!(claimed, [parent.step_id.as_str(), first.step_id.as_str()]);
    assert_eq!(
        resumed[0].resume,
        records[..1].to_vec(),
        "cut before the first join"
    );
    let detail = s.run(&parent.run_id).await.unwrap().unwrap();
    let superseded = detail
        .steps
        .iter()
        .find(|d| d.id == second.step_id)
        .unwrap();
    assert_eq!(
        (superseded.status, superseded.child_index),
        (Status::Failed, None)
    );
}

/// Resuming with pins moves the run and its re-queued steps to the pinned version of their
/// deployment.
pub async fn resume_pins_versions<B: Backend>() {
    let t = Ctx::<B>::new(Policy::default()).await;
    let s = t.store();
    t.submit(1).await;
    let step = t.claim("w1", 1).await.remove(0);
    s.complete_steps(&[failure(&step, t.now())]).await.unwrap();
    let retried = Policy {
        max_lost_leases: Some(7),
        ..Policy::default()
    };
    let v2 = s
        .deploy(
            "t",
            super::DIGEST,
            crate::DeploymentKind::Component,
            &retried,
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let pins = HashMap::from([("t".to_string(), (2, v2.digest.clone()))]);
    assert_eq!(s.resume_run(&step.run_id, &pins).await.unwrap(), Some(1));
    let again = t.claim("w1", 1).await.remove(0);
    assert_eq!((again.version, again.policy.max_lost_leases), (2, Some(7)));
    let detail = s.run(&step.run_id).await.unwrap().unwrap();
    assert_eq!(detail.version, 2);
}
