//! Workflows with a real Rust guest against a real SQLite file: fan-out and join with a retried
//! child, sequential calls, durable sleep, events, individual child failures, cancellation, and
//! replay of a workflow run.

use hypergraph_testing as common;

use std::time::Duration;

use common::*;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::replay::ReplayWith;
use hypergraph_runtime::retry::RetryPolicy;
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::{Policy, RunDetail, Status};
use hypergraph_runtime::worker::{Worker, WorkerOptions};
use hypergraph_runtime::Hypergraph;
use serde_json::{json, Value};

fn flow() -> Vec<u8> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let options = BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        ..BuildOptions::default()
    };
    std::fs::read(build_guest(&repo().join("tests/guests/flow"), &options).expect("builds"))
        .unwrap()
}

fn retrying() -> Policy {
    Policy {
        retry: RetryPolicy {
            max_attempts: Some(3),
            backoff: Some(Duration::from_millis(20)),
            ..RetryPolicy::default()
        },
        ..Policy::default()
    }
}

async fn setup(dir: &std::path::Path) -> Hypergraph {
    let hg = open(dir).await;
    hg.deploy("flow", &flow(), &retrying()).await.unwrap();
    hg
}

async fn submit(hg: &Hypergraph, task: &str, input: Value) -> String {
    hg.submit(&RunRequest {
        task: task.into(),
        input,
        meta: vec![],
    })
    .await
    .unwrap()
}

/// Runs a worker in the background until run `id` finishes, then returns the run.
async fn finish(hg: &Hypergraph, id: &str) -> RunDetail {
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let result = hg.wait(id, Some(Duration::from_secs(60))).await;
    worker.stop().await.unwrap();
    result.expect("run finished");
    hg.store.run(id).await.unwrap().unwrap()
}

async fn executions(hg: &Hypergraph, key: &str) -> u64 {
    let run = run(hg, "flow/executions", json!(key)).await;
    run.output.unwrap().as_u64().unwrap()
}

#[tokio::test]
async fn fan_out_joins_every_child_and_retries_the_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let id = submit(
        &hg,
        "flow/fan-out",
        json!({"prefix": "f", "n": 20, "sleep-ms": 0, "fail-index": 7}),
    )
    .await;
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    let expected: Vec<Value> = (0..20).map(|i| json!({"ok": i * 2})).collect();
    assert_eq!(run.output, Some(Value::Array(expected)));

    // The root step and its 20 children, in order; child 7 took two attempts.
    assert_eq!(run.steps.len(), 21);
    let root = &run.steps[0];
    assert_eq!(root.parent_id, None);
    for (i, child) in run.steps[1..].iter().enumerate() {
        assert_eq!(child.parent_id.as_deref(), Some(root.id.as_str()));
        assert_eq!(child.child_index, Some(i as u32));
        assert_eq!(child.status, Status::Succeeded);
        assert_eq!(child.attempt, if i == 7 { 2 } else { 1 }, "child {i}");
    }
    assert_eq!(root.attempt, 1, "a workflow resumes within its attempt");
    // Each child's work committed exactly once (the failed attempt's kv write was discarded).
    for i in 0..20 {
        assert_eq!(executions(&hg, &format!("f/{i}")).await, 1, "child {i}");
    }

    // The whole run replays identically: the workflow from its journal, each child from its own.
    let report = hg.replay_run(&id, &ReplayWith::Pinned).await.unwrap();
    assert!(report.identical(), "{report:?}");
}

#[tokio::test]
async fn sequential_calls_and_individual_child_failures() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let chain = submit(&hg, "flow/chain", json!({"prefix": "c", "n": 5})).await;
    let run = finish(&hg, &chain).await;
    assert_eq!(run.output, Some(json!(20)), "{:?}", run.error);
    assert_eq!(run.steps.len(), 6);

    let mixed = submit(&hg, "flow/mixed", json!({"prefix": "m"})).await;
    let run = finish(&hg, &mixed).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    let output = run.output.unwrap();
    let broken = output[0]["err"].as_str().unwrap();
    assert!(broken.contains("broken child 7"), "{broken}");
    assert_eq!(output[1], json!({"ok": 42}));
    // The broken child failed after its attempts (fatal errors are not retried).
    let child = run.steps.iter().find(|s| s.task == "flow/broken").unwrap();
    assert_eq!(child.status, Status::Failed);
    assert_eq!(child.attempt, 1);
}

/// Lingering: within its window, a chain of fast calls never suspends (it goes on in the same
/// instance, its progress checkpointed); with no window every call suspends; a child slower than
/// the window makes the workflow suspend after all. Every way stores the journal exactly once.
#[tokio::test]
async fn lingering_workflows_go_on_in_place_and_suspend_past_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let with = |linger: Duration| WorkerOptions {
        linger,
        ..WorkerOptions::default()
    };
    let journal_is_stored_once = |run: &RunDetail| {
        let root = run.steps.iter().find(|s| s.parent_id.is_none()).unwrap();
        let hg = hg.clone();
        let (id, attempt) = (root.id.clone(), root.attempt);
        async move {
            let seqs: Vec<u32> = hg
                .store
                .journal(&id, attempt)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
            seqs.len()
        }
    };

    for (linger, suspensions) in [(Duration::from_secs(5), 0), (Duration::ZERO, 5)] {
        let id = submit(
            &hg,
            "flow/chain",
            json!({"prefix": format!("l{}", linger.as_secs()), "n": 5}),
        )
        .await;
        let stats = Worker::new(hg.clone(), with(linger))
            .run_until_idle()
            .await
            .unwrap();
        let run = hg.store.run(&id).await.unwrap().unwrap();
        assert_eq!(run.output, Some(json!(20)), "{:?}", run.error);
        assert_eq!(stats.suspended, suspensions, "linger {linger:?}: {stats:?}");
        assert_eq!(stats.executed, 6 + suspensions);
        // 5 starts and 5 joins.
        assert!(journal_is_stored_once(&run).await >= 10);
    }

    let id = submit(
        &hg,
        "flow/fan-out",
        json!({"prefix": "slow", "n": 2, "sleep-ms": 400, "fail-index": null}),
    )
    .await;
    let stats = Worker::new(hg.clone(), with(Duration::from_millis(50)))
        .run_until_idle()
        .await
        .unwrap();
    let run = hg.store.run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!([{"ok": 0}, {"ok": 2}])));
    assert_eq!(stats.suspended, 1, "{stats:?}");
    journal_is_stored_once(&run).await;
}

#[tokio::test]
async fn durable_sleep_and_events_wake_waiting_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let nap = submit(&hg, "flow/nap", json!(300)).await;
    let run = finish(&hg, &nap).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    assert!(run.output.unwrap().as_u64().unwrap() >= 300);

    // A workflow waits for an event; while it waits no worker holds it.
    let waiting = submit(
        &hg,
        "flow/await-event",
        json!({"name": "approved", "timeout-ms": null}),
    )
    .await;
    Worker::new(hg.clone(), WorkerOptions::default())
        .run_until_idle()
        .await
        .unwrap();
    let run = hg.store.run(&waiting).await.unwrap().unwrap();
    assert_eq!(run.steps[0].status, Status::Waiting);
    assert_eq!(run.status, Status::Running);
    let (_, woken) = hg
        .store
        .send_event("approved", r#"{"by": "ada"}"#)
        .await
        .unwrap();
    assert_eq!(woken, 1);
    let run = finish(&hg, &waiting).await;
    assert_eq!(
        run.output,
        Some(json!(r#"{"by":"ada"}"#)),
        "{:?}",
        run.error
    );

    // A timeout returns none.
    let timed = submit(
        &hg,
        "flow/await-event",
        json!({"name": "never", "timeout-ms": 100}),
    )
    .await;
    let run = finish(&hg, &timed).await;
    assert_eq!(run.output, Some(Value::Null), "{:?}", run.error);

    let report = hg.replay_run(&waiting, &ReplayWith::Pinned).await.unwrap();
    assert!(report.identical(), "{report:?}");
}

#[tokio::test]
async fn cancel_cascades_to_children_and_interrupts_running_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let id = submit(
        &hg,
        "flow/fan-out",
        json!({"prefix": "x", "n": 8, "sleep-ms": 3000, "fail-index": null}),
    )
    .await;
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    // Wait until the children run.
    let started = std::time::Instant::now();
    loop {
        let run = hg.store.run(&id).await.unwrap().unwrap();
        if run
            .steps
            .iter()
            .filter(|s| s.status == Status::Running)
            .count()
            >= 8
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "children never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = hg.store.cancel_run(&id).await.unwrap().unwrap();
    assert!(cancelled.changed);
    assert_eq!(cancelled.steps, 9);
    let stopping = std::time::Instant::now();
    worker.stop().await.unwrap();
    // The sleeping children are interrupted at once instead of finishing their 3 s.
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    let run = hg.store.run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Cancelled);
    assert!(run.steps.iter().all(|s| s.status == Status::Cancelled));
    assert_eq!(
        executions(&hg, "x/0").await,
        0,
        "cancelled work commits nothing"
    );
}

#[tokio::test]
async fn a_workflow_that_ends_cancels_the_children_it_did_not_join() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    // `hasty` starts a `fan-out` child (itself waiting on two sleeping `work` children) and,
    // once told to go on, fails without joining it.
    let id = submit(&hg, "flow/hasty", json!({"prefix": "h", "sleep-ms": 5000})).await;
    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let started = std::time::Instant::now();
    loop {
        let run = hg.store.run(&id).await.unwrap().unwrap();
        let working = run
            .steps
            .iter()
            .filter(|s| s.task == "flow/work" && s.status == Status::Running)
            .count();
        if working == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the grandchildren never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hg.store.send_event("go-h", "null").await.unwrap();
    hg.wait(&id, Some(Duration::from_secs(60))).await.unwrap();
    worker.stop().await.unwrap();

    let run = hg.store.run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Failed);
    assert!(
        run.error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("broken child 1"),
        "{:?}",
        run.error
    );
    let status_of = |task: &str| -> Vec<Status> {
        run.steps
            .iter()
            .filter(|s| s.task == task)
            .map(|s| s.status)
            .collect()
    };
    assert_eq!(status_of("flow/broken"), [Status::Failed]);
    // The child it left and that child's own children were cancelled with it, running attempts
    // included, and nothing they did was committed.
    assert_eq!(status_of("flow/fan-out"), [Status::Cancelled]);
    assert_eq!(
        status_of("flow/work"),
        [Status::Cancelled, Status::Cancelled]
    );
    for step in run.steps.iter().filter(|s| s.task == "flow/work") {
        let error = step.error.as_ref().unwrap().to_string();
        assert!(error.contains("did not join"), "{error}");
        assert_eq!(step.attempts.len(), 1);
        assert_eq!(step.attempts[0].status, Status::Cancelled);
    }
    assert_eq!(executions(&hg, "h/0").await, 0);
}

#[tokio::test]
async fn resume_reruns_only_the_failed_children_of_failed_runs_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    // Child 2 of each run fails all 3 attempts the policy allows, so each run fails.
    let mut failed = Vec::new();
    for batch in 0..3 {
        let id = hg
            .submit(&RunRequest {
                task: "flow/strict".into(),
                input: json!({"prefix": format!("r{batch}"), "n": 4, "fail-index": 2, "fail-attempts": 3}),
                meta: vec![("batch".into(), "nightly".into())],
            })
            .await
            .unwrap();
        let run = finish(&hg, &id).await;
        assert_eq!(run.status, Status::Failed, "{:?}", run.output);
        failed.push(id);
    }
    // A failed run outside the filter stays failed.
    let other = submit(
        &hg,
        "flow/strict",
        json!({"prefix": "o", "n": 2, "fail-index": 0, "fail-attempts": 3}),
    )
    .await;
    assert_eq!(finish(&hg, &other).await.status, Status::Failed);

    let filter = hypergraph_runtime::store::RunFilter {
        meta: vec![("batch".into(), "nightly".into())],
        ..Default::default()
    };
    let resumed = hg.resume_runs(&filter, false).await.unwrap();
    assert_eq!(resumed.len(), 3);
    assert!(resumed.iter().all(|r| r.steps == 2), "{resumed:?}");
    for (batch, id) in failed.iter().enumerate() {
        let run = finish(&hg, id).await;
        assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
        assert_eq!(run.output, Some(json!({"ok": 12})));
        // The completed children were reused, not run again; child 2 ran once more.
        for i in [0, 1, 3] {
            assert_eq!(executions(&hg, &format!("r{batch}/{i}")).await, 1);
        }
        let child = run.steps.iter().find(|s| s.child_index == Some(2)).unwrap();
        assert_eq!(child.attempt, 4);
        assert_eq!(run.steps.len(), 5, "no child was started twice");
        assert_eq!(
            run.steps[0].attempt, 2,
            "the workflow resumed in a new attempt"
        );
    }
    let other = hg.store.run(&other).await.unwrap().unwrap();
    assert_eq!(other.status, Status::Failed);

    // Only failed or cancelled runs can be resumed.
    let error = hg.resume_run(&failed[0], false).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("only failed or cancelled runs"),
        "{error:#}"
    );
}

fn dag_fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/dag").join(name)).unwrap()
}

#[tokio::test]
async fn dag_workflows_run_steps_in_parallel_pass_outputs_and_report_failures() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let report = hg
        .deploy_dag(None, &dag_fixture("sum.dag.toml"), &Policy::default())
        .await
        .unwrap();
    assert_eq!(report.deployment.name, "sum");
    let id = submit(&hg, "sum", json!({"anything": true})).await;
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output,
        Some(json!({"left": 4, "right": 10, "total": 14}))
    );
    // The root and its three steps; `left` was retried by the DAG's policy.
    assert_eq!(run.steps.len(), 4);
    let left = run.steps.iter().find(|s| s.child_index == Some(0)).unwrap();
    assert_eq!(left.attempt, 2);
    let total = run.steps.iter().find(|s| s.task == "flow/add").unwrap();
    assert_eq!(total.input, json!({"left": 4, "right": 10}));
    let replayed = hg.replay_run(&id, &ReplayWith::Pinned).await.unwrap();
    assert!(replayed.identical(), "{replayed:?}");
    assert_eq!(
        replayed.replayed(),
        4,
        "every child attempt replayed: {replayed:?}"
    );

    // A failing step: nothing downstream starts, on_failure gets the failed steps, the run fails.
    hg.deploy_dag(None, &dag_fixture("failing.dag.toml"), &Policy::default())
        .await
        .unwrap();
    let id = submit(&hg, "failing", json!(null)).await;
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Failed);
    let error = run.error.unwrap();
    assert_eq!(error["kind"], "application");
    assert_eq!(error["value"][0][0], "bad");
    assert!(
        run.steps.iter().all(|s| s.task != "flow/add"),
        "`after` never started"
    );
    // Each child carries its step's name from the file.
    let mut names: Vec<&str> = run.steps.iter().filter_map(|s| s.name.as_deref()).collect();
    names.sort();
    assert_eq!(names, ["bad", "fine", "on_failure"]);
    let report = run.steps.iter().find(|s| s.task == "flow/report").unwrap();
    assert!(report
        .output
        .as_ref()
        .unwrap()
        .as_str()
        .unwrap()
        .starts_with("bad: application"));
    assert_eq!(executions(&hg, "report").await, 1);

    // Resumed, the DAG continues from its first failed join: `bad` fails again and on_failure
    // runs again at the same position; the first on_failure child is superseded (it keeps its
    // result but no position, and is not re-run), so no position is taken twice.
    let resumed = hg.resume_run(&id, false).await.unwrap();
    assert_eq!(resumed.steps, 2, "the root and `bad`: {resumed:?}");
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Failed);
    let children: Vec<_> = run.steps.iter().filter(|s| s.parent_id.is_some()).collect();
    let mut positions: Vec<u32> = children.iter().filter_map(|s| s.child_index).collect();
    positions.sort();
    assert_eq!(positions, [0, 1, 2], "{children:#?}");
    let reports: Vec<_> = children
        .iter()
        .filter(|s| s.task == "flow/report")
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        reports.iter().filter(|s| s.child_index.is_none()).count(),
        1,
        "the first report is superseded"
    );
    assert!(reports.iter().all(|s| s.status == Status::Succeeded));
    assert_eq!(executions(&hg, "report").await, 2);
}

#[tokio::test]
async fn dag_files_are_validated_at_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let hg = setup(dir.path()).await;
    let cases = [
        (
            "name = \"x\"\n[[step]]\nname = \"a\"\ntask = \"flow/nope\"\n",
            "unknown task `flow/nope`",
        ),
        (
            "name = \"x\"\n[[step]]\nname = \"a\"\ntask = \"flow/add\"\nparents = [\"b\"]\n\
             [[step]]\nname = \"b\"\ntask = \"flow/add\"\nparents = [\"a\"]\n",
            "a -> b -> a",
        ),
        (
            "name = \"x\"\n[[step]]\nname = \"left\"\ntask = \"flow/add\"\nparents = [\"ghost\"]\n",
            "names parent `ghost`, which is not a step of this workflow",
        ),
        (
            "name = \"x\"\n[[step]]\nname = \"a\"\ntask = \"flow/add\"\n",
            "takes parameter `left`",
        ),
        ("name = \"x\"\n[[step]\n", "TOML"),
    ];
    for (text, expected) in cases {
        let error = hg
            .deploy_dag(None, text, &Policy::default())
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
    }
    assert!(
        hg.store.latest_deployment("x").await.unwrap().is_none(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn schedule_to_start_and_run_timeouts_fail_runs() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let component = flow();
    // Nobody starts the step within 50 ms: it fails without ever running.
    let impatient = Policy {
        schedule_to_start_ms: Some(50),
        ..Policy::default()
    };
    hg.deploy("impatient", &component, &impatient)
        .await
        .unwrap();
    let id = submit(
        &hg,
        "impatient/work",
        json!({"key": "late", "n": 1, "sleep-ms": 0, "fail-attempts": 0}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Failed);
    assert_eq!(error_kind(&run), "schedule_to_start_timeout");
    assert_eq!(run.steps[0].attempt, 0, "never started");

    // A workflow sleeping past its run timeout: the run fails, its steps are cancelled.
    let bounded = Policy {
        run_timeout_ms: Some(300),
        ..Policy::default()
    };
    hg.deploy("bounded", &component, &bounded).await.unwrap();
    let id = submit(&hg, "bounded/nap", json!(60_000)).await;
    let run = finish(&hg, &id).await;
    assert_eq!(run.status, Status::Failed);
    assert_eq!(error_kind(&run), "run_timeout");
    assert!(run.steps.iter().all(|s| s.status == Status::Cancelled));

    // Policies are checked at deploy.
    let zero = Policy {
        run_timeout_ms: Some(0),
        ..Policy::default()
    };
    let error = hg.deploy("zero", &component, &zero).await.unwrap_err();
    assert!(format!("{error:#}").contains("run timeout must be greater than zero"));
}
