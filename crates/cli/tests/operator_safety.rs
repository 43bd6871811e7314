//! What operators rely on, through the real binary: a corrupt compile cache never crashes the
//! host, a replayed bundle cannot outlive the host's limits, the database file is self-contained
//! after a clean exit and can be backed up live, a foreign database is never touched, database
//! URLs are parsed or refused clearly, and flags that cannot work are refused.

use hypergraph_testing as common;

use std::time::Duration;

use common::cli::{files_ending, fixture_path, wait_within, Cli, DEADLINE};
use serde_json::Value;

#[test]
fn a_corrupted_compile_cache_entry_is_detected_and_recompiled() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture_path("counter.wat"), "--name", "counter"]);
    let first = cli.json(&["run", "counter/count", "--wait", "--json"]);
    assert_eq!(first["output"], 1, "{first}");
    let cache = cli.dir.path().join("hypergraph-cache");
    let entries = files_ending(&cache, ".cwasm");
    assert_eq!(
        entries.len(),
        1,
        "one cached component in {}",
        cache.display()
    );
    let entry = &entries[0];
    // 512 bytes overwritten in the middle of the compiled code.
    let mut bytes = std::fs::read(entry).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 512] {
        *byte = 0xcc;
    }
    std::fs::write(entry, &bytes).unwrap();

    for _ in 0..2 {
        let again = cli.json(&["run", "counter/count", "--wait", "--json"]);
        assert_eq!(again["status"], "succeeded", "{again}");
        assert_eq!(again["output"], 1, "{again}");
    }
    // The entry was recompiled and rewritten: it is whole again.
    assert_ne!(std::fs::read(entry).unwrap(), bytes);
    let serve = cli.serve(&[]);
    let id = cli.submit("counter/count", Value::Null);
    assert_eq!(cli.wait_finished(&id)["status"], "succeeded");
    assert!(serve.terminate().success());
}

#[test]
fn a_replayed_bundle_is_bounded_by_the_hosts_limits_whatever_it_says() {
    let cli = Cli::new();
    cli.ok(&[
        "deploy",
        &fixture_path("hostile.wat"),
        "--name",
        "hostile",
        "--timeout",
        "1s",
    ]);
    let spun = cli.expect(1, &["run", "hostile/spin", "--wait", "--json"]);
    let spun: Value = serde_json::from_str(&spun).unwrap();
    assert_eq!(spun["error"]["kind"], "timeout", "{spun}");
    let id = spun["run_id"].as_str().unwrap();
    let path = cli.dir.path().join("spin.hgbundle");
    cli.ok(&["runs", "export", id, "--output", path.to_str().unwrap()]);

    // A hostile bundle: valid framing and checksums, a policy asking for 10^15 ms.
    let mut bundle = hypergraph_runtime::bundle::read(&path).unwrap();
    bundle.run.policy.timeout_ms = Some(1_000_000_000_000_000);
    bundle.run.policy.memory_limit_bytes = Some(4 << 30);
    std::fs::remove_file(&path).unwrap();
    hypergraph_runtime::bundle::write(&bundle, &path).unwrap();

    let child = cli
        .bare()
        .args([
            "replay",
            path.to_str().unwrap(),
            "--timeout",
            "1s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within(child, DEADLINE, &["replay"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("replaying with this host's 1s"),
        "the cap is said: {stderr}"
    );
    assert!(stderr.contains("--memory"), "{stderr}");
    // Capped at the 1 s it was recorded with, the replay times out the same way.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["attempts"][0]["verdict"], "identical", "{report}");
}

#[test]
fn the_database_file_alone_holds_everything_after_a_clean_exit() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture_path("counter.wat"), "--name", "counter"]);
    let run = cli.json(&["run", "counter/count", "--wait", "--json"]);
    let id = run["run_id"].as_str().unwrap().to_string();
    let serve = cli.serve(&[]);
    let queued = cli.submit("counter/count", Value::Null);
    cli.wait_finished(&queued);
    assert!(serve.terminate().success());

    // Only the main file is copied, as an operator copying "the database" would.
    let copy = tempfile::tempdir().unwrap();
    let lone = copy.path().join("hg.db");
    std::fs::copy(&cli.db, &lone).unwrap();
    let listed = Cli::new_at(&lone).json(&["runs", "list", "--json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id.as_str()) && ids.contains(&queued.as_str()),
        "{listed}"
    );
}

#[test]
fn a_live_database_is_backed_up_consistently() {
    let cli = Cli::new();
    cli.ok(&["deploy", &fixture_path("counter.wat"), "--name", "counter"]);
    let serve = cli.serve(&[]);
    let ids: Vec<String> = (0..5)
        .map(|_| cli.submit("counter/count", Value::Null))
        .collect();
    for id in &ids {
        cli.wait_finished(id);
    }
    // While `serve` holds the database open.
    let backup = cli.dir.path().join("backup.db");
    let said = cli.json(&["db", "backup", backup.to_str().unwrap(), "--json"]);
    assert!(said["bytes"].as_u64().unwrap() > 0, "{said}");
    let again = cli.stderr_of_failure(2, &["db", "backup", backup.to_str().unwrap()]);
    assert!(again.contains("exists already"), "{again}");
    assert!(serve.terminate().success());

    let restored = Cli::new_at(&backup);
    for id in &ids {
        let run = restored.show(id);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["output"], 1, "{run}");
    }
    let tasks = restored.json(&["tasks", "--json"]);
    assert_eq!(tasks[0]["name"], "counter/count");
}

#[test]
fn a_foreign_sqlite_database_is_refused_and_left_untouched() {
    let cli = Cli::new();
    let foreign = cli.dir.path().join("shop.db");
    {
        let conn = rusqlite_open(&foreign);
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); \
             INSERT INTO customers (name) VALUES ('ada');",
        )
        .unwrap();
    }
    let before = digest(&std::fs::read(&foreign).unwrap());
    let shop = Cli::new_at(&foreign);
    let err = shop.stderr_of_failure(2, &["tasks"]);
    assert!(
        err.contains("is not a Hypergraph database") && err.contains("customers"),
        "{err}"
    );
    assert_eq!(
        digest(&std::fs::read(&foreign).unwrap()),
        before,
        "untouched"
    );
    assert!(
        !foreign.with_extension("db-wal").exists(),
        "not even switched to WAL"
    );

    // Another application's mark is refused too, even with no tables.
    let marked = cli.dir.path().join("marked.db");
    rusqlite_open(&marked)
        .execute_batch("PRAGMA application_id = 1234;")
        .unwrap();
    let err = Cli::new_at(&marked).stderr_of_failure(2, &["tasks"]);
    assert!(err.contains("belongs to another application"), "{err}");

    // An empty file and a Hypergraph database are fine; the database is marked as one.
    cli.ok(&["tasks"]);
    let id: i64 = rusqlite_open(&cli.db)
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, 0x4847_5048);
}

#[test]
fn database_urls_are_understood_or_refused_clearly() {
    let cli = Cli::new();
    let nested = cli.dir.path().join("data/hg.db");
    let url = format!("sqlite://{}", nested.display());
    let out = cli
        .bare()
        .env("HYPERGRAPH_DB", &url)
        .args(["tasks", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(nested.exists(), "the database is where the URL says");
    assert!(
        !cli.dir.path().join("sqlite:").exists(),
        "no directory named `sqlite:`"
    );
    for (db, says) in [
        ("postgres://me@127.0.0.1/test", "PostgreSQL"),
        ("mysql://me@127.0.0.1/test", "`mysql`"),
        ("sqlite://", "names no file"),
    ] {
        let out = cli.bare().args(["--db", db, "tasks"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{db}: {stderr}");
        assert!(stderr.contains(says), "{db}: {stderr}");
    }
}

#[test]
fn concurrency_that_cannot_work_is_refused() {
    let cli = Cli::new();
    for flag in ["0", "5000", "lots"] {
        for command in ["serve", "worker"] {
            let err = cli.stderr_of_failure(2, &[command, "--concurrency", flag]);
            assert!(err.contains("--concurrency"), "{command} {flag}: {err}");
        }
    }
}

#[test]
fn event_payloads_come_from_files_or_stdin_and_names_are_checked() {
    let cli = Cli::new();
    let file = cli.dir.path().join("payload.json");
    std::fs::write(&file, r#"{"approved": true}"#).unwrap();
    let sent = cli.json(&[
        "events",
        "send",
        "bell",
        "--payload",
        &format!("@{}", file.display()),
        "--json",
    ]);
    assert_eq!(sent["event"], "bell", "{sent}");
    let mut piped = cli
        .cmd(&["events", "send", "bell", "--payload", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = piped.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, br#"[1, 2, 3]"#).unwrap();
    drop(stdin);
    let out = wait_within(piped, Duration::from_secs(30), &["events", "send"]);
    assert_eq!(out.status.code(), Some(0));
    let bad = cli.stderr_of_failure(2, &["events", "send", "bell", "--payload", "{oops"]);
    assert!(bad.contains("--payload is not valid JSON"), "{bad}");
    let empty = cli.stderr_of_failure(2, &["events", "send", ""]);
    assert!(empty.contains("must not be empty"), "{empty}");
    let control = cli.stderr_of_failure(2, &["events", "send", "a\tb"]);
    assert!(control.contains("control characters"), "{control}");
    let long = "x".repeat(300);
    let long = cli.stderr_of_failure(2, &["events", "send", &long]);
    assert!(long.contains("at most 256 bytes"), "{long}");
    let missing = cli.stderr_of_failure(2, &["events", "send", "x", "--payload", "@/no/such"]);
    assert!(missing.contains("/no/such"), "{missing}");
}

fn digest(bytes: &[u8]) -> String {
    hypergraph_runtime::engine::digest(bytes)
}

fn rusqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
