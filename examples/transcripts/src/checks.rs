//! Consistency checks of the files around the code (`cargo test --lib` on the build machine): the
//! DAG follows the input convention against the exports of `wit/world.wit`, and the example
//! inputs have the shape of a `job` (the workflow's) or of a list of tracks (the DAG's). The DAG
//! and the inputs are also run through the text functions, the same ones the tasks call.

use std::collections::{BTreeMap, BTreeSet};

use crate::text::{self, FetchError, Job, Track};

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The parameter names of every export of `wit/world.wit` (one `export name: func(...)` per line).
fn exports() -> BTreeMap<String, Vec<String>> {
    let wit = file("wit/world.wit");
    let mut exports = BTreeMap::new();
    for line in wit.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((name, signature)) = rest.split_once(": func(") else {
            continue;
        };
        let mut params = Vec::new();
        let (mut depth, mut current) = (0, String::new());
        for c in signature.chars() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                ')' if depth == 0 => break,
                ',' if depth == 0 => {
                    params.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        params.push(current);
        let names = params
            .iter()
            .filter_map(|p| p.split_once(':').map(|(n, _)| n.trim().to_string()))
            .collect();
        exports.insert(name.to_string(), names);
    }
    exports
}

fn dag() -> toml::Table {
    file("pipeline.dag.toml")
        .parse()
        .expect("pipeline.dag.toml is TOML")
}

#[test]
fn dag_steps_follow_the_input_convention() {
    let exports = exports();
    assert!(exports.len() >= 11, "exports: {exports:?}");
    let dag = dag();
    assert_eq!(dag["name"].as_str(), Some("transcripts-dag"));
    let function = |task: &str| -> String {
        let function = task
            .strip_prefix("transcripts/")
            .unwrap_or_else(|| panic!("{task} is not a task of `transcripts`"));
        assert!(exports.contains_key(function), "no export {function}");
        function.to_string()
    };
    let on_failure = function(dag["on_failure"].as_str().unwrap());
    assert_eq!(
        exports[&on_failure].len(),
        1,
        "on_failure takes one parameter"
    );

    let mut seen = BTreeSet::new();
    for step in dag["step"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let task = function(step["task"].as_str().unwrap());
        let parents: BTreeSet<&str> = step
            .get("parents")
            .and_then(|p| p.as_array())
            .map(|p| p.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        for parent in &parents {
            assert!(
                seen.contains(*parent),
                "{name}: parent {parent} is not an earlier step"
            );
        }
        let args: BTreeSet<&str> = step
            .get("args")
            .and_then(|a| a.as_table())
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for param in &exports[&task] {
            assert!(
                param == "input"
                    || parents.contains(param.as_str())
                    || args.contains(param.as_str()),
                "step {name}: parameter `{param}` of {task} is neither input, a parent nor an arg"
            );
        }
        for arg in &args {
            assert!(
                exports[&task].iter().any(|p| p == arg),
                "step {name}: unused arg {arg}"
            );
        }
        assert!(seen.insert(name), "duplicate step {name}");
    }
}

#[test]
fn dag_runs_through_the_text_functions() {
    let dag = dag();
    let steps = dag["step"].as_array().unwrap();
    let arg = |step: &str, key: &str| -> toml::Value {
        steps
            .iter()
            .find(|s| s["name"].as_str() == Some(step))
            .and_then(|s| s.get("args"))
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_else(|| panic!("{step}.args.{key}"))
    };
    let index = |step: &str| arg(step, "index").as_integer().unwrap() as usize;
    assert_eq!((index("track-a"), index("track-b")), (0, 1));
    let input = |name: &str| -> Vec<Track> {
        serde_json::from_str(&file(&format!("inputs/{name}.json"))).unwrap()
    };
    let (review, flaky, broken) = (
        input("review"),
        input("review-flaky"),
        input("review-broken"),
    );
    // review-flaky: bob's first attempt fails with a retryable error, the second succeeds, and
    // gives the track of review.json.
    assert!(matches!(
        text::fetch(&flaky[1], 1),
        Err(FetchError::Retryable(_))
    ));
    assert_eq!(
        text::fetch(&flaky[1], 2).unwrap(),
        text::fetch(&review[1], 1).unwrap()
    );
    // review-broken: bob's track fails every attempt, and is not retried.
    for attempt in 1..=5 {
        assert!(matches!(
            text::fetch(&broken[1], attempt),
            Err(FetchError::Rejected(_))
        ));
    }
    let a = text::fetch(&review[index("track-a")], 1).unwrap();
    let b = text::fetch(&review[index("track-b")], 1).unwrap();
    let transcript = text::transcribe_all(&[a, b]);
    let topics = text::topics(
        &transcript,
        arg("topics", "limit").as_integer().unwrap() as u32,
    );
    let title = text::title(&topics, arg("title", "hint").as_str());
    let summary = text::summary(
        &transcript,
        &topics,
        arg("summary", "limit").as_integer().unwrap() as u32,
    );
    let report = text::report(title, summary, &topics, &transcript, Vec::new());
    eprintln!("{report:#?}");
    assert_eq!(report.speakers, ["alice", "bob"]);
    assert_eq!(
        report.title,
        "Rollback plan review: invoice, migration and plan"
    );
    assert_eq!(
        report.topics,
        ["invoice", "migration", "plan", "rollback", "batch"]
    );
    assert_eq!((report.segments, report.words), (13, 114));
    assert_eq!(report.summary.lines().count(), 3);
}

#[test]
fn inputs_are_jobs() {
    for name in ["meeting", "flaky", "broken", "slow"] {
        let job: Job = serde_json::from_str(&file(&format!("inputs/{name}.json"))).unwrap();
        assert_eq!(job.tracks.len(), 3, "{name}");
        assert_eq!(job.title_hint.as_deref(), Some("Billing sync"));
        assert_eq!(job.stage_delay_ms.is_some(), name == "slow");
    }
    // The DAG's inputs: lists of two tracks.
    for name in ["review", "review-flaky", "review-broken"] {
        let tracks: Vec<Track> =
            serde_json::from_str(&file(&format!("inputs/{name}.json"))).unwrap();
        let speakers: Vec<&str> = tracks.iter().map(|t| t.speaker.as_str()).collect();
        assert_eq!(speakers, ["alice", "bob"], "{name}");
    }
    let demo: serde_json::Value = serde_json::from_str(&file("demo.json")).unwrap();
    assert_eq!(demo["deployment"], "transcripts");
    // The demo deploys with retries, so bob's #flaky fetch of flaky.json is retried.
    assert_eq!(demo["policy"]["max_attempts"], 3);
    for run in demo["runs"].as_array().unwrap() {
        if run["task"] == "transcripts/pipeline" {
            serde_json::from_value::<Job>(run["input"].clone()).unwrap();
        }
    }
}

#[test]
fn meeting_end_to_end_and_failure_injection() {
    let job: Job = serde_json::from_str(&file("inputs/meeting.json")).unwrap();
    let fetched: Vec<Track> = job
        .tracks
        .iter()
        .map(|t| text::fetch(t, 1).unwrap())
        .collect();
    let transcript = text::transcribe_all(&fetched);
    let topics = text::topics(&transcript, 5);
    assert_eq!(
        text::title(&topics, job.title_hint.as_deref()),
        "Billing sync: invoice, migration and release"
    );
    assert_eq!(transcript.speakers, ["alice", "bob", "carol"]);

    let flaky: Job = serde_json::from_str(&file("inputs/flaky.json")).unwrap();
    let broken: Job = serde_json::from_str(&file("inputs/broken.json")).unwrap();
    let outcome = |job: &Job, attempt| -> Vec<bool> {
        job.tracks
            .iter()
            .map(|t| text::fetch(t, attempt).is_ok())
            .collect()
    };
    assert_eq!(outcome(&flaky, 1), [true, false, true]);
    assert_eq!(outcome(&flaky, 2), [true, true, true]);
    assert_eq!(outcome(&broken, 1), [true, true, false]);
    assert_eq!(outcome(&broken, 5), [true, true, false]);
    // After its retry, the flaky track is the same as the clean one.
    assert_eq!(text::fetch(&flaky.tracks[1], 2).unwrap(), fetched[1]);
}
