//! Hostile sizes through the real binary: every limit a guest (or a user) can run into fails
//! clearly, keeps the database small, and keeps the host's memory bounded. Each test prints the
//! peak resident memory it measured (`ru_maxrss` of the `hypergraph` process).

use hypergraph_testing as common;

use std::path::PathBuf;

use common::cli::{fixture_path, run_measuring_rss, Cli};
use hypergraph_runtime::store::sqlite::SqliteStore;
use hypergraph_runtime::store::{now_micros, Completion, NewChild, NewRun, Status, Store, Wait};
use serde_json::{json, Value};

/// The most memory a `hypergraph` process may use in these tests, whatever the guest asks for:
/// a guest's own memory is capped at 256 MiB, and the host keeps at most one copy of what it
/// lifted out of it.
const RSS_BOUND_KIB: u64 = 700 * 1024;

fn sizes(cli: &Cli, extra: &[&str]) -> PathBuf {
    cli.deploy_guest("sizes", "sizes", extra)
}

/// Runs `hypergraph <args>` and returns its output, exit code and peak memory, printing the
/// memory figure for the record.
fn measured(cli: &Cli, what: &str, args: &[&str]) -> (Value, Option<i32>, u64) {
    let (out, rss_kib) = run_measuring_rss(cli.cmd(args));
    eprintln!("{what}: peak RSS {} MiB", rss_kib / 1024);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        rss_kib < RSS_BOUND_KIB,
        "{what}: peak RSS {rss_kib} KiB\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (json, out.status.code(), rss_kib)
}

fn db_bytes(cli: &Cli) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let path = format!("{}{suffix}", cli.db.display());
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        })
        .sum()
}

#[test]
fn a_100_mb_log_line_is_cut_and_stored_small() {
    let cli = Cli::new();
    sizes(&cli, &[]);
    let (run, code, _) = measured(
        &cli,
        "100 MB log line",
        &[
            "run",
            "sizes/log-line",
            "--input",
            "100000000",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{run}");
    let id = run["run_id"].as_str().unwrap();
    let logs = cli.json(&["runs", "logs", id, "--json"]);
    let line = logs[0]["message"].as_str().unwrap();
    assert!(line.len() < 70 * 1024, "{} bytes kept", line.len());
    assert!(
        line.contains("line cut at 64 KiB"),
        "{}",
        &line[line.len() - 120..]
    );
    assert!(
        db_bytes(&cli) < 8 << 20,
        "database: {} bytes",
        db_bytes(&cli)
    );
}

#[test]
fn a_120_mb_output_fails_the_attempt_before_it_is_converted() {
    let cli = Cli::new();
    sizes(&cli, &[]);
    let (run, code, _) = measured(
        &cli,
        "120 MB output",
        &[
            "run",
            "sizes/big-output",
            "--input",
            "120000000",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(code, Some(1), "{run}");
    assert_eq!(run["error"]["kind"], "limit", "{run}");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("larger than the deployment's limit of 16 MiB")
            && message.contains("--max-output"),
        "{message}"
    );
    assert!(
        db_bytes(&cli) < 8 << 20,
        "database: {} bytes",
        db_bytes(&cli)
    );
    // A deployment that allows more gets it.
    sizes(&cli, &["--max-output", "32MiB"]);
    let (run, code, _) = measured(
        &cli,
        "20 MB output, allowed",
        &[
            "run",
            "sizes/big-output",
            "--input",
            "20000000",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{}", run["error"]);
}

#[test]
fn key_value_writes_of_an_attempt_are_capped() {
    let cli = Cli::new();
    sizes(&cli, &[]);
    let (run, code, _) = measured(
        &cli,
        "20,000 x 1 MiB kv writes",
        &[
            "run",
            "sizes/kv-flood",
            "--input",
            r#"{"count": 20000, "size": 1048576}"#,
            "--wait",
            "--json",
        ],
    );
    assert_eq!(code, Some(1), "{run}");
    assert_eq!(run["error"]["kind"], "limit", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceed the deployment's limit of 16 MiB per attempt"),
        "{run}"
    );
    // The failed attempt's journal is bounded by the cap (values journaled compactly).
    assert!(
        db_bytes(&cli) < 40 << 20,
        "database: {} bytes",
        db_bytes(&cli)
    );
    // Nothing of it was written.
    let flood = cli.json(&[
        "run",
        "sizes/kv-flood",
        "--input",
        r#"{"count": 3, "size": 10}"#,
        "--wait",
        "--json",
    ]);
    assert_eq!(flood["output"], 3, "{flood}");
}

#[test]
fn oversized_inputs_are_refused_before_anything_is_stored() {
    let cli = Cli::new();
    sizes(&cli, &[]);
    let huge = cli.dir.path().join("huge.json");
    std::fs::write(&huge, format!("\"{}\"", "z".repeat(100_000_000))).unwrap();
    let (_, code, _) = measured(
        &cli,
        "100 MB input",
        &[
            "run",
            "sizes/measure",
            "--input",
            &format!("@{}", huge.display()),
        ],
    );
    assert_eq!(code, Some(2));
    let err = cli.stderr_of_failure(
        2,
        &[
            "run",
            "sizes/measure",
            "--input",
            &format!("@{}", huge.display()),
        ],
    );
    assert!(err.contains("larger than 64 MiB"), "{err}");

    let big = cli.dir.path().join("big.json");
    std::fs::write(&big, format!("\"{}\"", "z".repeat(20_000_000))).unwrap();
    let err = cli.stderr_of_failure(
        2,
        &[
            "run",
            "sizes/measure",
            "--input",
            &format!("@{}", big.display()),
        ],
    );
    assert!(
        err.contains("larger than the deployment's limit of 16 MiB") && err.contains("--max-input"),
        "{err}"
    );
    assert!(cli
        .json(&["runs", "list", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    sizes(&cli, &["--max-input", "32MiB"]);
    let (run, code, _) = measured(
        &cli,
        "20 MB input, allowed",
        &[
            "run",
            "sizes/measure",
            "--input",
            &format!("@{}", big.display()),
            "--wait",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["output"], 20_000_000);
}

#[test]
fn a_workflow_recursing_500_deep_completes_without_exhausting_instances() {
    let cli = Cli::new();
    cli.deploy_guest("flow", "flow", &[]);
    let (run, code, _) = measured(
        &cli,
        "workflow recursing 500 deep",
        &["run", "flow/recurse", "--input", "500", "--wait", "--json"],
    );
    assert_eq!(code, Some(0), "{run}");
    assert_eq!(run["output"], 500, "{run}");
}

#[test]
fn a_thousand_slots_running_600_children_at_once_get_their_instances() {
    let cli = Cli::new();
    cli.deploy_guest("flow", "flow", &[]);
    let serve = cli.serve(&["--concurrency", "1000"]);
    // 600 children each holding its instance for half a second: more than a pool of 256 has.
    let id = cli.submit(
        "flow/fan-out",
        json!({"prefix": "p", "n": 600, "sleep-ms": 500, "fail-index": null}),
    );
    let run = cli.wait_finished(&id);
    assert_eq!(run["status"], "succeeded", "{}", common::cli::summary(&run));
    let results = run["output"].as_array().unwrap();
    assert_eq!(results.len(), 600);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result, &json!({"ok": i * 2}), "child {i}");
    }
    assert!(serve.terminate().success());
}

#[tokio::test]
async fn showing_a_run_with_100000_children_reads_a_page_of_them() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture_path("counter.wat"), "--name", "counter"]);
    // Build the run through the store: a root step that started 100,000 children and waits.
    let store = SqliteStore::open(&cli.db).await.unwrap();
    let deployment = store.latest_deployment("counter").await.unwrap().unwrap();
    let now = now_micros();
    let run_id = uuid::Uuid::now_v7().to_string();
    store
        .submit_runs(&[NewRun {
            id: run_id.clone(),
            step_id: uuid::Uuid::now_v7().to_string(),
            task: "counter/count".into(),
            deployment: "counter".into(),
            version: deployment.version,
            digest: deployment.digest.clone(),
            input: json!({}),
            meta: vec![],
            created_at: now,
            start_deadline: None,
            deadline: None,
        }])
        .await
        .unwrap();
    let root = store
        .claim_steps("test", 1, std::time::Duration::from_secs(3600))
        .await
        .unwrap()
        .remove(0);
    let children: Vec<NewChild> = (0..100_000u32)
        .map(|index| NewChild {
            step_id: uuid::Uuid::now_v7().to_string(),
            index,
            task: "counter/count".into(),
            deployment: "counter".into(),
            version: deployment.version,
            digest: deployment.digest.clone(),
            input: json!({}),
            policy: None,
            name: None,
            start_deadline: None,
        })
        .collect();
    let ids = children.iter().map(|c| c.step_id.clone()).collect();
    let suspended = Completion {
        step_id: root.step_id.clone(),
        attempt: root.attempt,
        worker_id: "test".into(),
        started_at: now,
        completed_at: now,
        status: Status::Running,
        output: None,
        error: None,
        journal: vec![],
        logs: vec![],
        kv_writes: vec![],
        kv_reads: vec![],
        run_id: run_id.clone(),
        children,
        wait: Some(Wait::Children(ids)),
        retry_at: None,
        reruns: 0,
    };
    store.complete_steps(&[suspended]).await.unwrap();
    store.close().await.unwrap();

    let (out, rss_kib) = run_measuring_rss(cli.cmd(&["runs", "show", &run_id]));
    eprintln!(
        "runs show of 100,000 children: peak RSS {} MiB",
        rss_kib / 1024
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("steps      100001: 100000 queued, 1 waiting"),
        "{text}"
    );
    assert!(text.contains("99001 more step(s) not shown"), "{text}");
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");

    let (out, rss_kib) = run_measuring_rss(cli.cmd(&["runs", "show", &run_id, "--json"]));
    eprintln!(
        "runs show --json of 100,000 children: peak RSS {} MiB",
        rss_kib / 1024
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["step_total"], 100_001);
    assert_eq!(json["steps"].as_array().unwrap().len(), 1000);
    assert_eq!(json["steps"][0]["status"], "waiting");
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");
    let waiting = cli.json(&[
        "runs",
        "show",
        &run_id,
        "--step-status",
        "waiting",
        "--json",
    ]);
    assert_eq!(waiting["steps"].as_array().unwrap().len(), 1);
}
