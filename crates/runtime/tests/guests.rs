//! Real Rust guests, built by `hypergraph_runtime::builder` with the repo's toolchain, run in a real host
//! against a real SQLite file: JSON ↔ WIT round trips for every type kind through a live instance,
//! fresh instances, journaled clocks and random, captured stdout and logs, application errors.

use hypergraph_testing as common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use hypergraph_build::{build_guest, BuildOptions};
use hypergraph_runtime::store::{Policy, Status};
use serde_json::{json, Value};

/// Builds a guest crate (relative to the repo) once per test process and returns its component.
fn built(crate_dir: &str) -> Vec<u8> {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let options = BuildOptions {
        target_dir: Some(repo().join("target/guests")),
        ..BuildOptions::default()
    };
    let path: PathBuf = build_guest(&repo().join(crate_dir), &options)
        .unwrap_or_else(|e| panic!("building {crate_dir}: {e:#}"));
    std::fs::read(path).unwrap()
}

async fn deploy_guest(hg: &hypergraph_runtime::Hypergraph, name: &str, crate_dir: &str) {
    hg.deploy(name, &built(crate_dir), &Policy::default())
        .await
        .unwrap_or_else(|e| panic!("deploying {crate_dir}: {e:#}"));
}

#[tokio::test]
async fn every_wit_type_kind_round_trips_through_a_live_guest() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy_guest(&hg, "types", "tests/guests/types-echo").await;
    let cases: Vec<(&str, Value, Value)> = vec![
        ("echo-bool", json!(true), json!(true)),
        ("echo-s8", json!(-128), json!(-128)),
        ("echo-u8", json!(255), json!(255)),
        ("echo-s16", json!(-32768), json!(-32768)),
        ("echo-u16", json!(65535), json!(65535)),
        ("echo-s32", json!(-2147483648i64), json!(-2147483648i64)),
        ("echo-u32", json!(4294967295u32), json!(4294967295u32)),
        (
            "echo-s64",
            json!("-9223372036854775808"),
            json!("-9223372036854775808"),
        ),
        (
            "echo-u64",
            json!("18446744073709551615"),
            json!("18446744073709551615"),
        ),
        ("echo-u64", json!(42), json!(42)),
        ("echo-f32", json!(1.5), json!(1.5)),
        ("echo-f64", json!(-0.1), json!(-0.1)),
        ("echo-f64", json!("NaN"), json!("NaN")),
        ("echo-f64", json!("-inf"), json!("-inf")),
        ("echo-char", json!("🦀"), json!("🦀")),
        (
            "echo-string",
            json!("héllo\n\"world\""),
            json!("héllo\n\"world\""),
        ),
        ("echo-list-u32", json!([1, 2, 3]), json!([1, 2, 3])),
        ("echo-list-u8", json!("AQID"), json!([1, 2, 3])),
        ("echo-list-u8", json!([]), json!([])),
        (
            "echo-tuple",
            json!([7, "seven", true]),
            json!([7, "seven", true]),
        ),
        ("echo-enum", json!("green"), json!("green")),
        ("echo-option", json!(null), json!(null)),
        ("echo-option", json!("some"), json!("some")),
        ("echo-result", json!({"ok": "fine"}), json!({"ok": "fine"})),
        (
            "echo-flags",
            json!(["read", "write"]),
            json!(["read", "write"]),
        ),
        ("echo-flags", json!([]), json!([])),
        ("echo-variant", json!("empty"), json!("empty")),
        (
            "echo-variant",
            json!({"circle": 2.5}),
            json!({"circle": 2.5}),
        ),
    ];
    for (function, input, expected) in &cases {
        let run = run(&hg, &format!("types/{function}"), input.clone()).await;
        assert_eq!(
            run.status,
            Status::Succeeded,
            "{function} {input}: {:?}",
            run.error
        );
        assert_eq!(run.output.as_ref(), Some(expected), "{function} {input}");
    }

    // A record, and a nested signature with several named parameters; echo-nested returns a
    // record with one field per parameter, so the output equals the input.
    let point = json!({"x": 3, "y": -4, "label": "p"});
    assert_eq!(
        run(&hg, "types/echo-record", point.clone()).await.output,
        Some(point)
    );
    let nested = run(&hg, "types/echo-nested", nested_input()).await;
    assert_eq!(nested.status, Status::Succeeded, "{:?}", nested.error);
    let mut expected = nested_input();
    expected["bytes"] = json!([0, 255, 16]);
    expected["maybe-flags"] = json!(["read", "execute"]);
    assert_eq!(nested.output, Some(expected));
}

fn nested_input() -> Value {
    json!({
        "order": {
            "id": "18446744073709551615",
            "customer": "ada",
            "items": [
                {"sku": "tea", "quantity": 2, "note": null},
                {"sku": "mug", "quantity": 1, "note": "gift"}
            ],
            "shipping": {"x": 1, "y": -2, "label": "dock"},
            "status": {"ok": "blue"},
            "tags": ["a", "b"],
        },
        "shapes": [
            {"rectangle": {"x": 1, "y": 2, "label": "r"}},
            "empty",
            {"polygon": [{"x": 0, "y": 0, "label": ""}]},
            {"circle": 0.5}
        ],
        "maybe-flags": ["execute", "read"],
        "outcome": {"err": {"circle": 1.0}},
        "pairs": [["a", "red"], ["b", "blue"]],
        "bytes": "AP8Q",
    })
}

#[tokio::test]
async fn wrong_shapes_are_rejected_with_the_path_for_a_real_signature() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy_guest(&hg, "orders", "examples/orders").await;
    let err = hg
        .submit(&hypergraph_runtime::scheduler::RunRequest {
            task: "orders/pricing.quote".into(),
            input: json!({"order": {"customer": "ada", "priority": "express", "coupon": null,
                "items": [{"sku": "tea", "quantity": 1, "unit-price-cents": 5},
                          {"sku": "mug", "quantity": "two", "unit-price-cents": 5}]}}),
            meta: vec![],
        })
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("$.order.items[1].quantity"), "{err}");
    assert!(err.contains("expected u32"), "{err}");

    let bad_enum = hg
        .submit(&hypergraph_runtime::scheduler::RunRequest {
            task: "orders/pricing.quote".into(),
            input: json!({"order": {"customer": "ada", "priority": "warp", "coupon": null, "items": []}}),
            meta: vec![],
        })
        .await
        .unwrap_err();
    let bad_enum = format!("{bad_enum:#}");
    assert!(
        bad_enum.contains("$.order.priority") && bad_enum.contains("express"),
        "{bad_enum}"
    );
}

#[tokio::test]
async fn a_rust_global_counter_sees_a_fresh_instance_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy_guest(&hg, "types", "tests/guests/types-echo").await;
    let requests = vec![
        hypergraph_runtime::scheduler::RunRequest {
            task: "types/count".into(),
            ..Default::default()
        };
        100
    ];
    let ids = hg.submit_many(&requests).await.unwrap();
    drain(&hg).await;
    for id in ids {
        assert_eq!(detail(&hg, &id).await.output, Some(json!(1)));
    }
}

#[tokio::test]
async fn clocks_and_random_are_journaled_and_output_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy_guest(&hg, "dice", "examples/dice").await;
    deploy_guest(&hg, "greet", "examples/greet").await;

    let roll = run(&hg, "dice/roll", json!({"count": 3, "sides": 6})).await;
    assert_eq!(roll.status, Status::Succeeded, "{:?}", roll.error);
    let step = &roll.steps[0];
    let journal = hg.store.journal(&step.id, step.attempt).await.unwrap();
    let kinds: Vec<&str> = journal.iter().map(|r| r.kind.as_str()).collect();
    for kind in [
        "wall_clock.now",
        "monotonic_clock.now",
        "random.bytes",
        "log",
    ] {
        assert!(kinds.contains(&kind), "{kind} not journaled: {kinds:?}");
    }
    // The wall-clock value the guest returned is the one in the journal.
    let rolled_at = roll.output.as_ref().unwrap()["ok"]["rolled-at-ms"]
        .as_u64()
        .unwrap();
    let wall: Value = serde_json::from_str(
        &journal
            .iter()
            .find(|r| r.kind == "wall_clock.now")
            .unwrap()
            .data,
    )
    .unwrap();
    let journaled_ms =
        wall["seconds"].as_u64().unwrap() * 1000 + wall["nanos"].as_u64().unwrap() / 1_000_000;
    assert_eq!(rolled_at, journaled_ms);
    assert!(journal.iter().enumerate().all(|(i, r)| r.seq == i as u32));

    let greet = run(&hg, "greet/greet", json!({"name": "Ada"})).await;
    assert_eq!(greet.output, Some(json!("Hello, Ada!")));
    let logs = hg.store.run_logs(&greet.id).await.unwrap();
    let lines: Vec<(&str, &str)> = logs
        .iter()
        .map(|l| (l.line.stream.as_str(), l.line.message.as_str()))
        .collect();
    assert!(
        lines.contains(&("log", "greeting Ada (task greet/greet, attempt 1)")),
        "{lines:?}"
    );
    assert!(lines.contains(&("stdout", "Hello, Ada!")), "{lines:?}");
}

#[tokio::test]
async fn application_errors_fail_the_run_and_keep_the_error_value() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    deploy_guest(&hg, "orders", "examples/orders").await;
    let input = json!({"order": {"customer": "bob", "priority": "standard", "coupon": "BOGUS",
        "items": [{"sku": "tea", "quantity": 1, "unit-price-cents": 1250}]}});
    let failed = run(&hg, "orders/pricing.quote", input).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(error_kind(&failed), "application");
    assert_eq!(
        failed.error.as_ref().unwrap()["value"],
        json!({"unknown-coupon": "BOGUS"})
    );
}

#[tokio::test]
async fn a_truncated_binary_component_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let hg = open(dir.path()).await;
    let bytes = built("examples/greet");
    let err = hg
        .deploy("greet", &bytes[..bytes.len() / 2], &Policy::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("invalid"), "{err:#}");
    assert!(hg.store.deployments().await.unwrap().is_empty());
}
