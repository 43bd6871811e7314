//! `hypergraph db copy` end to end through the binary: a history made on SQLite by real
//! components (a workflow fanning out to children that count in kv, a retried child, a failed
//! run, durable timers, events, logs, two versions of a deployment, a run still queued) moves into
//! a fresh PostgreSQL schema of the server named by `HYPERGRAPH_TEST_POSTGRES`; there every
//! copied run replays identical, `runs show`, `runs list` and `runs logs` answer as on SQLite,
//! and work goes on. And what it refuses: a non-empty target, an unreachable server, a missing
//! source (created by nothing), a target that is not PostgreSQL.
//!
//! `copy_speed` is ignored by default: it measures the copy of a database of real runs,
//! `HYPERGRAPH_COPY_RUNS` of them (10,000 by default):
//! `cargo test --release -p hypergraph --test db_copy -- --ignored --nocapture copy_speed`.

use hypergraph_testing as common;

use common::cli::{fixture_path, Cli};
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::Policy;
use hypergraph_store::conformance::PgBackend;
use serde_json::{json, Value};

/// A fresh schema on the PostgreSQL test server, dropped with everything in it when the test
/// ends, passed or not.
struct Schema {
    server: String,
    name: String,
    url: String,
}

impl Schema {
    fn new() -> Schema {
        let server = PgBackend::server().unwrap();
        let name = PgBackend::fresh_schema();
        let url = PgBackend::url_with_schema(&server, &name);
        Schema { server, name, url }
    }

    /// Commands on this schema's database.
    fn cli(&self) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        Cli {
            db: dir.path().join("unused.db"),
            dir,
            location: self.url.clone(),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        PgBackend::drop_schema(self.server.clone(), self.name.clone());
    }
}

/// `run <task> --input <input> --wait --json` that must end with `status`: its run id.
fn run(cli: &Cli, task: &str, input: Value, extra: &[&str], status: &str) -> String {
    let input = input.to_string();
    let mut args = vec!["run", task, "--input", &input, "--wait", "--json"];
    args.extend_from_slice(extra);
    let out = cli.run(&args);
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{task}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(result["status"], status, "{task}: {result}");
    result["run_id"].as_str().unwrap().to_string()
}

/// `runs list --json` with `filter`, every run.
fn list(cli: &Cli, filter: &[&str]) -> Value {
    let mut args = vec!["runs", "list", "--limit", "1000", "--json"];
    args.extend_from_slice(filter);
    cli.json(&args)
}

#[test]
fn a_sqlite_history_moves_to_postgresql_and_replays_identical() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("hg.db");
    let sqlite = Cli::new_at(&db);
    sqlite.deploy_guest("flow", "flow", &["--max-attempts", "3"]);
    let flood = fixture_path("log-flood.wat");
    sqlite.ok(&["deploy", &flood, "--name", "flood"]);
    sqlite.ok(&["deploy", &flood, "--name", "flood", "--timeout", "5s"]);

    let fan_out = run(
        &sqlite,
        "flow/fan-out",
        json!({"prefix": "f", "n": 6, "sleep-ms": 0, "fail-index": 2}),
        &["--meta", "team=docs"],
        "succeeded",
    );
    let counted = run(&sqlite, "flow/executions", json!("f/2"), &[], "succeeded");
    let flooded = run(
        &sqlite,
        "flood/flood",
        json!(3),
        &["--meta", "team=ops"],
        "succeeded",
    );
    let napped = run(&sqlite, "flow/nap", json!(20), &[], "succeeded");
    sqlite.ok(&["events", "send", "approved", "--payload", r#"{"by":"ada"}"#]);
    let timed_out = run(
        &sqlite,
        "flow/await-event",
        json!({"name": "never", "timeout-ms": 50}),
        &[],
        "succeeded",
    );
    let failed = run(&sqlite, "flow/broken", json!(7), &[], "failed");
    let queued = sqlite.submit("flood/flood", json!(1));
    let finished = [&fan_out, &counted, &flooded, &napped, &timed_out, &failed];

    let target = Schema::new();
    let copied = copy(&sqlite, db.to_str().unwrap(), &target.url);
    assert_eq!(copied["tables"]["runs"], 7, "{copied}");
    assert_eq!(copied["tables"]["deployments"], 3, "{copied}");
    assert_eq!(copied["tables"]["events"], 1, "{copied}");
    assert!(copied["tables"]["kv"].as_u64().unwrap() >= 6, "{copied}");
    assert_eq!(
        copied["tables"]["steps"], 13,
        "7 of the fan-out, 1 per other run: {copied}"
    );
    assert_eq!(copied["next_event_seq"], 2, "{copied}");
    let pg = target.cli();

    // The same answers on both.
    for filter in [&[][..], &["--meta", "team=docs"], &["--task", "flood"]] {
        assert_eq!(
            list(&sqlite, filter),
            list(&pg, filter),
            "runs list {filter:?}"
        );
    }
    assert_eq!(list(&pg, &[]).as_array().unwrap().len(), 7);
    for id in finished.iter().copied().chain([&queued]) {
        assert_eq!(sqlite.show(id), pg.show(id), "runs show {id}");
        assert_eq!(
            sqlite.json(&["runs", "logs", id, "--json"]),
            pg.json(&["runs", "logs", id, "--json"]),
            "runs logs {id}"
        );
        assert_eq!(
            sqlite.ok(&["runs", "show", id]),
            pg.ok(&["runs", "show", id]),
            "runs show {id}"
        );
    }
    // Every copied run replays identical from PostgreSQL, every attempt of every step.
    for id in finished {
        let replay = pg.json(&["runs", "replay", id, "--json"]);
        let attempts = replay["attempts"].as_array().unwrap();
        assert!(!attempts.is_empty(), "{replay}");
        assert!(
            attempts.iter().all(|a| a["verdict"] == "identical"),
            "{id}: {replay}"
        );
        let text = pg.ok(&["runs", "replay", id]);
        assert!(text.trim_end().ends_with("identical"), "{text}");
    }
    let fan_out_steps = pg.show(&fan_out)["steps"].as_array().unwrap().len();
    assert_eq!(fan_out_steps, 7, "the workflow and its 6 children");

    // A second copy into it is refused, and changes nothing.
    let refused = sqlite.stderr_of_failure(
        2,
        &[
            "db",
            "copy",
            "--from",
            db.to_str().unwrap(),
            "--to",
            &target.url,
        ],
    );
    assert!(
        refused.contains("already holds Hypergraph data") && refused.contains("runs: 7"),
        "{refused}"
    );
    assert_eq!(list(&sqlite, &[]), list(&pg, &[]));

    // Work goes on on PostgreSQL: the queued run runs, kv counts on from the copied values,
    // events are numbered after the copied one.
    let stats = pg.worker_until_idle(&[]);
    assert_eq!(stats["succeeded"], 1, "{stats}");
    assert_eq!(pg.show(&queued)["status"], "succeeded");
    run(
        &pg,
        "flow/fan-out",
        json!({"prefix": "f", "n": 6, "sleep-ms": 0, "fail-index": null}),
        &[],
        "succeeded",
    );
    let count = pg.json(&[
        "run",
        "flow/executions",
        "--input",
        r#""f/0""#,
        "--wait",
        "--json",
    ]);
    assert_eq!(
        count["output"], 2,
        "one execution copied, one on PostgreSQL: {count}"
    );
    let sent = pg.json(&["events", "send", "approved", "--json"]);
    assert_eq!(sent["seq"], 2, "{sent}");
}

/// `db copy --from <from> --to <to> --json`, which must succeed: its report.
fn copy(cli: &Cli, from: &str, to: &str) -> Value {
    cli.json(&["db", "copy", "--from", from, "--to", to, "--json"])
}

/// `db copy --from <from> --to <to>`, which must fail with a usage error (exit 2): its stderr.
fn copy_fails(cli: &Cli, from: &str, to: &str) -> String {
    cli.stderr_of_failure(2, &["db", "copy", "--from", from, "--to", to])
}

#[test]
fn db_copy_refuses_clearly_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let cli = Cli::new_at(&home.path().join("hg.db"));
    let target = Schema::new();

    let missing = home.path().join("missing.db");
    let err = copy_fails(&cli, missing.to_str().unwrap(), &target.url);
    assert!(err.contains("there is no database at"), "{err}");
    assert!(!missing.exists(), "a missing source is not created");

    cli.ok(&["deploy", &fixture_path("log-flood.wat"), "--name", "flood"]);
    let from = home.path().join("hg.db");
    let from = from.to_str().unwrap();
    let err = copy_fails(&cli, from, "postgres://postgres@127.0.0.1:1/test");
    assert!(
        err.contains("cannot connect to the PostgreSQL database")
            && err.contains("check that PostgreSQL is running"),
        "{err}"
    );
    let err = copy_fails(&cli, from, home.path().join("b.db").to_str().unwrap());
    assert!(
        err.contains("not a PostgreSQL database") && err.contains("db backup"),
        "{err}"
    );
    assert!(!home.path().join("b.db").exists());

    let not_ours = home.path().join("notes.txt");
    std::fs::write(&not_ours, "not a database").unwrap();
    let err = copy_fails(&cli, not_ours.to_str().unwrap(), &target.url);
    assert!(err.contains("is not a database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&not_ours).unwrap(),
        "not a database"
    );

    // A source in use copies as of one moment, with a warning naming the live worker.
    let serve = cli.serve(&[]);
    let started = std::time::Instant::now();
    while cli
        .json(&["workers", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["state"] != "live")
    {
        assert!(
            started.elapsed() < common::cli::DEADLINE,
            "serve never registered"
        );
        std::thread::sleep(common::cli::POLL);
    }
    let out = cli.run(&["db", "copy", "--from", from, "--to", &target.url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: 1 worker(s) were live") && stderr.contains("Stop them"),
        "{stderr}"
    );
    serve.kill();
}

/// The time `db copy` takes through the binary for a SQLite database of real runs: half of them
/// `flood/flood` (4 log lines each), half `calls/clock` (8 journaled clock reads each), each
/// with a metadata tag, executed by a real worker.
#[test]
#[ignore]
fn copy_speed() {
    let runs: usize = std::env::var("HYPERGRAPH_COPY_RUNS").map_or(10_000, |n| n.parse().unwrap());
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("hg.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let hg = common::open_at(db.to_str().unwrap(), home.path()).await;
        common::deploy(&hg, "flood", "log-flood.wat", Policy::default()).await;
        common::deploy(&hg, "calls", "host-calls.wat", Policy::default()).await;
        let requests: Vec<RunRequest> = (0..runs)
            .map(|i| RunRequest {
                task: if i % 2 == 0 {
                    "flood/flood"
                } else {
                    "calls/clock"
                }
                .into(),
                input: json!(if i % 2 == 0 { 4 } else { 8 }),
                meta: vec![("batch".into(), (i / 1000).to_string())],
            })
            .collect();
        hg.submit_many(&requests).await.unwrap();
        common::drain(&hg).await;
        hg.store.close().await.unwrap();
    });
    let size = std::fs::metadata(&db).unwrap().len();
    let target = Schema::new();
    let cli = Cli::new_at(&db);
    let started = std::time::Instant::now();
    let copied = copy(&cli, db.to_str().unwrap(), &target.url);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(copied["tables"]["runs"], runs as u64, "{copied}");
    println!(
        "db copy of {runs} runs ({} MiB of SQLite; rows: {}): {wall:.2} s wall (process \
         included), {:.2} s copying",
        size >> 20,
        copied["tables"],
        copied["seconds"].as_f64().unwrap()
    );
}
