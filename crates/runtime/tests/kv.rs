//! `hypergraph:task/kv` end to end with a real Rust guest against a real SQLite file: buffered
//! writes committed with successful attempts only, read-your-writes, scoping per deployment, and
//! replay answering reads from the journal even after the stored values changed.

use hypergraph_testing as common;

use common::*;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::replay::{ReplayWith, Verdict};
use hypergraph_runtime::store::{Policy, Status};
use serde_json::json;

fn kv_counter() -> Vec<u8> {
    let options = BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        ..BuildOptions::default()
    };
    let path =
        build_guest(&repo().join("tests/guests/kv-counter"), &options).expect("guest builds");
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn writes_commit_with_successful_attempts_only() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let component = kv_counter();
    hg.deploy("kv", &component, &Policy::default())
        .await
        .unwrap();

    for expected in 1..=3 {
        let run = run(&hg, "kv/bump", json!("visits")).await;
        assert_eq!(run.status, Status::Succeeded, "{:?}", run.error);
        assert_eq!(run.output, Some(json!(expected)));
    }
    // An application error and a trap after bumping: neither write is visible.
    let failed = run(&hg, "kv/bump-then-fail", json!("visits")).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(
        failed.error.as_ref().unwrap()["value"],
        "failing after bumping `visits` to 4"
    );
    let panicked = run(&hg, "kv/bump-then-panic", json!("visits")).await;
    assert_eq!(error_kind(&panicked), "trap");
    assert!(error_message(&panicked).contains("panicking after bumping"));
    assert_eq!(
        run(&hg, "kv/bump", json!("visits")).await.output,
        Some(json!(4))
    );

    // Notes, listing and deletion.
    run(&hg, "kv/put", json!({"key": "note/a", "note": "alpha"})).await;
    run(&hg, "kv/put", json!({"key": "note/b", "note": "beta"})).await;
    assert_eq!(
        run(&hg, "kv/read", json!("note/a")).await.output,
        Some(json!("alpha"))
    );
    assert_eq!(
        run(&hg, "kv/keys", json!("note/")).await.output,
        Some(json!(["note/a", "note/b"]))
    );
    run(&hg, "kv/forget", json!("note/a")).await;
    assert_eq!(
        run(&hg, "kv/read", json!("note/a")).await.output,
        Some(json!(null))
    );
    assert_eq!(
        run(&hg, "kv/keys", json!("")).await.output,
        Some(json!(["note/b", "visits"]))
    );

    // Another deployment of the same component has its own keys.
    hg.deploy("other", &component, &Policy::default())
        .await
        .unwrap();
    assert_eq!(
        run(&hg, "other/bump", json!("visits")).await.output,
        Some(json!(1))
    );
    assert_eq!(
        run(&hg, "kv/bump", json!("visits")).await.output,
        Some(json!(5))
    );
}

#[tokio::test]
async fn replay_answers_reads_from_the_journal_not_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    hg.deploy("kv", &kv_counter(), &Policy::default())
        .await
        .unwrap();
    run(&hg, "kv/bump", json!("n")).await;
    let recorded = run(&hg, "kv/bump", json!("n")).await;
    assert_eq!(recorded.output, Some(json!(2)));
    let step = &recorded.steps[0];
    let kinds: Vec<String> = hg
        .store
        .journal(&step.id, step.attempt)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["kv.get", "kv.set", "kv.get"]);

    // Advance the stored counter to 42: a live read would make the replay return 43, but the
    // replay still sees what the attempt saw (1) and returns 2.
    run(&hg, "kv/bump", json!("n")).await;
    for _ in 0..38 {
        run(&hg, "kv/bump", json!("n")).await;
    }
    assert_eq!(
        run(&hg, "kv/bump", json!("n")).await.output,
        Some(json!(42))
    );
    let report = hg
        .replay_run(&recorded.id, &ReplayWith::Pinned)
        .await
        .unwrap();
    assert!(report.identical(), "{report:?}");

    // And the replay wrote nothing.
    assert_eq!(
        run(&hg, "kv/bump", json!("n")).await.output,
        Some(json!(43))
    );

    // A component that reads a different key diverges at that read.
    let mut other = hypergraph_runtime::replay::load(hg.store.as_ref(), &recorded.id)
        .await
        .unwrap();
    other.steps[0].input = json!({"key": "m"});
    let prepared = hg
        .prepared(&hg.store.latest_deployment("kv").await.unwrap().unwrap())
        .await
        .unwrap();
    let diverged = hypergraph_runtime::replay::replay(&hg.engine, &prepared, &other)
        .await
        .unwrap();
    match &diverged.first_divergence().unwrap().verdict {
        Verdict::Diverged { divergence } => {
            assert_eq!(divergence.seq, Some(0));
            assert_eq!(divergence.expected["key"], "n");
            assert_eq!(divergence.actual["key"], "m");
        }
        other => panic!("{other:?}"),
    }
}
