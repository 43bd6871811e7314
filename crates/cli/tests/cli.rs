//! End-to-end tests that drive the real `hypergraph` binary as a user would.

use hypergraph_testing as common;

use std::process::Command;

use common::cli::{fixture_path as fixture, Cli};
use serde_json::{json, Value};

#[test]
fn deploy_run_and_inspect_through_the_binary() {
    let cli = Cli::new();
    let deployed = cli.ok(&["deploy", &fixture("log-flood.wat"), "--name", "flood"]);
    assert!(deployed.contains("deployed flood version 1"), "{deployed}");
    assert!(
        deployed.contains("flood/flood") && deployed.contains("func(n: u32)"),
        "{deployed}"
    );

    let tasks = cli.json(&["tasks", "--json"]);
    assert_eq!(tasks[0]["name"], "flood/flood");
    assert_eq!(tasks[0]["signature"], "func(n: u32)");

    let result = cli.json(&[
        "run",
        "flood/flood",
        "--input",
        r#"{"n": 2}"#,
        "--meta",
        "env=test",
        "--meta",
        "team=a",
        "--wait",
        "--json",
    ]);
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["output"], Value::Null);
    assert_eq!(result["error"], Value::Null);
    let id = result["run_id"].as_str().unwrap().to_string();

    let shown = cli.json(&["runs", "show", &id, "--json"]);
    assert_eq!(shown["input"], json!({"n": 2}));
    assert_eq!(shown["meta"], json!({"env": "test", "team": "a"}));
    let step = &shown["steps"][0];
    for ts in ["created_at", "assigned_at", "started_at", "completed_at"] {
        assert!(step[ts].as_i64().is_some(), "{ts} missing: {step}");
    }
    assert!(step["worker_id"].as_str().unwrap().contains('/'));
    assert_eq!(step["digest"].as_str().unwrap().len(), 64);
    assert!(step["queue_us"].as_i64().is_some() && step["execution_us"].as_i64().is_some());
    assert_eq!(step["attempts"][0]["log_lines"], 2);

    let text = cli.ok(&["runs", "show", &id]);
    for needle in [
        "queue time",
        "execution",
        "worker",
        "component",
        "flood/flood",
        "env=test",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }

    let logs = cli.json(&["runs", "logs", &id, "--json"]);
    assert_eq!(logs.as_array().unwrap().len(), 2);
    assert_eq!(logs[0]["message"], "hello");
    assert!(cli.ok(&["runs", "logs", &id]).contains("hello"));

    let listed = cli.json(&[
        "runs",
        "list",
        "--meta",
        "env=test",
        "--status",
        "succeeded",
        "--json",
    ]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let none = cli.json(&["runs", "list", "--meta", "env=prod", "--json"]);
    assert!(none.as_array().unwrap().is_empty());
    let recent = cli.json(&["runs", "list", "--since", "1h", "--task", "flood", "--json"]);
    assert_eq!(recent[0]["id"], id.as_str());
    assert!(cli.ok(&["runs", "list"]).contains(&id));
}

#[test]
fn failures_exit_non_zero_with_clear_errors() {
    let cli = Cli::new();
    cli.ok(&[
        "deploy",
        &fixture("hostile.wat"),
        "--name",
        "hostile",
        "--timeout",
        "200ms",
    ]);

    let trap = cli.run(&["run", "hostile/trap", "--wait", "--json"]);
    assert_eq!(trap.status.code(), Some(1));
    let trap: Value = serde_json::from_slice(&trap.stdout).unwrap();
    assert_eq!(trap["status"], "failed");
    assert_eq!(trap["error"]["kind"], "trap");

    let spin = cli.run(&["run", "hostile/spin", "--wait"]);
    assert_eq!(spin.status.code(), Some(1));
    let text = String::from_utf8_lossy(&spin.stdout);
    assert!(
        text.contains("timeout") && text.contains("200 ms"),
        "{text}"
    );

    let unknown = cli.stderr_of_failure(2, &["run", "hostile/Trap", "--wait"]);
    assert!(unknown.contains("did you mean `hostile/trap`"), "{unknown}");
    let shape = cli.stderr_of_failure(2, &["run", "hostile/ok", "--input", r#"{"x": 1}"#]);
    assert!(
        shape.contains("invalid input for task `hostile/ok`"),
        "{shape}"
    );
    let json = cli.stderr_of_failure(2, &["run", "hostile/ok", "--input", "{oops"]);
    assert!(json.contains("not valid JSON"), "{json}");
    let missing = cli.stderr_of_failure(2, &["runs", "show", "no-such-run"]);
    assert!(missing.contains("run `no-such-run` not found"), "{missing}");
    let core = cli.stderr_of_failure(2, &["deploy", &fixture("core-module.wat"), "--name", "x"]);
    assert!(core.contains("not a component"), "{core}");
    let nofile = cli.stderr_of_failure(2, &["deploy", "/no/such/file.wasm", "--name", "x"]);
    assert!(nofile.contains("cannot read component file"), "{nofile}");
    let status = cli.stderr_of_failure(2, &["runs", "list", "--status", "done"]);
    assert!(status.contains("unknown status `done`"), "{status}");
}

#[test]
fn unusable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.txt");
    std::fs::write(
        &not_db,
        "this is not a database, just some text long enough",
    )
    .unwrap();
    let out = Command::new(common::cli::binary())
        .args(["--db", not_db.to_str().unwrap(), "tasks"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&not_db).unwrap(),
        "this is not a database, just some text long enough",
        "the file must be left untouched"
    );
}

#[test]
fn an_unreachable_postgres_server_is_reported_with_its_cause_at_once() {
    // Nothing listens on port 1: the first connection is refused, and that is the error, not a
    // connection pool giving up after its acquire timeout.
    for url in [
        "postgres://postgres@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?schema=hg",
    ] {
        let out = Command::new(common::cli::binary())
            .args(["--db", url, "runs", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot connect to the PostgreSQL database")
                && stderr.contains("Connection refused")
                && stderr.contains("check that PostgreSQL is running")
                && !stderr.contains("pool timed out"),
            "{stderr}"
        );
    }
}

/// Two processes executing runs from one database file at once lose nothing and run nothing twice.
#[test]
fn two_processes_share_one_database_without_losing_runs() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture("counter.wat"), "--name", "counter"]);
    let runs = 200;
    let mut ids = Vec::new();
    for _ in 0..runs {
        ids.push(cli.ok(&["run", "counter/count"]).trim().to_string());
    }
    // Two workers drain the queue concurrently, while two more processes submit-and-wait.
    let spawn = |args: &[&str]| {
        cli.cmd(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let workers = vec![
        spawn(&["worker", "--until-idle", "--concurrency", "4"]),
        spawn(&["worker", "--until-idle", "--concurrency", "4"]),
    ];
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = cli.cmd(&["run", "counter/count", "--wait", "--json"]);
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let out = cmd.output().unwrap();
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        assert!(out.status.success(), "run --wait failed: {stderr}");
                        serde_json::from_slice::<Value>(&out.stdout).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a worker failed: {stderr}");
    }
    for waiter in waiters {
        for result in waiter.join().unwrap() {
            assert_eq!(result["status"], "succeeded");
            assert_eq!(result["output"], 1);
            assert_eq!(result["attempts"], 1);
        }
    }
    let all = cli.json(&["runs", "list", "--limit", "1000", "--json"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), runs + 20);
    for run in all {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempts"], 1, "a run executed more than once: {run}");
    }
    for id in &ids {
        assert!(all.iter().any(|r| r["id"] == id.as_str()), "run {id} lost");
    }
}

#[test]
fn run_without_wait_queues_for_a_worker() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture("counter.wat"), "--name", "counter"]);
    let queued = cli.json(&["run", "counter/count", "--json"]);
    assert_eq!(queued["status"], "queued");
    let id = queued["run_id"].as_str().unwrap();
    assert_eq!(
        cli.json(&["runs", "show", id, "--json"])["status"],
        "queued"
    );
    let stats = cli.json(&["worker", "--until-idle", "--json"]);
    assert_eq!(stats["succeeded"], 1);
    assert_eq!(cli.json(&["runs", "show", id, "--json"])["output"], 1);
}

#[test]
fn run_inputs_submits_one_run_per_line_or_none() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture("log-flood.wat"), "--name", "flood"]);
    let file = cli.dir.path().join("inputs.jsonl");
    let path = file.to_str().unwrap();

    // One wrong line: nothing is queued, and the error says which line.
    std::fs::write(&file, "{\"n\": 1}\n{\"n\": \"two\"}\n{\"n\": 3}\n").unwrap();
    let err = cli.stderr_of_failure(2, &["run", "flood/flood", "--inputs", path]);
    assert!(err.contains("run 2 of 3") && err.contains("n"), "{err}");
    std::fs::write(&file, "{\"n\": 1}\n{oops\n").unwrap();
    let err = cli.stderr_of_failure(2, &["run", "flood/flood", "--inputs", path]);
    assert!(err.contains("line 2 is not valid JSON"), "{err}");
    assert_eq!(cli.json(&["runs", "list", "--json"]), json!([]));
    let err = cli.stderr_of_failure(2, &["run", "flood/flood", "--inputs", path, "--wait"]);
    assert!(err.contains("--wait"), "{err}");

    std::fs::write(&file, "{\"n\": 1}\n{\"n\": 2}\n3\n").unwrap();
    let queued = cli.json(&[
        "run",
        "flood/flood",
        "--inputs",
        path,
        "--meta",
        "batch=1",
        "--json",
    ]);
    assert_eq!(queued["status"], "queued");
    let ids: Vec<&str> = queued["run_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{queued}");
    let stats = cli.worker_until_idle(&[]);
    assert_eq!(stats["succeeded"], 3, "{stats}");
    for (id, n) in ids.iter().zip([1, 2, 3]) {
        let run = cli.show(id);
        assert_eq!(run["input"], json!({"n": n}), "{run}");
        assert_eq!(run["meta"], json!({"batch": "1"}), "{run}");
    }
    // Without --json: one id per line, in line order.
    let text = cli.ok(&["run", "flood/flood", "--inputs", path]);
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn replay_and_check_upgrade_through_the_binary() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture("log-flood.wat"), "--name", "flood"]);
    let run = cli.json(&["run", "flood/flood", "--input", "2", "--wait", "--json"]);
    let id = run["run_id"].as_str().unwrap();

    let same = cli.ok(&["runs", "replay", id]);
    assert!(
        same.contains("  flood/flood attempt #1: identical"),
        "{same}"
    );
    assert!(same.trim_end().ends_with("identical"), "{same}");
    let json = cli.json(&["runs", "replay", id, "--json"]);
    assert_eq!(json["attempts"][0]["verdict"], "identical");
    assert_eq!(json["attempts"][0]["task"], "flood/flood");

    let breaking = fixture("log-flood-breaking.wat");
    let diverged = cli.expect(1, &["runs", "replay", id, "--component", &breaking]);
    assert!(
        diverged.contains("diverged at journal entry 0"),
        "{diverged}"
    );
    assert!(
        diverged.contains("hullo") && diverged.contains("hello"),
        "{diverged}"
    );

    let gate = cli.ok(&[
        "check-upgrade",
        "flood",
        &fixture("log-flood-compatible.wat"),
    ]);
    assert!(gate.contains("1 identical, 0 diverged"), "{gate}");
    let caught = cli.expect(1, &["check-upgrade", "flood", &breaking]);
    assert!(
        caught.contains("DIVERGED") && caught.contains("0 identical, 1 diverged"),
        "{caught}"
    );
    let summary = cli.run(&["check-upgrade", "flood", &breaking, "--json"]);
    assert_eq!(summary.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(summary["diverged"], 1);

    let missing = cli.stderr_of_failure(2, &["runs", "replay", "no-such-run"]);
    assert!(missing.contains("run `no-such-run` not found"), "{missing}");
}

#[test]
fn a_bundle_replays_identically_on_a_machine_without_the_database() {
    let source = Cli::new();
    source.ok(&["deploy", &fixture("hostile.wat"), "--name", "hostile"]);
    source.ok(&["deploy", &fixture("log-flood.wat"), "--name", "flood"]);
    let dir = tempfile::tempdir().unwrap();
    let mut bundles = Vec::new();
    for (task, input) in [("flood/flood", "3"), ("hostile/trap", "null")] {
        let run = source.run(&["run", task, "--input", input, "--wait", "--json"]);
        let run: Value = serde_json::from_slice(&run.stdout).unwrap();
        let id = run["run_id"].as_str().unwrap().to_string();
        let path = dir.path().join(format!("{id}.hgbundle"));
        source.ok(&["runs", "export", &id, "-o", path.to_str().unwrap()]);
        bundles.push(path);
    }

    // Elsewhere: no database, no cache, an empty home.
    let home = tempfile::tempdir().unwrap();
    let replay = |args: &[&str]| {
        Command::new(common::cli::binary())
            .args(args)
            .env_remove("HYPERGRAPH_DB")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    for bundle in &bundles {
        let out = replay(&["replay", bundle.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.trim_end().ends_with("identical"), "{text}");
    }
    let breaking = fixture("log-flood-breaking.wat");
    let out = replay(&[
        "replay",
        bundles[0].to_str().unwrap(),
        "--component",
        &breaking,
    ]);
    assert_eq!(out.status.code(), Some(1));

    // Damaged bundles are refused with a clear error and leave nothing behind.
    let good = std::fs::read(&bundles[0]).unwrap();
    let damaged = dir.path().join("damaged.hgbundle");
    let mut flipped = good.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x20;
    for (bytes, message) in [
        (good[..good.len() / 2].to_vec(), "truncated"),
        (flipped, "corrupted"),
        (b"hello".to_vec(), "not a hypergraph bundle"),
    ] {
        std::fs::write(&damaged, &bytes).unwrap();
        let out = replay(&["replay", damaged.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(home.path()).unwrap().count(),
        0,
        "replaying a bundle must create no database or cache"
    );
}

#[test]
fn help_lists_every_command() {
    let cli = Cli::new();
    let help = cli.ok(&["--help"]);
    for command in [
        "deploy",
        "tasks",
        "run",
        "runs",
        "worker",
        "check-upgrade",
        "build",
        "demo",
    ] {
        assert!(help.contains(command), "{command} missing from help");
    }
}

/// Output into a pipe whose reader is gone (`hypergraph tasks | head -0`) ends the command
/// quietly with status 141, like SIGPIPE for C tools, instead of a panic.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let cli = Cli::new();
    cli.ok(&["tasks"]);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cli
        .cmd(&["tasks"])
        .stdout(writer)
        .output()
        .expect("hypergraph runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn guests_that_break_the_component_abi_fail_as_traps_not_host_errors() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture("abi-violations.wat"), "--name", "abi"]);
    for (task, says) in [
        ("abi/bad-utf8", "utf-8"),
        ("abi/out-of-bounds", "out of bounds"),
        ("abi/bad-discriminant", "discriminant"),
    ] {
        let out = cli.expect(1, &["run", task, "--wait", "--json"]);
        let run: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(run["error"]["kind"], "trap", "{task}: {run}");
        let message = run["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains(says), "{task}: {message}");
    }
}

#[test]
fn check_upgrade_with_the_same_component_passes_a_cancelled_run() {
    let cli = Cli::new();
    let hostile = fixture("hostile.wat");
    cli.ok(&["deploy", &hostile, "--name", "hostile"]);
    let ok = cli.json(&["run", "hostile/ok", "--wait", "--json"]);
    assert_eq!(ok["status"], "succeeded");
    let id = cli.submit("hostile/spin", Value::Null);
    let serve = cli.serve(&[]);
    cli.wait_until(&id, "the spin to run", |run| {
        run["steps"][0]["status"] == "running"
    });
    cli.ok(&["runs", "cancel", &id]);
    cli.wait_until(&id, "the attempt to be cancelled", |run| {
        run["steps"][0]["attempts"][0]["status"] == "cancelled"
    });
    assert!(serve.terminate().success());

    let report = cli.json(&["check-upgrade", "hostile", &hostile, "--json"]);
    assert_eq!(report["diverged"], 0, "{report}");
    assert_eq!(report["identical"], 1, "{report}");
    let cancelled = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id.as_str())
        .expect("the cancelled run is in the report");
    assert_eq!(
        cancelled["attempts"][0]["verdict"], "skipped",
        "{cancelled}"
    );
    assert!(
        cancelled["attempts"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{cancelled}"
    );
    assert!(cli
        .ok(&["check-upgrade", "hostile", &hostile])
        .contains("cancelled"));
}
