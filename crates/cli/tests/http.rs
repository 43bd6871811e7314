//! Outbound HTTP (`wasi:http/outgoing-handler`) with a real Rust guest and a real HTTP server on
//! 127.0.0.1: the allowlist, journaling of request and response, and replay that answers from the
//! journal with the server stopped and the kv values changed.

use hypergraph_testing as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::bundle;
use hypergraph_runtime::replay::{load, replay, ReplayWith, Verdict};
use hypergraph_runtime::store::{Policy, Status};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn outside() -> Vec<u8> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let options = BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        ..BuildOptions::default()
    };
    let path = build_guest(&repo().join("tests/guests/outside"), &options).expect("guest builds");
    std::fs::read(path).unwrap()
}

/// A minimal HTTP/1.1 server: answers every request with `200` and a body naming the request
/// count, the method and the request body, and counts the requests it served.
struct TestServer {
    addr: std::net::SocketAddr,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head, then as much body as content-length says.
                    let (head_end, length) = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(head) = http_request_head(&buf) {
                            break head;
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let method = String::from_utf8_lossy(&buf[..head_end])
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let reply = format!("request {n}: {method} {body}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-served: {n}\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        TestServer { addr, served, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops accepting connections; later requests are refused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn allow(server: &TestServer) -> Policy {
    Policy {
        http_allow: vec![server.addr.to_string()],
        ..Policy::default()
    }
}

#[tokio::test]
async fn clock_random_kv_and_http_replay_identically_with_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let server = TestServer::start().await;
    hg.deploy("outside", &outside(), &allow(&server))
        .await
        .unwrap();
    run(
        &hg,
        "outside/remember",
        json!({"key": "greeting", "value": "hello"}),
    )
    .await;

    let url = server.url("/quote");
    let run = run(
        &hg,
        "outside/observe",
        json!({"key": "greeting", "url": url}),
    )
    .await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
    let output = run.output.clone().unwrap();
    assert_eq!(output["stored"], "hello");
    assert_eq!(output["http"]["ok"], json!([200, "request 1: GET "]));
    assert_eq!(server.served(), 1);

    // The journal holds the request and the whole response.
    let journal = hg.store.journal(&run.steps[0].id, 1).await.unwrap();
    let http: Value = journal
        .iter()
        .find(|r| r.kind == "http.request")
        .map(|r| serde_json::from_str(&r.data).unwrap())
        .expect("an http.request entry");
    assert_eq!(http["request"]["method"], "GET");
    assert_eq!(http["request"]["uri"], url);
    assert_eq!(http["outcome"]["response"]["status"], 200);
    assert_eq!(
        http["outcome"]["response"]["body"]["utf8"],
        "request 1: GET "
    );

    // Nothing live is consulted: the server is gone and the stored value changed.
    server.stop().await;
    common::run(
        &hg,
        "outside/remember",
        json!({"key": "greeting", "value": "changed"}),
    )
    .await;
    let report = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
    assert!(report.identical(), "{report:?}");

    // A bundle exported here replays identically from a fresh database, also offline.
    let exported = hg.export_run(&run.id).await.unwrap();
    let bundle = bundle::from_bytes(&bundle::to_bytes(&exported)).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open(fresh_dir.path()).await;
    let prepared = fresh.engine.prepare_bytes(&bundle.component).await.unwrap();
    let report = replay(&fresh.engine, &prepared, &bundle.run).await.unwrap();
    assert!(report.identical(), "{report:?}");

    // A live run now sees the stopped server as a refused connection.
    let offline = common::run(
        &hg,
        "outside/observe",
        json!({"key": "greeting", "url": url}),
    )
    .await;
    let output = offline.output.unwrap();
    assert_eq!(output["stored"], "changed");
    assert!(
        output["http"]["err"]
            .as_str()
            .unwrap()
            .contains("ConnectionRefused"),
        "{output}"
    );
}

#[tokio::test]
async fn a_changed_request_body_diverges_at_the_http_entry() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let server = TestServer::start().await;
    hg.deploy("outside", &outside(), &allow(&server))
        .await
        .unwrap();
    let run = run(
        &hg,
        "outside/post",
        json!({"url": server.url("/items"), "body": "first"}),
    )
    .await;
    assert_eq!(run.output, Some(json!({"ok": "request 1: POST first"})));
    server.stop().await;

    let report = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
    assert!(report.identical(), "{report:?}");

    // The same journal, but the recorded request had another body: the replayed guest's request
    // no longer matches, and the divergence names the http entry.
    let mut recorded = load(hg.store.as_ref(), &run.id).await.unwrap();
    let journal = &mut recorded.steps[0].attempts[0].journal;
    let at = journal
        .iter()
        .position(|r| r.kind == "http.request")
        .unwrap();
    journal[at].data = journal[at].data.replace("\"first\"", "\"other\"");
    let prepared = hg
        .prepared(
            &hg.store
                .deployment_version("outside", 1)
                .await
                .unwrap()
                .unwrap(),
        )
        .await
        .unwrap();
    let mutated = replay(&hg.engine, &prepared, &recorded).await.unwrap();
    let divergence = match &mutated.first_divergence().expect("diverges").verdict {
        Verdict::Diverged { divergence } => divergence.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(divergence.seq, Some(at as u32), "{divergence}");
    assert_eq!(divergence.expected["request"]["body"]["utf8"], "other");
    assert_eq!(divergence.actual["request"]["body"]["utf8"], "first");
}

#[tokio::test]
async fn requests_to_hosts_off_the_allowlist_are_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let server = TestServer::start().await;
    let component = outside();
    // No allowlist at all (the default), then an allowlist naming another port.
    hg.deploy("closed", &component, &Policy::default())
        .await
        .unwrap();
    let other_port = Policy {
        http_allow: vec![format!("127.0.0.1:{}", server.addr.port() + 1)],
        ..Policy::default()
    };
    hg.deploy("elsewhere", &component, &other_port)
        .await
        .unwrap();
    for deployment in ["closed", "elsewhere"] {
        let run = run(
            &hg,
            &format!("{deployment}/post"),
            json!({"url": server.url("/x"), "body": "secret"}),
        )
        .await;
        assert_eq!(run.status, Status::Failed, "{deployment}");
        let error = run.error.as_ref().unwrap()["value"].as_str().unwrap();
        assert!(error.contains("denied"), "{error}");
        let logs = hg.store.run_logs(&run.id).await.unwrap();
        assert!(
            logs.iter().any(|l| l.line.message.contains("denied")
                && l.line.message.contains(&server.addr.to_string())
                && l.line.message.contains("--allow-http")),
            "{logs:?}"
        );
        // The refusal is journaled and replays identically.
        let report = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
        assert!(report.identical(), "{report:?}");
    }
    assert_eq!(server.served(), 0, "no request reached the server");

    // A bad allowlist entry is refused at deploy time.
    let bad = Policy {
        http_allow: vec!["http://example.com/path".into()],
        ..Policy::default()
    };
    let error = hg.deploy("bad", &component, &bad).await.unwrap_err();
    assert!(format!("{error:#}").contains("not a valid HTTP allowlist entry"));
}
