//! Deterministic replay: recorded runs re-execute identically against their journals, and a
//! mutated journal or a changed component is reported as a divergence at the right place.

use hypergraph_testing as common;

use common::*;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::journal::{Divergence, Entry, WasiEntry};
use hypergraph_runtime::replay::{load, replay, ReplayWith, Verdict};
use hypergraph_runtime::store::Policy;
use serde_json::json;

fn divergence(report: &hypergraph_runtime::replay::ReplayReport) -> Divergence {
    match &report.first_divergence().expect("a divergence").verdict {
        Verdict::Diverged { divergence } => divergence.clone(),
        other => panic!("not a divergence: {other:?}"),
    }
}

fn built(crate_dir: &str) -> Vec<u8> {
    built_with(crate_dir, &[])
}

fn built_with(crate_dir: &str, features: &[&str]) -> Vec<u8> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let options = BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        features: features.iter().map(|f| f.to_string()).collect(),
        ..BuildOptions::default()
    };
    std::fs::read(build_guest(&repo().join(crate_dir), &options).expect("guest builds")).unwrap()
}

#[tokio::test]
async fn clock_and_random_runs_replay_identically_without_live_values() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    hg.deploy("dice", &built("examples/dice"), &Policy::default())
        .await
        .unwrap();
    let run = run(&hg, "dice/roll", json!({"count": 5, "sides": 20})).await;
    // Every live read would differ (fresh random bytes, a later clock): identical proves that
    // each value came from the journal.
    let report = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
    assert!(report.identical(), "{report:?}");
    assert_eq!(report.replayed(), 1);

    // A mutated journal: entry 1 now answers a different call than the guest makes.
    let mut recorded = load(hg.store.as_ref(), &run.id).await.unwrap();
    let journal = &mut recorded.steps[0].attempts[0].journal;
    assert!(journal.len() > 3, "{journal:?}");
    let original_kind = journal[1].kind.clone();
    let replacement = Entry::from(if original_kind == "wall_clock.now" {
        WasiEntry::MonotonicNow { nanos: 1 }
    } else {
        WasiEntry::WallClockNow {
            seconds: 1,
            nanos: 0,
        }
    });
    journal[1] =
        hypergraph_runtime::journal::Journal::to_records(std::slice::from_ref(&replacement))
            .remove(0);
    journal[1].seq = 1;
    let prepared = hg
        .prepared(
            &hg.store
                .deployment_version("dice", 1)
                .await
                .unwrap()
                .unwrap(),
        )
        .await
        .unwrap();
    let mutated = replay(&hg.engine, &prepared, &recorded).await.unwrap();
    let d = divergence(&mutated);
    assert_eq!(d.seq, Some(1), "{d}");
    assert_eq!(d.expected["kind"], replacement.kind());
    assert_eq!(d.actual["kind"], original_kind.as_str());

    // A recorded value changed (same call, different answer): the result differs.
    let mut recorded = load(hg.store.as_ref(), &run.id).await.unwrap();
    let journal = &mut recorded.steps[0].attempts[0].journal;
    let wall = journal
        .iter_mut()
        .find(|r| r.kind == "wall_clock.now")
        .expect("a wall clock read");
    wall.data = json!({"kind": "wall_clock.now", "seconds": 1, "nanos": 0}).to_string();
    let changed = replay(&hg.engine, &prepared, &recorded).await.unwrap();
    let d = divergence(&changed);
    assert_eq!(d.seq, None, "{d}");
    assert_eq!(d.actual["output"]["ok"]["rolled-at-ms"], 1000);

    // A truncated journal: the guest makes a call the recording does not have.
    let mut recorded = load(hg.store.as_ref(), &run.id).await.unwrap();
    recorded.steps[0].attempts[0].journal.truncate(2);
    let truncated = replay(&hg.engine, &prepared, &recorded).await.unwrap();
    let d = divergence(&truncated);
    assert_eq!((d.seq, d.expected["kind"].as_str()), (Some(2), Some("end")));
}

#[tokio::test]
async fn a_changed_component_diverges_at_the_changed_call() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "flood", "log-flood.wat", Policy::default()).await;
    let run = run(&hg, "flood/flood", json!(3)).await;

    let same = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
    assert!(same.identical());

    let compatible = ReplayWith::Component(fixture("log-flood-compatible.wat"));
    assert!(hg
        .replay_run(&run.id, &compatible)
        .await
        .unwrap()
        .identical());

    let breaking = ReplayWith::Component(fixture("log-flood-breaking.wat"));
    let report = hg.replay_run(&run.id, &breaking).await.unwrap();
    let d = divergence(&report);
    assert_eq!(d.seq, Some(0), "{d}");
    assert_eq!(d.expected["message"], "hello");
    assert_eq!(d.actual["message"], "hullo");

    // A component without the task at all.
    let missing = ReplayWith::Component(fixture("counter.wat"));
    let d = divergence(&hg.replay_run(&run.id, &missing).await.unwrap());
    assert_eq!(d.seq, None);
    assert!(
        d.actual["missing"].as_str().unwrap().contains("flood"),
        "{d}"
    );

    // --version: deploy the breaking change as v2, replay the v1 run on it.
    deploy(&hg, "flood", "log-flood-breaking.wat", Policy::default()).await;
    let on_v2 = hg
        .replay_run(&run.id, &ReplayWith::Version(2))
        .await
        .unwrap();
    assert_eq!(divergence(&on_v2).seq, Some(0));
    let on_v1 = hg
        .replay_run(&run.id, &ReplayWith::Version(1))
        .await
        .unwrap();
    assert!(on_v1.identical());
    let err = hg
        .replay_run(&run.id, &ReplayWith::Version(7))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no version 7"), "{err:#}");
}

#[tokio::test]
async fn failures_replay_identically_too() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let policy = Policy {
        timeout_ms: Some(200),
        memory_limit_bytes: Some(32 << 20),
        ..Policy::default()
    };
    deploy(&hg, "hostile", "hostile.wat", policy).await;
    for task in [
        "hostile/trap",
        "hostile/bomb",
        "hostile/recurse",
        "hostile/spin",
    ] {
        let run = run(&hg, task, json!(null)).await;
        let report = hg.replay_run(&run.id, &ReplayWith::Pinned).await.unwrap();
        assert!(report.identical(), "{task}: {report:?}");
    }
}

#[tokio::test]
async fn check_upgrade_passes_compatible_and_catches_breaking_changes() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy(&hg, "flood", "log-flood.wat", Policy::default()).await;
    for n in [0, 1, 2, 5] {
        run(&hg, "flood/flood", json!(n)).await;
    }
    let ok = hg
        .check_upgrade("flood", &fixture("log-flood-compatible.wat"), 20)
        .await
        .unwrap();
    assert_eq!((ok.identical, ok.diverged), (4, 0), "{ok:?}");

    let bad = hg
        .check_upgrade("flood", &fixture("log-flood-breaking.wat"), 20)
        .await
        .unwrap();
    // n = 0 logs nothing, so that run cannot tell the two versions apart.
    assert_eq!((bad.identical, bad.diverged), (1, 3), "{bad:?}");

    let last_two = hg
        .check_upgrade("flood", &fixture("log-flood-breaking.wat"), 2)
        .await
        .unwrap();
    assert_eq!(last_two.runs.len(), 2);

    let unknown = hg
        .check_upgrade("nope", &fixture("log-flood.wat"), 20)
        .await
        .unwrap_err();
    assert!(format!("{unknown:#}").contains("unknown deployment `nope`"));
    let garbage = hg.check_upgrade("flood", b"garbage", 20).await.unwrap_err();
    assert!(
        format!("{garbage:#}").contains("not a WebAssembly component"),
        "{garbage:#}"
    );
}

#[tokio::test]
async fn check_upgrade_gates_a_real_rust_task() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    hg.deploy("greet", &built("examples/greet"), &Policy::default())
        .await
        .unwrap();
    for name in ["Ada", "Grace"] {
        run(&hg, "greet/greet", json!(name)).await;
    }
    let refactor = built_with("examples/greet", &["compatible-refactor"]);
    let breaking = built_with("examples/greet", &["breaking-change"]);
    assert_ne!(refactor, breaking);

    let ok = hg.check_upgrade("greet", &refactor, 20).await.unwrap();
    assert_eq!((ok.identical, ok.diverged), (2, 0), "{ok:?}");
    let caught = hg.check_upgrade("greet", &breaking, 20).await.unwrap();
    assert_eq!((caught.identical, caught.diverged), (0, 2), "{caught:?}");
    let d = divergence(&caught.runs[0]);
    assert_eq!(d.seq, Some(0));
    assert_eq!(d.expected["kind"], "log");
    assert_eq!(d.actual["kind"], "wall_clock.now");
}
