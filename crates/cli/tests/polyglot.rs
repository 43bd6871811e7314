//! Tasks in Python, JavaScript, C and Go, end to end through the real `hypergraph` binary: every
//! component is built by `hypergraph build` (toolchains installed on first use), deployed and run
//! as a user would, and each language is held to the host's guarantees: a fresh instance per run,
//! journaled non-determinism that replays `identical` (from the database and from a bundle),
//! workflows that resume without re-running completed children (a SIGKILLed server included),
//! and failures that say what happened (a Python traceback, a JavaScript stack, a C trap, a Go
//! panic).
//! `hypergraph new` projects in every language build and run unchanged, and one Python workflow
//! calls a Rust, a JavaScript and a C task in one run. JavaScript and Go tasks call an allowlisted
//! HTTP server on 127.0.0.1 through their SDKs' wrappers of `wasi:http`.

use hypergraph_testing as common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::repo;
use serde_json::{json, Value};

/// Longest any single wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// Builds are serialized within this test binary: two builds of one project would share its
/// staging directory.
static BUILDS: Mutex<()> = Mutex::new(());

fn hypergraph() -> Command {
    let mut cmd = Command::new(common::cli::binary());
    cmd.env_remove("HYPERGRAPH_DB")
        .env_remove("HYPERGRAPH_CACHE_DIR")
        .env_remove("RUST_LOG");
    // One compile cache for every database of these tests: an 18 MB Python component compiles
    // once (seconds), not once per test.
    cmd.env(
        "HYPERGRAPH_CACHE_DIR",
        repo().join("target/polyglot-tests-compile-cache"),
    );
    if std::env::var_os("HYPERGRAPH_GUEST_TARGET_DIR").is_none() {
        cmd.env("HYPERGRAPH_GUEST_TARGET_DIR", repo().join("target/guests"));
    }
    cmd
}

/// `hypergraph build <dir>`: the component's path (what it prints on stdout).
fn build(dir: &Path) -> PathBuf {
    let _guard = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let out = hypergraph()
        .arg("build")
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("hypergraph build runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "hypergraph build {} failed ({})",
        dir.display(),
        out.status
    );
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(path.is_file(), "build printed {stdout:?}, not a file");
    path
}

struct Cli {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hg.db");
        Cli { dir, db }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = hypergraph();
        cmd.arg("--db").arg(&self.db).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("hypergraph runs")
    }

    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "hypergraph {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    /// Deploys the component at `wasm` (a private copy) as `name` with `extra` flags.
    fn deploy(&self, wasm: &Path, name: &str, extra: &[&str]) -> String {
        let copy = self.dir.path().join(format!("{name}.wasm"));
        std::fs::copy(wasm, &copy).unwrap();
        let mut args = vec!["deploy", copy.to_str().unwrap(), "--name", name];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// `run <task> --input <input> --wait --json`, expecting exit `code`.
    fn run_wait(&self, code: i32, task: &str, input: Value) -> Value {
        let input = input.to_string();
        let stdout = self.expect(code, &["run", task, "--input", &input, "--wait", "--json"]);
        serde_json::from_str(&stdout).unwrap()
    }

    /// Submits a run without executing it; its id.
    fn submit(&self, task: &str, input: Value) -> String {
        let input = input.to_string();
        let result = self.json(&["run", task, "--input", &input, "--json"]);
        result["run_id"].as_str().unwrap().to_string()
    }

    fn show(&self, id: &str) -> Value {
        self.json(&["runs", "show", id, "--json"])
    }

    fn worker_until_idle(&self) {
        self.ok(&["worker", "--until-idle", "--json"]);
    }

    fn wait_until(&self, id: &str, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let run = self.show(id);
            if done(&run) {
                return run;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}: {run}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn serve(&self, extra: &[&str]) -> Serve {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = self.dir.path().join(format!("serve-{n}.log"));
        let mut args = vec!["serve", "--lease", "1s"];
        args.extend_from_slice(extra);
        let child = self
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("serve starts");
        Serve { child }
    }
}

/// A running `hypergraph serve`, SIGKILLed when dropped if still running.
struct Serve {
    child: Child,
}

impl Serve {
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL serve");
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn steps(run: &Value) -> &Vec<Value> {
    run["steps"].as_array().expect("steps")
}

fn children(run: &Value) -> Vec<&Value> {
    let mut kids: Vec<&Value> = steps(run)
        .iter()
        .filter(|s| !s["parent_id"].is_null())
        .collect();
    kids.sort_by_key(|s| s["child_index"].as_u64());
    kids
}

fn guest(lang: &str) -> PathBuf {
    build(&repo().join(format!("tests/guests/{lang}-guarantees")))
}

/// The guarantees every language keeps, checked on `tests/guests/<lang>-guarantees`; `failure`
/// holds what the error of its `fail` task must contain.
fn guarantees(lang: &str, failure: &[&str]) {
    let cli = Cli::new();
    let deployed = cli.deploy(&guest(lang), lang, &[]);
    assert!(deployed.contains(&format!("{lang}/bump")), "{deployed}");
    // Toolchain internals (componentize-py's `exports.init`) are not tasks.
    let tasks = cli.json(&["tasks", "--json"]);
    let names: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("init")), "{names:?}");
    if lang == "python" {
        let refused = cli.run(&["run", "python/exports.init", "--wait"]);
        assert_eq!(refused.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("unknown task"), "{stderr}");
    }

    // A fresh instance per run: the module-level counter is 1 on each of 50 runs.
    let ids: Vec<String> = (0..50)
        .map(|_| cli.submit(&format!("{lang}/bump"), Value::Null))
        .collect();
    cli.worker_until_idle();
    for id in &ids {
        let run = cli.show(id);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            run["output"],
            json!(1),
            "run {id} saw a used instance: {run}"
        );
    }

    // Non-determinism is real, journaled, and replays identically, here and from a bundle.
    let first = cli.run_wait(0, &format!("{lang}/entropy"), Value::Null);
    let second = cli.run_wait(0, &format!("{lang}/entropy"), Value::Null);
    assert_ne!(
        first["output"], second["output"],
        "two runs drew the same values"
    );
    let id = first["run_id"].as_str().unwrap();
    let replayed = cli.ok(&["runs", "replay", id]);
    assert!(replayed.contains("identical"), "{replayed}");
    let bundle = cli.dir.path().join("entropy.hgbundle");
    cli.ok(&["runs", "export", id, "-o", bundle.to_str().unwrap()]);
    let elsewhere = Cli::new();
    let replayed = elsewhere.ok(&["replay", bundle.to_str().unwrap()]);
    assert!(replayed.contains("identical"), "{replayed}");
    assert!(
        !elsewhere.db.exists(),
        "replaying a bundle created a database"
    );

    // Failures say what happened.
    let failed = cli.run_wait(1, &format!("{lang}/fail"), json!("boom"));
    assert_eq!(failed["status"], "failed");
    let error = failed["error"].to_string();
    for needle in failure {
        assert!(error.contains(needle), "`{needle}` missing from {error}");
    }

    // kv: the second write sees the first.
    let a = cli.run_wait(
        0,
        &format!("{lang}/remember"),
        json!({"key": "k", "value": "x"}),
    );
    assert_eq!(a["output"], Value::Null);
    let b = cli.run_wait(
        0,
        &format!("{lang}/remember"),
        json!({"key": "k", "value": "y"}),
    );
    assert_eq!(b["output"], json!("x"));
}

#[test]
fn python_keeps_every_guarantee() {
    guarantees(
        "python",
        &[
            "trap",
            "Traceback (most recent call last)",
            "in inner",
            "ValueError: boom",
        ],
    );
}

#[test]
fn javascript_keeps_every_guarantee() {
    guarantees("js", &["trap", "boom", "Stack:", "inner@index.js"]);
}

#[test]
fn c_keeps_every_guarantee() {
    guarantees("c", &["trap", "unreachable", "exports_task_fail"]);
}

#[test]
fn go_keeps_every_guarantee() {
    guarantees(
        "go",
        &[
            "trap",
            "panic: giving up: boom",
            "goroutine 1 [running]",
            "main.inner",
            "main.fail",
        ],
    );
}

/// A Python and a JavaScript workflow fan out to children of their own deployment: every child
/// runs once, and the workflow, re-executed from its journal after the join, starts none again.
#[test]
fn python_and_javascript_workflows_run_each_child_once() {
    let cli = Cli::new();
    for lang in ["python", "js"] {
        cli.deploy(&guest(lang), lang, &[]);
        let result = cli.run_wait(
            0,
            &format!("{lang}/fan-out"),
            json!({"prefix": "w", "n": 6, "sleep-ms": 0}),
        );
        assert_eq!(result["output"], json!([0, 2, 4, 6, 8, 10]), "{result}");
        let run = cli.show(result["run_id"].as_str().unwrap());
        let kids = children(&run);
        assert_eq!(kids.len(), 6, "{run}");
        for kid in &kids {
            assert_eq!(kid["status"], "succeeded");
            assert_eq!(kid["attempt"], 1, "{kid}");
        }
        for i in 0..6 {
            let count = cli.run_wait(
                0,
                &format!("{lang}/executions"),
                json!({"key": format!("w/{i}")}),
            );
            assert_eq!(count["output"], json!(1), "{lang} child {i}");
        }
    }
}

/// The SIGKILL test with a Python workflow: `serve` dies in the middle of a fan-out; a new
/// `serve` finishes the run without running any completed child again.
#[test]
fn killed_server_mid_python_fan_out_resumes_without_rerunning_completed_children() {
    let cli = Cli::new();
    cli.deploy(
        &guest("python"),
        "python",
        &["--max-attempts", "3", "--backoff", "50ms"],
    );
    let n = 12;
    let id = cli.submit(
        "python/fan-out",
        json!({"prefix": "k", "n": n, "sleep-ms": 300}),
    );
    let serve = cli.serve(&["--concurrency", "3"]);
    let before = cli.wait_until(&id, "4 children done", |run| {
        children(run)
            .iter()
            .filter(|s| s["status"] == "succeeded")
            .count()
            >= 4
    });
    serve.kill();
    let done_before: Vec<u64> = children(&before)
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .map(|s| s["child_index"].as_u64().unwrap())
        .collect();
    assert!(
        done_before.len() < n,
        "the fan-out finished before the kill"
    );

    let _serve = cli.serve(&["--concurrency", "3"]);
    let run = cli.wait_until(&id, "the run to finish", |run| {
        matches!(run["status"].as_str(), Some("succeeded" | "failed"))
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    let expected: Vec<u64> = (0..n as u64).map(|i| i * 2).collect();
    assert_eq!(run["output"], json!(expected));
    let kids = children(&run);
    assert_eq!(kids.len(), n, "each child started once: {run}");
    for i in &done_before {
        assert_eq!(kids[*i as usize]["attempt"], 1, "child {i} ran again");
    }
    drop(_serve);
    for i in 0..n {
        let count = cli.run_wait(0, "python/executions", json!({"key": format!("k/{i}")}));
        assert_eq!(count["output"], json!(1), "child {i}'s work committed once");
    }
}

/// `hypergraph new` in every language, `--workflow`: builds, deploys and runs unchanged.
#[test]
fn new_projects_build_deploy_and_run_in_every_language() {
    let cli = Cli::new();
    for lang in ["python", "js", "c", "go", "rust"] {
        let dir = cli.dir.path().join(format!("hello-{lang}"));
        let created = cli.ok(&["new", lang, dir.to_str().unwrap(), "--workflow"]);
        assert!(created.contains("wit/world.wit"), "{created}");
        let name = format!("hello-{lang}");
        cli.deploy(&build(&dir), &name, &[]);
        let greeted = cli.run_wait(0, &format!("{name}/greet"), json!("Ada"));
        assert_eq!(greeted["output"], json!("Hello, Ada!"), "{lang}");
        let all = cli.run_wait(0, &format!("{name}/greet-all"), json!(["Ada", "Grace"]));
        assert_eq!(
            all["output"],
            json!(["Hello, Ada!", "Hello, Grace!"]),
            "{lang}"
        );
        let logs = cli.ok(&["runs", "logs", greeted["run_id"].as_str().unwrap()]);
        assert!(
            logs.contains("greeting Ada") && logs.contains("stdout"),
            "{lang}: the log call and the printed line are log lines: {logs}"
        );
    }
    let refused = cli.run(&[
        "new",
        "python",
        cli.dir.path().join("hello-python").to_str().unwrap(),
    ]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "new refuses a directory in use"
    );
    let unknown = cli.run(&["new", "cobol", cli.dir.path().join("x").to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("use rust, python, js, c or go"),
        "{unknown:?}"
    );
}

/// examples/polyglot: one Python workflow run calls a Rust, a JavaScript and a C task; `runs
/// show` lists each child with its task and component.
#[test]
fn polyglot_workflow_calls_rust_javascript_and_c_children() {
    let cli = Cli::new();
    let examples = repo().join("examples");
    cli.deploy(&build(&examples.join("greet")), "greet", &[]);
    cli.deploy(&build(&examples.join("js-quotes")), "quotes", &[]);
    cli.deploy(&build(&examples.join("c-checksum")), "checksum", &[]);
    cli.deploy(&build(&examples.join("polyglot")), "polyglot", &[]);
    let result = cli.run_wait(
        0,
        "polyglot/card",
        json!({"name": "Ada", "text": "hello polyglot world"}),
    );
    assert_eq!(
        result["output"],
        json!({
            "greeting": "Hello, Ada!",
            "headline": "Hello Polyglot World",
            "adler32": 0x532407f7_u32,
            "crc32": 0xc20fc9ad_u32,
        }),
        "{result}"
    );
    let id = result["run_id"].as_str().unwrap();
    let run = cli.show(id);
    let kids = children(&run);
    let tasks: Vec<&str> = kids.iter().map(|k| k["task"].as_str().unwrap()).collect();
    assert_eq!(
        tasks,
        ["greet/greet", "quotes/headline", "checksum/checksum-text"]
    );
    let mut digests: Vec<&str> = steps(&run)
        .iter()
        .map(|s| s["digest"].as_str().unwrap())
        .collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4, "four components in one run: {run}");
    let text = cli.ok(&["runs", "show", id]);
    for needle in [
        "greet/greet",
        "quotes/headline",
        "checksum/checksum-text",
        "component",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from\n{text}");
    }
    let replayed = cli.ok(&["runs", "replay", id]);
    assert!(replayed.contains("identical"), "{replayed}");
}

/// examples/py-transcripts: fan-out over tracks, a flaky fetch retried, a broken track left out,
/// kv, and a run failed by an outage that `runs resume` finishes without re-running the children
/// that completed.
#[test]
fn python_transcripts_pipeline_retries_and_resumes() {
    let cli = Cli::new();
    let example = repo().join("examples/py-transcripts");
    cli.deploy(
        &build(&example),
        "transcripts",
        &["--max-attempts", "3", "--backoff", "10ms"],
    );
    let input: Value = serde_json::from_str(
        &std::fs::read_to_string(example.join("inputs/meeting.json")).unwrap(),
    )
    .unwrap();
    let result = cli.run_wait(0, "transcripts/pipeline", input.clone());
    let report = &result["output"]["ok"];
    assert_eq!(
        report["speakers"],
        json!(["alice", "bob", "carol"]),
        "{result}"
    );
    assert_eq!(report["meetings-processed"], 1);
    assert!(report["topics"]
        .as_array()
        .unwrap()
        .contains(&json!("migration")));
    let run = cli.show(result["run_id"].as_str().unwrap());
    let bob = children(&run)
        .into_iter()
        .find(|k| k["task"] == "transcripts/fetch-track" && k["child_index"] == 1)
        .unwrap();
    assert_eq!(bob["attempt"], 2, "bob's flaky fetch was retried: {bob}");

    let broken: Value =
        serde_json::from_str(&std::fs::read_to_string(example.join("inputs/broken.json")).unwrap())
            .unwrap();
    let result = cli.run_wait(0, "transcripts/pipeline", broken);
    assert_eq!(
        result["output"]["ok"]["failed"],
        json!(["carol: carol's track is corrupt"])
    );

    // An outage of the summary service: the run fails; once it is over, resume finishes it.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 2_000;
    let mut job = input;
    job["job"]["outage-until-ms"] = json!(until);
    let failed = cli.run_wait(1, "transcripts/pipeline", job);
    let id = failed["run_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2_200));
    cli.ok(&["runs", "resume", &id]);
    cli.worker_until_idle();
    let run = cli.show(&id);
    assert_eq!(run["status"], "succeeded", "{run}");
    // The meeting, the broken meeting, and this one.
    assert_eq!(run["output"]["ok"]["meetings-processed"], 3);
    for kid in children(&run) {
        if kid["task"] == "transcripts/transcribe" {
            assert_eq!(kid["attempt"], 1, "a completed child ran again: {kid}");
        }
    }
}

/// examples/js-quotes: an allowlisted local HTTP service, answers cached in kv; another host is
/// denied with the flag that would allow it.
#[test]
fn javascript_quotes_call_an_allowlisted_service_and_cache_in_kv() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let served = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            served.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"price": 12.5, "currency": "EUR"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let cli = Cli::new();
    let allow = format!("127.0.0.1:{port}");
    cli.deploy(
        &build(&repo().join("examples/js-quotes")),
        "quotes",
        &["--allow-http", &allow],
    );
    let base = format!("http://127.0.0.1:{port}");
    let input = json!({"base-url": base, "symbol": "ACME", "max-age-s": 3600});
    let first = cli.run_wait(0, "quotes/quote", input.clone());
    assert_eq!(
        first["output"],
        json!({"ok": {"symbol": "ACME", "price": 12.5, "currency": "EUR", "cached": false}})
    );
    let second = cli.run_wait(0, "quotes/quote", input);
    assert_eq!(second["output"]["ok"]["cached"], true);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the second answer came from kv"
    );
    let replayed = cli.ok(&["runs", "replay", first["run_id"].as_str().unwrap()]);
    assert!(replayed.contains("identical"), "{replayed}");
    let denied = cli.run_wait(
        1,
        "quotes/quote",
        json!({"base-url": format!("http://localhost:{port}"), "symbol": "X", "max-age-s": 0}),
    );
    assert!(
        denied["error"].to_string().contains("allowlist"),
        "{denied}"
    );
}

/// examples/c-checksum: real compute in C, checked against known values.
#[test]
fn c_checksum_computes_known_digests_and_round_trips_compression() {
    let cli = Cli::new();
    cli.deploy(&build(&repo().join("examples/c-checksum")), "checksum", &[]);
    let digest = cli.run_wait(0, "checksum/checksum-text", json!("hello world"));
    // zlib.adler32(b"hello world"), zlib.crc32(b"hello world")
    assert_eq!(
        digest["output"],
        json!({"bytes": 11, "adler32": 0x1a0b045d_u32, "crc32": 0x0d4a1185_u32})
    );
    let data: Vec<u8> = b"aaaaaaaabbbbc".to_vec();
    let packed = cli.run_wait(0, "checksum/compress", json!({"data": data}));
    assert_eq!(packed["output"], json!([8, 97, 4, 98, 1, 99]));
    let unpacked = cli.run_wait(0, "checksum/decompress", json!({"data": packed["output"]}));
    assert_eq!(unpacked["output"], json!({"ok": data}));
    let odd = cli.run_wait(1, "checksum/decompress", json!({"data": [1, 2, 3]}));
    assert!(odd["error"].to_string().contains("odd length"), "{odd}");
}

/// One request as [`recording_server`] received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    /// Names lowercased, in the order sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on 127.0.0.1 (one request per connection) that records every request and
/// answers `201` to a POST and `200` to anything else, with `x-method` and `x-count` headers and
/// the body `<method> <target> <request body>`.
fn recording_server() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // The head, then as many body bytes as content-length says.
            let (head_end, length) = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (usize::MAX, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(head) = common::http_request_head(&buf) {
                    break head;
                }
            };
            if head_end == usize::MAX {
                continue;
            }
            while buf.len() < head_end + length {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end - 4]).to_string();
            let mut lines = head.split("\r\n");
            let mut start = lines.next().unwrap_or("").split(' ');
            let received = Received {
                method: start.next().unwrap_or("").to_string(),
                target: start.next().unwrap_or("").to_string(),
                headers: lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
                    .collect(),
                body: buf[head_end..].to_vec(),
            };
            let count = {
                let mut log = log.lock().unwrap();
                log.push(received.clone());
                log.len()
            };
            let status = if received.method == "POST" {
                "201 Created"
            } else {
                "200 OK"
            };
            let mut body = format!("{} {} ", received.method, received.target).into_bytes();
            body.extend_from_slice(&received.body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\nx-method: {}\r\nx-count: {count}\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                received.method,
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (port, seen)
}

/// The Go SDK's outbound HTTP (`hg.HTTPRequest` over `wasi:http`, tests/guests/go-guarantees'
/// `fetch`): a GET and a POST with a body and headers reach an allowlisted local server as sent,
/// status, headers and body come back, a host not on the allowlist is denied with an error that
/// says so, and the runs replay `identical` without sending anything.
#[test]
fn go_sends_http_to_an_allowlisted_host_and_replays_identically() {
    let (port, seen) = recording_server();
    let cli = Cli::new();
    let allow = format!("127.0.0.1:{port}");
    cli.deploy(&guest("go"), "go", &["--allow-http", &allow]);
    let base = format!("http://127.0.0.1:{port}");
    let fetch =
        |code: i32, request: Value| cli.run_wait(code, "go/fetch", json!(request.to_string()));
    let response = |run: &Value| -> Value {
        assert_eq!(run["status"], "succeeded", "{run}");
        serde_json::from_str(run["output"]["ok"].as_str().expect("ok(string)")).unwrap()
    };

    // GET with a header and a query.
    let get = fetch(
        0,
        json!({"method": "GET", "url": format!("{base}/quote?symbol=ACME&n=1"),
               "headers": {"accept": "text/plain", "x-trace": "go-1"}}),
    );
    let got = response(&get);
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["ok"], true);
    assert_eq!(got["content-type"], "text/plain");
    assert_eq!(got["body"], "GET /quote?symbol=ACME&n=1 ");
    let headers = got["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-method", "GET"])), "{got}");
    assert!(headers.contains(&json!(["x-count", "1"])), "{got}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/quote?symbol=ACME&n=1");
        assert_eq!(request.header("accept"), Some("text/plain"));
        assert_eq!(request.header("x-trace"), Some("go-1"));
        assert!(request.body.is_empty(), "{request:?}");
    }

    // POST with headers and a body longer than one 4 KiB write.
    let payload = json!({"symbol": "ACME", "note": "x".repeat(10_000)}).to_string();
    let post = fetch(
        0,
        json!({"method": "post", "url": format!("{base}/orders"), "body": payload,
               "headers": {"content-type": "application/json", "x-request-id": "abc-123"}}),
    );
    let posted = response(&post);
    assert_eq!(posted["status"], 201, "{posted}");
    assert_eq!(posted["ok"], true);
    assert_eq!(posted["body"], format!("POST /orders {payload}"));
    assert!(
        posted["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-method", "POST"])),
        "{posted}"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let request = &seen[1];
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/orders");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-request-id"), Some("abc-123"));
        assert_eq!(request.body, payload.as_bytes());
    }

    // Another host (localhost is not 127.0.0.1 to the allowlist) is denied, and the error says so.
    let denied = fetch(
        1,
        json!({"method": "GET", "url": format!("http://localhost:{port}/quote")}),
    );
    assert_eq!(denied["status"], "failed", "{denied}");
    let error = denied["error"]["value"]
        .as_str()
        .map(|text| serde_json::from_str::<Value>(text).unwrap())
        .unwrap_or_else(|| panic!("an error value: {denied}"));
    assert_eq!(error["denied"], true, "{error}");
    assert_eq!(error["code"], "HTTP-request-denied", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "localhost:{port} is not on this deployment's HTTP allowlist"
        )) && message.contains(&format!("--allow-http localhost:{port}")),
        "{message}"
    );
    // A URL the SDK cannot send fails before reaching the host.
    let refused = fetch(1, json!({"method": "GET", "url": "ftp://127.0.0.1/x"}));
    assert!(
        refused["error"]
            .to_string()
            .contains("unsupported URL scheme"),
        "{refused}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "nothing else reached the server"
    );

    // The responses were journaled: replays are identical and send nothing.
    for run in [&get, &post, &denied] {
        let replayed = cli.ok(&["runs", "replay", run["run_id"].as_str().unwrap()]);
        assert!(replayed.contains("identical"), "{replayed}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2, "a replay sent a request");
}
