//! Faults under load on PostgreSQL, end to end through the real binary. Four `serve` processes
//! on one database run 2,000 steps: 1,500 plain `work` runs and a workflow fanning out to 500
//! `work` children, each step counting its executions in the key-value store (a count commits
//! with the attempt's result, so a step whose side effect applied twice shows 2).
//!
//! - One worker is SIGKILLed and another SIGSTOPped mid-load: every run completes, every count is
//!   exactly 1, `workers list` shows the killed worker dead and the stopped one stale, and the
//!   steps they held were run again by the others. The stopped worker is then continued: what it
//!   finishes late is refused, not recorded a second time.
//! - PostgreSQL itself is restarted mid-load (`pg_ctlcluster ... restart`): the same holds, and
//!   every worker rode the outage out instead of exiting. That test is ignored by default because
//!   it interrupts every other test using the server; `scripts/test.sh` runs it alone, last.
//!
//! Both need `HYPERGRAPH_TEST_POSTGRES` (they run on PostgreSQL whatever
//! `HYPERGRAPH_TEST_STORE` says).

use hypergraph_testing as common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cli::{Cli, Serve};
use serde_json::{json, Value};

/// Plain `work` runs, besides the fan-out's children.
const PLAIN: usize = 1_500;
/// Children of the fan-out workflow.
const CHILDREN: usize = 500;
/// How long each step sleeps: enough for the load to outlast the faults.
const SLEEP_MS: u32 = 100;
/// Slots per `serve`.
const CONCURRENCY: &str = "8";
/// How long the whole load may take, faults included, before the test fails.
const LOAD_DEADLINE: Duration = Duration::from_secs(240);

/// A fresh PostgreSQL schema with the `flow` guest deployed as `flow` (five attempts per step,
/// since the faults end attempts), and the 2,000 steps submitted: the plain runs through one
/// `run --inputs` and the fan-out. Returns the fan-out's run id.
fn loaded() -> (Cli, String) {
    let cli = Cli::on_postgres();
    cli.deploy_guest(
        "flow",
        "flow",
        &["--max-attempts", "5", "--backoff", "50ms"],
    );
    let lines: Vec<String> = (0..PLAIN)
        .map(|i| {
            json!({"key": format!("plain/{i}"), "n": i, "sleep-ms": SLEEP_MS, "fail-attempts": 0})
                .to_string()
        })
        .collect();
    let inputs = cli.dir.path().join("inputs.jsonl");
    std::fs::write(&inputs, lines.join("\n")).unwrap();
    let queued = cli.json(&[
        "run",
        "flow/work",
        "--inputs",
        inputs.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        queued["run_ids"].as_array().unwrap().len(),
        PLAIN,
        "{queued}"
    );
    let fan_out = cli.submit(
        "flow/fan-out",
        json!({"prefix": "fan", "n": CHILDREN, "sleep-ms": SLEEP_MS, "fail-index": null}),
    );
    (cli, fan_out)
}

/// `serve -v` with `CONCURRENCY` slots and this lease and heartbeat.
fn serve(cli: &Cli, lease: &str, heartbeat: &str) -> Serve {
    cli.spawn_serve(&[
        "serve",
        "-v",
        "--concurrency",
        CONCURRENCY,
        "--lease",
        lease,
        "--heartbeat",
        heartbeat,
    ])
}

/// `hypergraph <args> --json`, or `None` while the database does not answer.
fn try_json(cli: &Cli, args: &[&str]) -> Option<Value> {
    let out = cli.run(args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The number of runs per status.
fn statuses(cli: &Cli) -> Option<BTreeMap<String, usize>> {
    let runs = try_json(cli, &["runs", "list", "--limit", "5000", "--json"])?;
    let mut counts = BTreeMap::new();
    for run in runs.as_array()? {
        *counts
            .entry(run["status"].as_str()?.to_string())
            .or_default() += 1;
    }
    Some(counts)
}

/// Polls until `at_least` runs have finished (whatever their outcome), tolerating a database
/// that does not answer for a while; panics after [`LOAD_DEADLINE`] from `since`.
fn wait_finished(cli: &Cli, at_least: usize, since: Instant) -> BTreeMap<String, usize> {
    let mut reported = Instant::now();
    loop {
        if let Some(counts) = statuses(cli) {
            let finished: usize = ["succeeded", "failed", "cancelled"]
                .iter()
                .filter_map(|s| counts.get(*s))
                .sum();
            if finished >= at_least {
                eprintln!("{:.1} s: {counts:?}", since.elapsed().as_secs_f64());
                return counts;
            }
            if reported.elapsed() > Duration::from_secs(5) {
                eprintln!("{:.1} s: {counts:?}", since.elapsed().as_secs_f64());
                reported = Instant::now();
            }
            assert!(
                since.elapsed() < LOAD_DEADLINE,
                "after {LOAD_DEADLINE:?} only {finished} runs finished: {counts:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The schema the test's `--db` URL names.
fn schema(cli: &Cli) -> String {
    cli.location
        .rsplit_once("schema=")
        .expect("a PostgreSQL location with a schema")
        .1
        .to_string()
}

/// Rows of `query` (with `{schema}` replaced by the test's schema) as `|`-separated lines.
fn sql(cli: &Cli, query: &str) -> Vec<String> {
    common::psql(&query.replace("{schema}", &format!("\"{}\"", schema(cli))))
}

/// Everything that must hold once the load is done, whatever faults it met: every run
/// succeeded, the fan-out returned each child's result, each of the 2,000 steps applied its
/// side effect exactly once, and no step has two successful attempts.
fn assert_exactly_once(cli: &Cli, fan_out: &str, counts: &BTreeMap<String, usize>) {
    assert_eq!(
        counts.get("succeeded").copied(),
        Some(PLAIN + 1),
        "every run succeeds: {counts:?}"
    );
    let run = cli.show(fan_out);
    let expected: Vec<Value> = (0..CHILDREN).map(|i| json!({"ok": i * 2})).collect();
    assert_eq!(run["output"], Value::Array(expected), "fan-out output");

    let counted = sql(
        cli,
        "SELECT convert_from(value, 'UTF8'), count(*) FROM {schema}.kv \
         WHERE key LIKE 'executions/%' GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        counted,
        vec![format!("1|{}", PLAIN + CHILDREN)],
        "executions per step (value|steps): every side effect applied exactly once"
    );
    let twice = sql(
        cli,
        "SELECT step_id FROM {schema}.attempts WHERE status = 'succeeded' \
         GROUP BY step_id HAVING count(*) > 1",
    );
    assert!(twice.is_empty(), "steps that succeeded twice: {twice:?}");
}

/// Steps an attempt of `worker` did not finish that another worker's later attempt completed.
fn taken_over_from(cli: &Cli, worker: &str) -> usize {
    let rows = sql(
        cli,
        &format!(
            "SELECT count(DISTINCT lost.step_id) FROM {{schema}}.attempts lost \
             JOIN {{schema}}.attempts done ON done.step_id = lost.step_id \
             AND done.attempt > lost.attempt AND done.status = 'succeeded' \
             AND done.worker_id <> lost.worker_id \
             WHERE lost.worker_id = '{worker}' AND lost.status <> 'succeeded'"
        ),
    );
    rows[0].parse().unwrap()
}

#[test]
fn killed_and_stopped_workers_lose_nothing_and_apply_nothing_twice() {
    let (cli, fan_out) = loaded();
    let started = Instant::now();
    // A dies: a minute's lease, but a 500 ms heartbeat finds it dead within seconds.
    let a = serve(&cli, "60s", "500ms");
    // B freezes: its 2 s leases expire and are taken over; its 2 s heartbeat makes it stale
    // after 6 s (dead only after 12 s).
    let b = serve(&cli, "2s", "2s");
    let others = [serve(&cli, "5s", "500ms"), serve(&cli, "5s", "500ms")];

    // Mid-load: a few hundred steps done, and A and B each holding some.
    wait_finished(&cli, 200, started);
    let a_id = a.worker(&cli)["id"].as_str().unwrap().to_string();
    let b_id = b.worker(&cli)["id"].as_str().unwrap().to_string();
    b.signal("-STOP");
    a.kill();

    // Both show for what they are: A dead, B stale (it has not missed enough heartbeats to be
    // declared dead).
    let faulted = Instant::now();
    loop {
        let (a_row, b_row) = (
            cli.worker("id", a_id.as_str()),
            cli.worker("id", b_id.as_str()),
        );
        if a_row["state"] == "dead" && b_row["state"] == "stale" {
            break;
        }
        assert!(
            faulted.elapsed() < Duration::from_secs(30),
            "A should be dead and B stale: {a_row:#} {b_row:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // B wakes up: whatever it was running finishes under an ended lease and is refused.
    b.signal("-CONT");

    let counts = wait_finished(&cli, PLAIN + 1, started);
    assert_exactly_once(&cli, &fan_out, &counts);
    assert!(
        taken_over_from(&cli, &a_id) > 0,
        "the steps the killed worker held were run by others"
    );
    assert!(
        taken_over_from(&cli, &b_id) > 0,
        "the steps the stopped worker held were run by others"
    );
    for serve in others.iter().chain([&b]) {
        assert!(serve.log().contains("completed"), "{}", serve.log());
    }
    let a_row = cli.worker("id", a_id.as_str());
    assert_eq!(a_row["state"], "dead", "{a_row}");
    assert_eq!(a_row["holding"], json!([]), "{a_row}");
}

/// The version directory of the local PostgreSQL cluster (`/etc/postgresql/<version>`).
fn local_cluster_version() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("a local PostgreSQL cluster (/etc/postgresql)")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version")
}

#[test]
#[ignore = "restarts the PostgreSQL server every other test uses: scripts/test.sh runs it alone"]
fn a_postgres_restart_mid_load_loses_nothing_and_applies_nothing_twice() {
    let (cli, fan_out) = loaded();
    let started = Instant::now();
    let serves: Vec<Serve> = (0..4).map(|_| serve(&cli, "5s", "500ms")).collect();
    wait_finished(&cli, 300, started);

    let restarted = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &local_cluster_version(),
            "main",
            "restart",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(restarted.success(), "pg_ctlcluster restart");

    let counts = wait_finished(&cli, PLAIN + 1, started);
    assert_exactly_once(&cli, &fan_out, &counts);
    // A worker that met the outage says so once per operation that failed, and once when it
    // works again; sqlx's own warning per broken connection is not repeated. (Whether a worker
    // meets the outage at all depends on having a statement in flight at the restart: a pool
    // that finds a connection broken reconnects without an error once the server is back.)
    let mut noticed = 0;
    for serve in &serves {
        let log = serve.log();
        let lost = log.matches("retrying until the database answers").count()
            + log.matches("failed; trying again at every turn").count();
        let back = log.matches("the database answers again").count()
            + log.matches("works again after").count();
        assert_eq!(lost, back, "each outage noticed ends:\n{log}");
        assert!(
            !log.contains("error occurred while testing the connection"),
            "{log}"
        );
        noticed += usize::from(lost > 0);
    }
    eprintln!("{noticed} of 4 workers met the restart with a statement in flight");
    for mut serve in serves {
        assert!(
            serve.child.try_wait().unwrap().is_none(),
            "serve rode the restart out instead of exiting:\n{}",
            serve.log()
        );
        assert!(serve.terminate().success());
    }
}
