//! End-to-end tests of workflows through the real `hypergraph` binary, as a user drives them:
//! `deploy`, `run`, `serve` (killed with SIGKILL and restarted, or stopped with SIGTERM),
//! `events send`, `runs cancel` and `runs show`, with the `flow` test guest
//! (`tests/guests/flow`). Every test has its own database in a temp dir, and every process it
//! spawns is killed when the test ends, passed or not.

use hypergraph_testing as common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cli::{attempts, children, count, root, steps, summary, Cli};
use common::repo;
use serde_json::{json, Value};

/// The `flow` guest component, built once per test process.
fn flow_component() -> Vec<u8> {
    common::guest("flow")
}

/// A fresh database with the `flow` guest deployed as `flow`, three attempts per step.
fn with_flow() -> Cli {
    let cli = Cli::new();
    // A private copy: another test process rebuilding the guest cannot change it under us.
    let wasm = cli.dir.path().join("flow.wasm");
    std::fs::write(&wasm, flow_component()).unwrap();
    let deployed = cli.ok(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--name",
        "flow",
        "--max-attempts",
        "3",
        "--backoff",
        "50ms",
    ]);
    assert!(
        deployed.contains("deployed flow version 1") && deployed.contains("flow/fan-out"),
        "{deployed}"
    );
    cli
}

/// How many executions of `work` with `key` committed (the guest counts them in kv).
fn executions(cli: &Cli, key: &str) -> u64 {
    let result = cli.json(&[
        "run",
        "flow/executions",
        "--input",
        &json!(key).to_string(),
        "--wait",
        "--json",
    ]);
    assert_eq!(result["status"], "succeeded", "{result}");
    result["output"].as_u64().expect("a count")
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The expected output of `fan-out` over `n` children that all succeed.
fn fan_out_output(n: u32) -> Value {
    Value::Array((0..n).map(|i| json!({"ok": i * 2})).collect())
}

#[test]
fn fan_out_of_100_children_retries_the_failing_child_only() {
    let cli = with_flow();
    let result = cli.json(&[
        "run",
        "flow/fan-out",
        "--input",
        r#"{"prefix": "f", "n": 100, "sleep-ms": 0, "fail-index": 42}"#,
        "--wait",
        "--json",
    ]);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(
        result["output"],
        fan_out_output(100),
        "every child's result"
    );
    let id = result["run_id"].as_str().unwrap();

    let run = cli.show(id);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(steps(&run).len(), 101, "{}", summary(&run));
    let root_id = root(&run)["id"].clone();
    assert_eq!(root(&run)["task"], "flow/fan-out");
    assert_eq!(root(&run)["status"], "succeeded");
    let kids = children(&run);
    assert_eq!(kids.len(), 100);
    for (i, child) in kids.iter().enumerate() {
        assert_eq!(child["parent_id"], root_id, "child {i}");
        assert_eq!(child["child_index"], i, "child {i}");
        assert_eq!(child["task"], "flow/work", "child {i}");
        assert_eq!(child["status"], "succeeded", "child {i}");
        assert_eq!(child["output"], json!({"ok": i * 2}), "child {i}");
        let expected = if i == 42 { 2 } else { 1 };
        assert_eq!(child["attempt"], expected, "child {i}: {child}");
        assert_eq!(attempts(child).len(), expected, "child {i}: {child}");
    }
    // Child 42's first attempt failed with its retryable application error, the second succeeded.
    let retried = attempts(kids[42]);
    assert_eq!(retried[0]["status"], "failed");
    assert_eq!(retried[0]["error"]["kind"], "application");
    assert_eq!(
        retried[0]["error"]["value"],
        json!({"retryable": "f/42 fails on attempt 1 of its first 1"})
    );
    assert_eq!(retried[1]["status"], "succeeded");

    // The text view draws the children as a tree below the workflow.
    let text = cli.ok(&["runs", "show", id]);
    let tree: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("flow/work [") && (l.contains("├─") || l.contains("└─")))
        .collect();
    assert_eq!(tree.len(), 100, "one tree line per child in:\n{text}");
    assert!(
        tree.iter()
            .any(|l| l.contains("#42 flow/work [succeeded] 2 attempts")),
        "child 42's two attempts missing from:\n{text}"
    );
    assert!(
        tree.iter()
            .any(|l| l.contains("#0 flow/work [succeeded] 1 attempt,")),
        "child 0 missing from:\n{text}"
    );
    assert!(
        tree.last().unwrap().contains("└─ #99 flow/work"),
        "the last child closes the tree:\n{text}"
    );
}

#[test]
fn durable_sleep_survives_a_killed_server() {
    let cli = with_flow();
    let id = cli.submit("flow/nap", json!(3000));
    let submitted = Instant::now();
    let serve = cli.serve(&[]);
    let run = cli.wait_until(&id, "the workflow to wait for its timer", |run| {
        root(run)["status"] == "waiting"
    });
    assert_eq!(
        run["status"], "running",
        "a waiting workflow's run is running"
    );
    serve.kill();
    // Nobody serves for a while: the timer lives in the database, not in a process.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(root(&cli.show(&id))["status"], "waiting");

    let serve = cli.serve(&[]);
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    let slept = run["output"].as_u64().expect("elapsed millis");
    assert!(slept >= 3000, "slept {slept} ms, less than 3000");
    assert!(submitted.elapsed() >= Duration::from_millis(3000));
    // The workflow was waiting (not executing) when the server died: it resumed within its
    // first attempt, from its journal.
    let step = root(&run);
    assert_eq!(step["attempt"], 1, "{step}");
    assert_eq!(attempts(step).len(), 1, "{step}");
    assert_eq!(attempts(step)[0]["status"], "succeeded", "{step}");
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
}

#[test]
fn an_event_wakes_a_waiting_workflow_and_a_timeout_returns_null() {
    let cli = with_flow();
    // An event sent before the workflow waits is not the one it waits for.
    let stale = cli.json(&[
        "events",
        "send",
        "approved",
        "--payload",
        r#""stale""#,
        "--json",
    ]);
    assert_eq!(stale["woken"], 0, "{stale}");
    let id = cli.submit(
        "flow/await-event",
        json!({"name": "approved", "timeout-ms": null}),
    );
    let serve = cli.serve(&[]);
    cli.wait_until(&id, "the workflow to wait for `approved`", |run| {
        root(run)["status"] == "waiting"
    });
    // An event of another name wakes nobody.
    let other = cli.json(&["events", "send", "rejected", "--json"]);
    assert_eq!(other["woken"], 0, "{other}");
    let sent = cli.json(&[
        "events",
        "send",
        "approved",
        "--payload",
        r#"{"by":"ada"}"#,
        "--json",
    ]);
    assert_eq!(sent["woken"], 1, "{sent}");
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    // The output is the payload's JSON text.
    assert_eq!(run["output"], json!(r#"{"by":"ada"}"#));

    // Without an event, the wait times out and returns none.
    let timed_out = cli.json(&[
        "run",
        "flow/await-event",
        "--input",
        r#"{"name": "never", "timeout-ms": 200}"#,
        "--wait",
        "--json",
    ]);
    assert_eq!(timed_out["status"], "succeeded", "{timed_out}");
    assert_eq!(timed_out["output"], Value::Null, "{timed_out}");
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
}

#[test]
fn cancel_cascades_to_every_child_and_interrupts_them() {
    let cli = with_flow();
    let id = cli.submit(
        "flow/fan-out",
        json!({"prefix": "x", "n": 8, "sleep-ms": 5000, "fail-index": null}),
    );
    let serve = cli.serve(&[]);
    cli.wait_until(&id, "the 8 children to run", |run| {
        count(&children(run), "running") == 8
    });
    let cancelled_at = Instant::now();
    let cancelled = cli.json(&["runs", "cancel", &id, "--json"]);
    assert_eq!(cancelled["changed"], true, "{cancelled}");
    assert_eq!(cancelled["cancelled_steps"], 9, "{cancelled}");

    let run = cli.wait_until(&id, "the run and its 9 steps to be cancelled", |run| {
        run["status"] == "cancelled" && steps(run).iter().all(|s| s["status"] == "cancelled")
    });
    assert_eq!(steps(&run).len(), 9, "{}", summary(&run));
    // The children's 5 s sleeps are interrupted: a graceful stop, which lets in-flight attempts
    // finish, is quick.
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
    assert!(
        cancelled_at.elapsed() < Duration::from_millis(4000),
        "the cancelled children were not interrupted: serve stopped {:?} after the cancel",
        cancelled_at.elapsed()
    );
    let run = cli.show(&id);
    for step in steps(&run) {
        assert_eq!(step["status"], "cancelled", "{step}");
        assert!(
            attempts(step).iter().all(|a| a["status"] != "succeeded"),
            "a cancelled step has a succeeded attempt: {step}"
        );
    }
    for i in 0..8 {
        assert_eq!(
            executions(&cli, &format!("x/{i}")),
            0,
            "child {i}: cancelled work commits nothing"
        );
    }
    // Cancelling again changes nothing.
    let again = cli.json(&["runs", "cancel", &id, "--json"]);
    assert_eq!(again["changed"], false, "{again}");
}

/// THE crash test: `serve` dies by SIGKILL in the middle of a fan-out; a new `serve` finishes
/// the run. No completed child runs again, each step has at most one succeeded attempt, the
/// children that were running get a second attempt after their lease expires, and the workflow
/// resumes from its journal instead of starting its children again.
#[test]
fn killed_server_mid_fan_out_resumes_without_rerunning_completed_children() {
    let cli = with_flow();
    let id = cli.submit(
        "flow/fan-out",
        json!({"prefix": "c", "n": 30, "sleep-ms": 300, "fail-index": null}),
    );
    let serve = cli.serve(&["--concurrency", "4"]);
    // Kill when at least 8 children are done and one started so recently (under 150 ms ago)
    // that its 300 ms sleep cannot have finished: it is certainly interrupted.
    let mut interrupted = None;
    let before = cli.wait_until(&id, "8 children done and one just started", |run| {
        let kids = children(run);
        let now = now_micros();
        interrupted = kids
            .iter()
            .find(|s| {
                s["status"] == "running"
                    && s["assigned_at"]
                        .as_i64()
                        .is_some_and(|at| now - at < 150_000)
            })
            .map(|s| s["child_index"].as_u64().unwrap());
        count(&kids, "succeeded") >= 8 && interrupted.is_some()
    });
    serve.kill();
    let interrupted = interrupted.unwrap();
    let done_before: Vec<u64> = children(&before)
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .map(|s| s["child_index"].as_u64().unwrap())
        .collect();
    assert!(
        done_before.len() < 30,
        "the fan-out finished before the kill"
    );

    let serve = cli.serve(&["--concurrency", "4"]);
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    assert_eq!(run["output"], fan_out_output(30), "all 30 results");
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");

    // The workflow resumed from its journal: its 30 children were started once each.
    let root = root(&run);
    let kids = children(&run);
    assert_eq!(steps(&run).len(), 31, "{}", summary(&run));
    assert_eq!(kids.len(), 30);
    for (i, child) in kids.iter().enumerate() {
        assert_eq!(child["child_index"], i, "each child index exactly once");
        assert_eq!(child["parent_id"], root["id"]);
        assert_eq!(child["status"], "succeeded", "child {i}");
    }

    // No step has more than one succeeded attempt; every attempt but the last was lost with
    // the server (lease expired), never failed otherwise (no child fails in this run).
    for step in steps(&run) {
        let attempts = attempts(step);
        assert_eq!(
            attempts.len() as u64,
            step["attempt"].as_u64().unwrap(),
            "one attempt row per attempt: {step}"
        );
        let succeeded = attempts
            .iter()
            .filter(|a| a["status"] == "succeeded")
            .count();
        assert_eq!(succeeded, 1, "exactly one succeeded attempt: {step}");
        let (last, earlier) = attempts.split_last().unwrap();
        assert_eq!(last["status"], "succeeded", "{step}");
        for attempt in earlier {
            assert_eq!(attempt["status"], "failed", "{step}");
            assert_eq!(attempt["error"]["kind"], "lease_expired", "{step}");
        }
        assert!(
            attempts.len() <= 2,
            "one crash costs at most one extra attempt: {step}"
        );
    }
    // Children done before the kill were not run again; the one killed mid-sleep was.
    for i in &done_before {
        assert_eq!(kids[*i as usize]["attempt"], 1, "child {i} ran again");
    }
    let killed = kids[interrupted as usize];
    assert_eq!(
        killed["attempt"], 2,
        "child {interrupted} was running at the kill: {killed}"
    );
    assert_eq!(attempts(killed)[0]["error"]["kind"], "lease_expired");
    // The workflow step itself kept its journal: at most one new attempt (if it was executing
    // at the kill), never a restart that would have started new children.
    assert!(root["attempt"].as_u64().unwrap() <= 2, "{root}");

    // Each child's work committed exactly once, including the ones executed twice (the killed
    // attempt's kv write died with it).
    for i in 0..30 {
        assert_eq!(executions(&cli, &format!("c/{i}")), 1, "child {i}");
    }
}

#[test]
fn sequential_chain_through_run_wait() {
    let cli = with_flow();
    let result = cli.json(&[
        "run",
        "flow/chain",
        "--input",
        r#"{"prefix": "s", "n": 10}"#,
        "--wait",
        "--json",
    ]);
    assert_eq!(result["status"], "succeeded", "{result}");
    let expected: u32 = (0..10).map(|i| i * 2).sum();
    assert_eq!(result["output"], expected);

    let run = cli.show(result["run_id"].as_str().unwrap());
    assert_eq!(steps(&run).len(), 11, "{}", summary(&run));
    let kids = children(&run);
    for (i, child) in kids.iter().enumerate() {
        assert_eq!(child["child_index"], i);
        assert_eq!(child["status"], "succeeded");
        assert_eq!(child["attempt"], 1);
        assert_eq!(child["input"]["key"], format!("s/{i}"));
    }
    // Sequential: each child was started only after the previous one completed.
    for pair in kids.windows(2) {
        let (previous, next) = (pair[0], pair[1]);
        assert!(
            next["created_at"].as_i64().unwrap() >= previous["completed_at"].as_i64().unwrap(),
            "child {} started before child {} completed",
            next["child_index"],
            previous["child_index"]
        );
    }
}

/// A chain under a server that is SIGKILLed twice mid-way: whatever was executing at each kill
/// (a child or the workflow's own activation) is claimed again after its lease, and the workflow
/// continues from its journal without starting any child twice. Each child takes 10 ms so that
/// the 90 children between the second kill and the end take far longer than one poll of the
/// run (a chain of instant children runs them in under 1 ms each).
#[test]
fn repeated_kills_mid_chain_never_start_a_child_twice() {
    let cli = with_flow();
    let n = 200;
    let id = cli.submit("flow/chain", json!({"prefix": "k", "n": n, "sleep-ms": 10}));
    for progress in [40, 110] {
        let serve = cli.serve(&[]);
        let run = cli.wait_until(&id, &format!("{progress} children done"), |run| {
            count(&children(run), "succeeded") >= progress
        });
        serve.kill();
        assert!(
            count(&children(&run), "succeeded") < n,
            "the chain finished before the kill"
        );
    }
    let serve = cli.serve(&[]);
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    assert!(serve.terminate().success(), "serve exits 0 on SIGTERM");
    let expected: usize = (0..n).map(|i| i * 2).sum();
    assert_eq!(run["output"], expected);

    let root = root(&run);
    let kids = children(&run);
    assert_eq!(steps(&run).len(), n + 1, "{}", summary(&run));
    for (i, child) in kids.iter().enumerate() {
        assert_eq!(child["child_index"], i, "each child index exactly once");
        assert_eq!(child["parent_id"], root["id"]);
        assert_eq!(child["input"]["key"], format!("k/{i}"));
    }
    let mut lost = 0;
    for step in steps(&run) {
        let attempts = attempts(step);
        assert_eq!(
            attempts.len() as u64,
            step["attempt"].as_u64().unwrap(),
            "{step}"
        );
        let (last, earlier) = attempts.split_last().unwrap();
        assert_eq!(last["status"], "succeeded", "{step}");
        for attempt in earlier {
            assert_eq!(attempt["status"], "failed", "{step}");
            assert_eq!(attempt["error"]["kind"], "lease_expired", "{step}");
        }
        lost += earlier.len();
    }
    // Each kill loses at most the attempt of the child running and that of the workflow
    // lingering on it.
    assert!(
        lost <= 4,
        "two kills lose at most four attempts, not {lost}"
    );
    // A child executed twice committed its work once; the first and last children too.
    let mut keys: Vec<usize> = kids
        .iter()
        .enumerate()
        .filter(|(_, c)| c["attempt"] != 1)
        .map(|(i, _)| i)
        .collect();
    keys.extend([0, n - 1]);
    for i in keys {
        assert_eq!(executions(&cli, &format!("k/{i}")), 1, "child {i}");
    }
}

#[test]
fn worker_until_idle_exits_while_a_workflow_waits_for_an_event() {
    let cli = with_flow();
    let id = cli.submit(
        "flow/await-event",
        json!({"name": "go", "timeout-ms": null}),
    );
    // The waiting workflow is not claimable: the worker exits instead of holding it.
    cli.worker_until_idle(&[]);
    let run = cli.show(&id);
    assert_eq!(run["status"], "running", "{}", summary(&run));
    assert_eq!(root(&run)["status"], "waiting", "{}", summary(&run));

    let sent = cli.json(&["events", "send", "go", "--payload", "7", "--json"]);
    assert_eq!(sent["woken"], 1, "{sent}");
    cli.worker_until_idle(&[]);
    let run = cli.show(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    assert_eq!(run["output"], json!("7"));
}

/// `worker --until-idle` must not exit while a workflow it just ran has started children: they
/// are claimable.
#[test]
fn worker_until_idle_runs_the_children_a_workflow_starts() {
    let cli = with_flow();
    // The bug is a race (the worker exits before its last completion is committed): a few
    // rounds make it show reliably.
    for round in 0..8 {
        let id = cli.submit("flow/chain", json!({"prefix": format!("w{round}"), "n": 3}));
        cli.worker_until_idle(&[]);
        let run = cli.show(&id);
        assert_eq!(
            run["status"],
            "succeeded",
            "round {round}: {}",
            summary(&run)
        );
        assert_eq!(run["output"], 6);
        assert_eq!(steps(&run).len(), 4);
    }
}

/// A workflow that suspends (to wait for its children) has not failed: the worker's `failed`
/// count stays 0 when nothing failed.
#[test]
fn worker_stats_do_not_count_suspended_workflows_as_failed() {
    let cli = with_flow();
    let id = cli.submit("flow/chain", json!({"prefix": "s", "n": 3}));
    let (mut succeeded, mut failed) = (0, 0);
    for _ in 0..20 {
        let stats = cli.worker_until_idle(&[]);
        succeeded += stats["succeeded"].as_u64().unwrap();
        failed += stats["failed"].as_u64().unwrap();
        if cli.show(&id)["status"] == "succeeded" {
            break;
        }
    }
    let run = cli.show(&id);
    assert_eq!(run["status"], "succeeded", "{}", summary(&run));
    assert!(succeeded >= 4, "3 children and the workflow succeeded");
    assert_eq!(failed, 0, "nothing failed");
}

/// Cancelled attempts are not "stale attempts whose lease expired": `serve` must not log that
/// a newer attempt owns a step that was cancelled.
#[test]
fn serve_does_not_report_cancelled_attempts_as_lost_leases() {
    let cli = with_flow();
    let id = cli.submit(
        "flow/fan-out",
        json!({"prefix": "y", "n": 1, "sleep-ms": 5000, "fail-index": null}),
    );
    let serve = cli.serve(&[]);
    cli.wait_until(&id, "the child to run", |run| {
        count(&children(run), "running") == 1
    });
    cli.ok(&["runs", "cancel", &id]);
    cli.wait_until(&id, "the run to be cancelled", |run| {
        run["status"] == "cancelled"
    });
    let log_path = serve.log.clone();
    assert!(serve.terminate().success());
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        !log.contains("a newer attempt owns this step"),
        "a cancelled attempt reported as a lost lease:\n{log}"
    );
}

/// A DAG file through the binary: invalid files are refused with every problem named and
/// nothing deployed; a valid one deploys, runs with `run <name> --wait`, and shows its tree.
#[test]
fn dag_files_deploy_validate_and_run_through_the_binary() {
    let cli = with_flow();
    let bad = cli.dir.path().join("bad.dag.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n\
         [[step]]\nname = \"a\"\ntask = \"flow/add\"\nparents = [\"b\"]\n\
         [[step]]\nname = \"b\"\ntask = \"flow/add\"\nparents = [\"a\", \"ghost\"]\n\
         [[step]]\nname = \"c\"\ntask = \"flow/ad\"\n",
    )
    .unwrap();
    let out = cli.run(&["deploy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "a -> b -> a",
        "parent `ghost`, which is not a step of this workflow",
        "unknown task `flow/ad`; did you mean `flow/add`",
    ] {
        assert!(
            stderr.contains(expected),
            "`{expected}` missing from:\n{stderr}"
        );
    }
    let runs = cli.run(&["run", "bad", "--input", "null"]);
    assert_eq!(
        runs.status.code(),
        Some(2),
        "nothing named `bad` was deployed"
    );

    let sum = repo().join("tests/fixtures/dag/sum.dag.toml");
    let deployed = cli.ok(&["deploy", sum.to_str().unwrap()]);
    assert!(deployed.contains("deployed sum version 1"), "{deployed}");
    let result = cli.json(&["run", "sum", "--input", "{}", "--wait", "--json"]);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(
        result["output"],
        json!({"left": 4, "right": 10, "total": 14})
    );
    let id = result["run_id"].as_str().unwrap();
    let shown = cli.ok(&["runs", "show", id]);
    assert!(
        shown.contains("#0 left: flow/work [succeeded] 2 attempts"),
        "{shown}"
    );
    assert!(
        shown.contains("└─ #2 total: flow/add [succeeded]"),
        "{shown}"
    );
}

#[test]
fn an_event_reaches_a_wait_with_a_long_timeout_at_once() {
    let cli = with_flow();
    // An hour, and the longest timeout a guest can ask for: the event must not wait for either.
    let hour = cli.submit(
        "flow/await-event",
        json!({"name": "bell", "timeout-ms": 3_600_000u64}),
    );
    let forever = cli.submit(
        "flow/await-event",
        json!({"name": "bell", "timeout-ms": u64::MAX}),
    );
    let serve = cli.serve(&[]);
    for id in [&hour, &forever] {
        cli.wait_until(id, "the workflow to wait for `bell`", |run| {
            root(run)["status"] == "waiting"
        });
    }
    let sent = cli.json(&["events", "send", "bell", "--payload", r#""ding""#, "--json"]);
    assert_eq!(sent["woken"], 2, "{sent}");
    // `wait_finished` gives up after a minute, far less than either timeout.
    for id in [&hour, &forever] {
        let run = cli.wait_finished(id);
        assert_eq!(run["status"], "succeeded", "{}", summary(&run));
        assert_eq!(run["output"], json!(r#""ding""#));
    }
    assert!(serve.terminate().success());
}

#[test]
fn a_workflow_cannot_wait_for_an_event_name_that_cannot_be_sent() {
    let cli = with_flow();
    for name in ["", "tab\there"] {
        let out = cli.expect(
            1,
            &[
                "run",
                "flow/await-event",
                "--input",
                &json!({"name": name, "timeout-ms": null}).to_string(),
                "--wait",
                "--wait-timeout",
                "30s",
                "--json",
            ],
        );
        let run: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(run["error"]["kind"], "trap", "{run}");
        let message = run["error"]["message"].as_str().unwrap();
        assert!(message.contains("wait-event: an event name"), "{message}");
    }
}

#[test]
fn a_step_that_keeps_losing_its_worker_fails_after_its_lease_budget() {
    let cli = with_flow();
    // A step that runs far longer than the lease: its worker is killed under it, twice.
    cli.ok(&[
        "deploy",
        &common::cli::fixture_path("hostile.wat"),
        "--name",
        "hostile",
        "--max-lost-leases",
        "2",
    ]);
    let id = cli.submit("hostile/spin", Value::Null);
    for round in 1..=2u32 {
        let serve = cli.serve(&[]);
        let run = cli.wait_until(&id, "a worker to run the step", |run| {
            root(run)["status"] == "running" && root(run)["attempt"] == round
        });
        assert_eq!(root(&run)["lost_leases"], round - 1, "{run}");
        serve.kill();
        // Until a worker claims it again, `runs show` says why it is late.
        std::thread::sleep(Duration::from_millis(1200));
        let text = cli.ok(&["runs", "show", &id]);
        assert!(text.contains("its lease expired"), "{text}");
    }
    let serve = cli.serve(&[]);
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "failed", "{}", summary(&run));
    assert_eq!(run["error"]["kind"], "lease_expired", "{run}");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(message.contains("outlived 2 worker(s)"), "{message}");
    // Two attempts, both lost; never a third.
    let tries = attempts(root(&run));
    assert_eq!(tries.len(), 2, "{run}");
    assert!(tries.iter().all(|a| a["error"]["kind"] == "lease_expired"));
    assert!(serve.terminate().success());
}
