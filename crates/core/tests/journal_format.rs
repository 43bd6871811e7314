//! The stored form of every journal entry kind, fixed: old databases and bundles must replay, so
//! each kind decodes from its JSON and encodes back to the very same bytes, under the same kind.

use std::collections::BTreeSet;

use hypergraph_core::journal::{Entry, Journal};
use hypergraph_core::model::JournalRecord;

/// One stored entry of every kind (and of every shape a kind's fields take), as written today.
const STORED: &[&str] = &[
    r#"{"kind":"wall_clock.now","seconds":1700000000,"nanos":123456789}"#,
    r#"{"kind":"wall_clock.resolution","seconds":0,"nanos":1}"#,
    r#"{"kind":"monotonic_clock.now","nanos":42}"#,
    r#"{"kind":"monotonic_clock.resolution","nanos":1}"#,
    r#"{"kind":"random.bytes","secure":true,"hex":"00ff"}"#,
    r#"{"kind":"random.bytes","secure":false,"hex":""}"#,
    r#"{"kind":"random.insecure_seed","hi":18446744073709551615,"lo":2}"#,
    r#"{"kind":"log","stream":"stdout","level":"info","message":"hi \"there\"\n"}"#,
    r#"{"kind":"log.dropped","count":4}"#,
    r#"{"kind":"kv.get","key":"k","value":{"utf8":"v"},"version":3}"#,
    r#"{"kind":"kv.get","key":"k","value":{"base64":"/wA="},"version":0}"#,
    r#"{"kind":"kv.get","key":"k","value":null}"#,
    r#"{"kind":"kv.list_keys","prefix":"p","keys":["pa","pb"]}"#,
    r#"{"kind":"kv.list_keys","prefix":"","keys":[]}"#,
    r#"{"kind":"kv.set","key":"k","value":{"utf8":"v"}}"#,
    r#"{"kind":"kv.delete","key":"k"}"#,
    r#"{"kind":"http.request","request":{"method":"POST","uri":"http://127.0.0.1:8080/x","headers":[["content-type","text/plain"]],"body":{"utf8":"ping"}},"outcome":{"response":{"status":200,"headers":[["x-a","1"]],"body":{"base64":"AAE="}}}}"#,
    r#"{"kind":"http.request","request":{"method":"GET","uri":"http://example.com/","headers":[]},"outcome":{"failed":{"error":{"code":"denied"}}}}"#,
    r#"{"kind":"http.request","request":{"method":"GET","uri":"http://nx.example/","headers":[],"body":{"utf8":""}},"outcome":{"failed":{"error":{"code":"dns-error","detail":"nx"}}}}"#,
    r#"{"kind":"workflow.start","task":"app/child","input":"{\"n\":1}","child":0,"step_id":"0190","error":null}"#,
    r#"{"kind":"workflow.start","task":"app/nope","input":"{}","child":null,"step_id":null,"error":"no such task"}"#,
    r#"{"kind":"workflow.join","children":[0,1],"results":[{"ok":"1"},{"err":{"kind":"trap","message":"boom"}}]}"#,
    r#"{"kind":"workflow.join","children":[2],"results":[{"err":{"kind":"application","message":"failed","value":"{\"e\":1}"}}]}"#,
    r#"{"kind":"workflow.join_any","children":[0,1],"finished":[[1,{"ok":"null"}]]}"#,
    r#"{"kind":"workflow.sleep","millis":10,"until":1700000000000000}"#,
    r#"{"kind":"workflow.timer_fired"}"#,
    r#"{"kind":"workflow.wait_event","name":"approved","timeout_millis":null,"after":0,"deadline":null}"#,
    r#"{"kind":"workflow.wait_event","name":"approved","timeout_millis":500,"after":7,"deadline":1700000000500000}"#,
    r#"{"kind":"workflow.event","name":"approved","payload":"{\"ok\":true}"}"#,
    r#"{"kind":"workflow.event","name":"approved","payload":null}"#,
];

/// Every kind there is.
const KINDS: &[&str] = &[
    "wall_clock.now",
    "wall_clock.resolution",
    "monotonic_clock.now",
    "monotonic_clock.resolution",
    "random.bytes",
    "random.insecure_seed",
    "log",
    "log.dropped",
    "kv.get",
    "kv.list_keys",
    "kv.set",
    "kv.delete",
    "http.request",
    "workflow.start",
    "workflow.join",
    "workflow.join_any",
    "workflow.sleep",
    "workflow.timer_fired",
    "workflow.wait_event",
    "workflow.event",
];

fn kind_of(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["kind"].as_str().unwrap().to_string()
}

#[test]
fn every_kind_decodes_and_encodes_byte_for_byte() {
    let mut seen = BTreeSet::new();
    for (seq, &stored) in STORED.iter().enumerate() {
        let kind = kind_of(stored);
        let record = JournalRecord {
            seq: seq as u32,
            kind: kind.clone(),
            data: stored.to_string(),
        };
        let entry = Entry::from_record(&record).unwrap_or_else(|e| panic!("{stored}: {e:#}"));
        assert_eq!(entry.kind(), kind, "{stored}");
        assert_eq!(serde_json::to_string(&entry).unwrap(), stored);
        let parsed: Entry = serde_json::from_str(stored).unwrap();
        assert_eq!(parsed, entry, "{stored}");
        let again = Journal::to_records(std::slice::from_ref(&entry));
        assert_eq!(
            (again[0].kind.as_str(), again[0].data.as_str()),
            (kind.as_str(), stored)
        );
        assert_eq!(
            entry.is_workflow(),
            kind.starts_with("workflow."),
            "{stored}"
        );
        seen.insert(kind);
    }
    let all: BTreeSet<String> = KINDS.iter().map(|k| k.to_string()).collect();
    assert_eq!(seen, all, "every kind has a stored example");
}

#[test]
fn old_hex_key_value_bytes_still_decode_and_encode_in_the_current_form() {
    let old = r#"{"kind":"kv.set","key":"k","value":"68656c6c6f"}"#;
    let record = JournalRecord {
        seq: 0,
        kind: "kv.set".into(),
        data: old.into(),
    };
    let entry = Entry::from_record(&record).unwrap();
    assert_eq!(
        serde_json::to_string(&entry).unwrap(),
        r#"{"kind":"kv.set","key":"k","value":{"utf8":"hello"}}"#
    );
}

#[test]
fn unknown_kinds_and_bad_fields_are_clear_errors() {
    for data in [
        r#"{"kind":"nope.nothing"}"#,
        r#"{"kind":"kv.get"}"#,
        r#"{"seconds":1}"#,
        "[]",
    ] {
        let err = Entry::from_record(&JournalRecord {
            seq: 3,
            kind: "x".into(),
            data: data.into(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("journal entry 3"), "{err}");
    }
}
