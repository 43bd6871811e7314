//! The runtime end to end through the library: real components (WAT fixtures) in a real host
//! against a real SQLite file.

use hypergraph_testing as common;

use common::*;
use hypergraph_runtime::scheduler::RunRequest;
use hypergraph_runtime::store::{Policy, RunFilter, Status};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn every_invocation_gets_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "counter", "counter.wat", Policy::default()).await;
    let requests = vec![
        RunRequest {
            task: "counter/count".into(),
            ..RunRequest::default()
        };
        100
    ];
    let ids = hg.submit_many(&requests).await.unwrap();
    drain(&hg).await;
    for id in ids {
        let run = detail(&hg, &id).await;
        assert_eq!(run.status, Status::Succeeded, "{run:?}");
        assert_eq!(run.output, Some(json!(1)), "a global survived between runs");
    }
}

#[tokio::test]
async fn hostile_guests_end_only_their_own_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let policy = Policy {
        memory_limit_bytes: Some(64 << 20),
        timeout_ms: Some(300),
        ..Policy::default()
    };
    deploy(&hg, "hostile", "hostile.wat", policy).await;

    let cases = [
        ("hostile/spin", "timeout", "execution deadline of 300 ms"),
        ("hostile/bomb", "memory_limit", "memory limit exceeded"),
        (
            "hostile/recurse",
            "stack_overflow",
            "overflowed its call stack",
        ),
        ("hostile/trap", "trap", "unreachable"),
    ];
    // All at once, mixed with healthy runs, on one worker.
    let mut ids = Vec::new();
    for (task, _, _) in &cases {
        for t in [*task, "hostile/ok"] {
            ids.push(
                hg.submit(&RunRequest {
                    task: t.into(),
                    ..RunRequest::default()
                })
                .await
                .unwrap(),
            );
        }
    }
    drain(&hg).await;
    for (i, (task, kind, message)) in cases.iter().enumerate() {
        let bad = detail(&hg, &ids[2 * i]).await;
        assert_eq!(bad.status, Status::Failed, "{task}");
        assert_eq!(error_kind(&bad), *kind, "{task}: {:?}", bad.error);
        assert!(
            error_message(&bad).contains(message),
            "{task}: {}",
            error_message(&bad)
        );
        let ok = detail(&hg, &ids[2 * i + 1]).await;
        assert_eq!(ok.status, Status::Succeeded, "healthy run next to {task}");
        assert_eq!(ok.output, Some(json!(7)));
    }
    // A trap carries the wasm backtrace with the guest's function names.
    let trap = detail(&hg, &ids[6]).await;
    let backtrace = trap.error.as_ref().unwrap()["backtrace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(backtrace.contains("inner"), "backtrace: {backtrace}");
    // And the host keeps serving afterwards.
    assert_eq!(
        run(&hg, "hostile/ok", json!(null)).await.output,
        Some(json!(7))
    );
}

#[tokio::test]
async fn logs_are_captured_and_capped_with_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "flood", "log-flood.wat", Policy::default()).await;
    let small = run(&hg, "flood/flood", json!({"n": 3})).await;
    assert_eq!(small.status, Status::Succeeded);
    let logs = hg.store.run_logs(&small.id).await.unwrap();
    assert_eq!(logs.len(), 3);
    assert!(logs
        .iter()
        .all(|l| l.line.message == "hello" && l.line.level == "info"));

    let big = run(&hg, "flood/flood", json!(1500)).await;
    let logs = hg.store.run_logs(&big.id).await.unwrap();
    assert_eq!(logs.len(), 1001, "1000 kept lines + the marker");
    assert!(
        logs[1000]
            .line
            .message
            .contains("500 more log line(s) dropped"),
        "{:?}",
        logs[1000]
    );
    let step = &big.steps[0];
    let journal = hg.store.journal(&step.id, step.attempt).await.unwrap();
    assert_eq!(journal.len(), 1001);
    assert_eq!(journal[1000].kind, "log.dropped");

    // The cap is a deployment policy.
    let policy = Policy {
        max_log_lines: Some(10),
        ..Policy::default()
    };
    deploy(&hg, "flood", "log-flood.wat", policy).await;
    let capped = run(&hg, "flood/flood", json!(20)).await;
    assert_eq!(hg.store.run_logs(&capped.id).await.unwrap().len(), 11);
}

#[tokio::test]
async fn deploy_rejects_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let err = |r: anyhow::Result<_>| format!("{:#}", r.expect_err("deploy must fail"));

    let core = err(hg
        .deploy("core", &fixture("core-module.wat"), &Policy::default())
        .await);
    assert!(
        core.contains("core WebAssembly module, not a component"),
        "{core}"
    );

    let garbage = err(hg
        .deploy("garbage", b"definitely not wasm", &Policy::default())
        .await);
    assert!(garbage.contains("not a WebAssembly component"), "{garbage}");

    let truncated = b"(component (core module $m (func (export \"f\")";
    let broken = err(hg.deploy("broken", truncated, &Policy::default()).await);
    assert!(broken.contains("invalid"), "{broken}");

    let imports = err(hg
        .deploy("imports", &fixture("bad-imports.wat"), &Policy::default())
        .await);
    assert!(
        imports.contains("2 interface(s) this host does not provide"),
        "{imports}"
    );
    assert!(imports.contains("acme:db/query@1.0.0"), "{imports}");
    assert!(imports.contains("wasi:keyvalue/store@0.2.0"), "{imports}");
    assert!(!imports.contains("- hypergraph:task/context"), "{imports}");

    let mismatch = err(hg
        .deploy(
            "mismatch",
            &fixture("wrong-import-type.wat"),
            &Policy::default(),
        )
        .await);
    assert!(mismatch.contains("imports do not match"), "{mismatch}");
    assert!(mismatch.contains("log"), "{mismatch}");

    let name = err(hg
        .deploy("no/slash", &fixture("counter.wat"), &Policy::default())
        .await);
    assert!(name.contains("invalid deployment name"), "{name}");

    let policy = Policy {
        memory_limit_bytes: Some(1 << 40),
        ..Policy::default()
    };
    let limit = err(hg.deploy("big", &fixture("counter.wat"), &policy).await);
    assert!(limit.contains("memory limit"), "{limit}");

    // Nothing was stored by any of the failures.
    assert!(hg.store.deployments().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_tasks_and_wrong_inputs_fail_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "counter", "counter.wat", Policy::default()).await;
    deploy(&hg, "flood", "log-flood.wat", Policy::default()).await;
    let submit = |task: &str, input| {
        let hg = hg.clone();
        let task = task.to_string();
        async move {
            hg.submit(&RunRequest {
                task,
                input,
                meta: vec![],
            })
            .await
            .map_err(|e| format!("{e:#}"))
        }
    };

    let case = submit("Counter/Count", json!(null)).await.unwrap_err();
    assert!(case.contains("did you mean `counter/count`"), "{case}");
    let typo = submit("flood/flod", json!(null)).await.unwrap_err();
    assert!(typo.contains("`flood/flood`"), "{typo}");
    let nothing = submit("nope", json!(null)).await.unwrap_err();
    assert!(nothing.contains("unknown task `nope`"), "{nothing}");

    let shape = submit("flood/flood", json!({"n": "many"}))
        .await
        .unwrap_err();
    assert!(shape.contains("$.n") && shape.contains("u32"), "{shape}");
    let range = submit("flood/flood", json!({"n": -1})).await.unwrap_err();
    assert!(range.contains("u32"), "{range}");
    let unknown = submit("flood/flood", json!({"count": 1}))
        .await
        .unwrap_err();
    assert!(unknown.contains("count"), "{unknown}");

    let runs = hg.store.list_runs(&RunFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "rejected submissions must store nothing");
}

#[tokio::test]
async fn redeploy_creates_versions_and_runs_stay_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "app", "counter.wat", Policy::default()).await;
    let first = hg
        .submit(&RunRequest {
            task: "app/count".into(),
            ..RunRequest::default()
        })
        .await
        .unwrap();
    let same = hg
        .deploy("app", &fixture("counter.wat"), &Policy::default())
        .await
        .unwrap();
    assert!(!same.created);
    assert_eq!(same.deployment.version, 1);
    let v2 = hg
        .deploy("app", &fixture("hostile.wat"), &Policy::default())
        .await
        .unwrap();
    assert!(v2.created);
    assert_eq!(v2.deployment.version, 2);
    // The run submitted against v1 still runs v1's component even though v2 has no `count`.
    drain(&hg).await;
    let run = detail(&hg, &first).await;
    assert_eq!(run.status, Status::Succeeded);
    assert_eq!(run.version, 1);
    assert_eq!(run.output, Some(json!(1)));
    let gone = hg
        .submit(&RunRequest {
            task: "app/count".into(),
            ..RunRequest::default()
        })
        .await
        .unwrap_err();
    assert!(format!("{gone:#}").contains("unknown task"), "{gone:#}");
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let hg = open(dir.path()).await;
        deploy(&hg, "counter", "counter.wat", Policy::default()).await;
    }
    let cached: Vec<_> = walk(&dir.path().join("cache"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    // A new process (new engine) runs from the cache.
    let hg = open(dir.path()).await;
    assert_eq!(
        run(&hg, "counter/count", json!(null)).await.output,
        Some(json!(1))
    );
    // A corrupt cache entry is ignored and rewritten, not fatal.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let hg = open(dir.path()).await;
    assert_eq!(
        run(&hg, "counter/count", json!(null)).await.output,
        Some(json!(1))
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Waits (ten seconds at most) until `hg` hears other processes' wake-ups.
async fn until_listening(hg: &hypergraph_runtime::Hypergraph) {
    until_listening_is(hg, true).await;
}

/// Waits (ten seconds at most) until whether `hg` hears other processes' wake-ups is `listening`.
async fn until_listening_is(hg: &hypergraph_runtime::Hypergraph, listening: bool) {
    let started = std::time::Instant::now();
    while hg.listening() != listening {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "listening is still {} after 10 s",
            !listening
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An idle worker on `executor` polling at most every `max_poll` while it cannot hear other
/// processes' wake-ups and every `listening_poll` while it can, started once `executor` and
/// `submitter` both hear each other's.
async fn idle_worker(
    executor: &hypergraph_runtime::Hypergraph,
    submitter: &hypergraph_runtime::Hypergraph,
    max_poll: Duration,
    listening_poll: Duration,
) -> hypergraph_runtime::worker::WorkerHandle {
    use hypergraph_runtime::worker::{Worker, WorkerOptions};
    let worker = Worker::new(
        executor.clone(),
        WorkerOptions {
            max_poll_interval: max_poll,
            listening_poll_interval: listening_poll,
            ..WorkerOptions::default()
        },
    )
    .spawn();
    until_listening(executor).await;
    until_listening(submitter).await;
    worker
}

/// Submits a run of `counter/count` on `submitter` and waits there (`within` at most) for it to
/// succeed.
async fn count_once(submitter: &hypergraph_runtime::Hypergraph, within: Duration) {
    let id = submitter
        .submit(&RunRequest {
            task: "counter/count".into(),
            ..RunRequest::default()
        })
        .await
        .unwrap();
    let run = submitter.wait(&id, Some(within)).await.unwrap();
    assert_eq!(run.status, Status::Succeeded, "{run:?}");
}

/// On PostgreSQL, an idle worker on one handle runs what another handle (with connections of its
/// own, as another process) submits at once, long before its next poll (30 s apart, and backed
/// off to several seconds when the run arrives), and the submitter's wait hears the run end; a
/// worker whose listener lost its connection still finds what is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_wake_for_other_processes_submissions() {
    if !on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let submitter = open(dir.path()).await;
    deploy(&submitter, "counter", "counter.wat", Policy::default()).await;
    let location = location_of(dir.path());
    let executor = open_at(&location, dir.path()).await;
    let worker = idle_worker(
        &executor,
        &submitter,
        Duration::from_secs(30),
        Duration::from_secs(30),
    )
    .await;
    // Polls 1, 2, 4, ... ms apart: after 9 s the worker sleeps until about 16 s.
    tokio::time::sleep(Duration::from_secs(9)).await;
    count_once(&submitter, Duration::from_secs(5)).await;

    let terminated = terminate_listeners(&location).await;
    assert_eq!(terminated, 2, "the listeners of both handles");
    count_once(&submitter, Duration::from_secs(5)).await;
    worker.stop().await.unwrap();
}

/// Terminates the backends listening for the wake-ups of the database at `location` (a schema of
/// the PostgreSQL test server); returns how many.
async fn terminate_listeners(location: &str) -> i64 {
    use hypergraph_runtime::store::sqlx;
    let (url, schema) = location.rsplit_once("schema=").expect("a schema per test");
    let server = &url[..url.len() - 1];
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(server)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = $1",
    )
    .bind(format!("LISTEN \"hypergraph_{schema}\""))
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

/// A TCP relay on 127.0.0.1 to a PostgreSQL server that can stop taking new connections while
/// the ones it carries go on: a handle connected through it keeps its open connections, and
/// cannot open new ones.
struct Relay {
    port: u16,
    accepting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `upstream` (`host:port`).
    async fn to(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = tokio::spawn({
            let accepting = accepting.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                        // Closed at once: the client's connection attempt fails.
                        continue;
                    }
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            }
        });
        Relay {
            port,
            accepting,
            task,
        }
    }

    /// Refuses every connection from now on; those already relayed go on.
    fn refuse_new_connections(&self) {
        self.accepting
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// On PostgreSQL, a worker that cannot hear other processes' wake-ups for as long as it lasts
/// (its listener lost its connection and cannot connect again, while its store's open
/// connections still work) polls every `max_poll_interval`, not at the interval it polls at
/// while it hears them (an hour here), so what another process submits still runs soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_hear_other_processes_polls_for_their_work() {
    if !on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let submitter = open(dir.path()).await;
    deploy(&submitter, "counter", "counter.wat", Policy::default()).await;
    let location = location_of(dir.path());
    // The executor, as another process, reaches the server through the relay.
    let mut relayed = url::Url::parse(&location).unwrap();
    let upstream = format!(
        "{}:{}",
        relayed.host_str().expect("a server reached over TCP"),
        relayed.port().unwrap_or(5432)
    );
    let relay = Relay::to(upstream).await;
    relayed.set_host(Some("127.0.0.1")).unwrap();
    relayed.set_port(Some(relay.port)).unwrap();
    let executor = open_at(relayed.as_str(), dir.path()).await;
    let worker = idle_worker(
        &executor,
        &submitter,
        Duration::from_millis(50),
        Duration::from_secs(3600),
    )
    .await;
    // Heard at once; the executor's pool opens the connections it works with meanwhile.
    for _ in 0..3 {
        count_once(&submitter, Duration::from_secs(5)).await;
    }

    relay.refuse_new_connections();
    assert_eq!(terminate_listeners(&location).await, 2, "both handles'");
    until_listening_is(&executor, false).await;
    // The executor's lost listener woke its worker, whose polls then back off from 1 ms: had it
    // backed off towards the listening interval, it would now poll about 4 s and 8 s after the
    // loss. Past the first of those, a run it finds within 3 s was found by the fallback.
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    assert!(!executor.listening(), "the listener connected again");
    until_listening(&submitter).await;
    count_once(&submitter, Duration::from_secs(3)).await;
    assert!(!executor.listening(), "the outage lasted");
    worker.stop().await.unwrap();
}
