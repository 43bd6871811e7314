use serde_json::json;

use std::time::Duration;

use super::file::{FilePolicy, STEP_POLICY_KEYS, TOP_KEYS, WORKFLOW_POLICY_KEYS};
use super::*;
use crate::retry::RetryOn;

const EXAMPLE: &str = r#"
# Runs are started with `hypergraph run <name> --input <json>`.
name = "transcripts-dag"
description = "Fetch two tracks, transcribe them, merge the transcripts"
# Task that receives the map of failed step name -> error when the run fails.
on_failure = "transcripts/report-failure"

[policy]
max_attempts = 3
backoff = "200ms"
timeout = "30s"
schedule_to_start = "5m"
run_timeout = "1h"

[[step]]
name = "fetch-a"
task = "transcripts/fetch-track"
[step.args]
track = 0

[[step]]
name = "fetch-b"
task = "transcripts/fetch-track"
[step.args]
track = 1

[[step]]
name = "transcribe-a"
task = "transcripts/transcribe-a"
parents = ["fetch-a"]
[step.policy]
timeout = "2m"

[[step]]
name = "transcribe-b"
task = "transcripts/transcribe-b"
parents = ["fetch-b"]

[[step]]
name = "merge"
task = "transcripts/merge"
parents = ["transcribe-a", "transcribe-b"]
[step.args]
format = "srt"
[step.policy]
max_attempts = 5
retry_on = ["trap", "application"]
"#;

/// The tasks the tests know, with their parameter names.
fn registry(task: &str) -> Result<Vec<String>, String> {
    let params: &[&str] = match task {
        "transcripts/fetch-track" => &["input", "track"],
        "transcripts/transcribe-a" => &["fetch-a"],
        "transcripts/transcribe-b" => &["fetch-b"],
        "transcripts/merge" => &["transcribe-a", "transcribe-b", "format"],
        "transcripts/report-failure" => &["failures"],
        "t/noop" => &[],
        "t/pair" => &["left", "right"],
        _ => return Err(format!("no task `{task}`")),
    };
    Ok(params.iter().map(|param| param.to_string()).collect())
}

fn example() -> DagSpec {
    DagSpec::parse(EXAMPLE).unwrap()
}

/// A workflow of `t/noop` steps, each `(name, parents)`.
fn graph(steps: &[(&str, &[&str])]) -> DagSpec {
    DagSpec {
        name: "wf".to_string(),
        description: None,
        on_failure: None,
        policy: Policy::default(),
        steps: steps
            .iter()
            .map(|(name, parents)| DagStep {
                name: name.to_string(),
                task: "t/noop".to_string(),
                parents: parents.iter().map(|parent| parent.to_string()).collect(),
                args: Map::new(),
                policy: Policy::default(),
            })
            .collect(),
    }
}

fn problems(spec: &DagSpec) -> Vec<String> {
    match spec.validate(&registry) {
        Ok(()) => Vec::new(),
        Err(DagErrors(problems)) => problems,
    }
}

fn names<'a>(steps: impl IntoIterator<Item = &'a DagStep>) -> Vec<&'a str> {
    steps.into_iter().map(|step| step.name.as_str()).collect()
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn unknown_keys_of(text: &str) -> Vec<String> {
    match DagSpec::parse(text) {
        Err(DagError::UnknownKeys(problems)) => problems,
        other => panic!("expected unknown keys, got {other:?}"),
    }
}

fn toml_error_of(text: &str) -> String {
    match DagSpec::parse(text) {
        Err(DagError::Toml(message)) => message,
        other => panic!("expected a TOML error, got {other:?}"),
    }
}

#[test]
fn parses_the_example() {
    let spec = example();
    assert_eq!(spec.name, "transcripts-dag");
    assert_eq!(
        spec.description.as_deref(),
        Some("Fetch two tracks, transcribe them, merge the transcripts")
    );
    assert_eq!(
        spec.on_failure.as_deref(),
        Some("transcripts/report-failure")
    );
    assert_eq!(
        spec.policy,
        Policy {
            retry: RetryPolicy {
                max_attempts: Some(3),
                backoff: Some(Duration::from_millis(200)),
                ..RetryPolicy::default()
            },
            timeout_ms: Some(30_000),
            schedule_to_start_ms: Some(300_000),
            run_timeout_ms: Some(3_600_000),
            ..Policy::default()
        }
    );
    assert_eq!(
        names(&spec.steps),
        [
            "fetch-a",
            "fetch-b",
            "transcribe-a",
            "transcribe-b",
            "merge"
        ]
    );
    let fetch = &spec.steps[0];
    assert_eq!(fetch.task, "transcripts/fetch-track");
    assert!(fetch.parents.is_empty());
    assert_eq!(Value::Object(fetch.args.clone()), json!({"track": 0}));
    assert_eq!(fetch.policy, Policy::default());
    let merge = spec.step("merge").unwrap();
    assert_eq!(merge.parents, ["transcribe-a", "transcribe-b"]);
    assert_eq!(Value::Object(merge.args.clone()), json!({"format": "srt"}));
    assert_eq!(merge.policy.retry.max_attempts, Some(5));
    assert_eq!(
        merge.policy.retry.retry_on,
        Some(vec![RetryOn::Trap, RetryOn::Application])
    );
    assert_eq!(
        spec.step("transcribe-a").unwrap().policy.timeout_ms,
        Some(120_000)
    );
    assert!(spec.step("missing").is_none());
}

#[test]
fn the_example_is_valid() {
    assert_eq!(example().validate(&registry), Ok(()));
}

#[test]
fn parses_a_minimal_file() {
    let spec = DagSpec::parse("name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"").unwrap();
    assert_eq!(spec, graph(&[("a", &[])]));
    assert_eq!(spec.validate(&registry), Ok(()));
}

#[test]
fn serializes_in_the_file_shape() {
    let spec = DagSpec::parse(
        "name = \"wf\"\n[policy]\nmax_attempts = 2\ntimeout = \"90s\"\n\
             [[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [[step]]\nname = \"b\"\ntask = \"t/pair\"\nparents = [\"a\"]\n\
             [step.args]\nleft = 1\nright = [true]\n[step.policy]\nbackoff = \"1s\"",
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        json!({
            "name": "wf",
            "policy": {"max_attempts": 2, "timeout": "1m 30s"},
            "step": [
                {"name": "a", "task": "t/noop", "policy": {}},
                {
                    "name": "b",
                    "task": "t/pair",
                    "parents": ["a"],
                    "args": {"left": 1, "right": [true]},
                    "policy": {"backoff": "1s"},
                },
            ],
        })
    );
}

#[test]
fn converts_args_to_json() {
    let spec = DagSpec::parse(
        r#"
name = "wf"
[[step]]
name = "a"
task = "t/noop"
[step.args]
text = "hi"
count = -3
ratio = 0.5
flag = false
when = 1979-05-27T07:32:00Z
day = 1979-05-27
list = [1, "two", [3]]
nested = { inner = { deep = "yes" } }
"#,
    )
    .unwrap();
    assert_eq!(
        Value::Object(spec.steps[0].args.clone()),
        json!({
            "text": "hi",
            "count": -3,
            "ratio": 0.5,
            "flag": false,
            "when": "1979-05-27T07:32:00Z",
            "day": "1979-05-27",
            "list": [1, "two", [3]],
            "nested": {"inner": {"deep": "yes"}},
        })
    );
}

#[test]
fn rejects_args_json_cannot_hold() {
    let error = DagSpec::parse(
        "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.args]\npoints = [{ x = 1.0 }, { x = nan }]",
    )
    .unwrap_err();
    assert_eq!(
        error,
        DagError::Args(
            "step `a`: `args` value `points[1].x` is not a finite number, \
                 which JSON cannot represent"
                .to_string()
        )
    );
}

#[test]
fn toml_syntax_errors_keep_line_and_column() {
    let message = toml_error_of("name = \"wf\"\n[[step]\nname = \"a\"\n");
    assert!(message.contains("line 2, column"), "{message}");
    let message = toml_error_of("name = \"wf\"\n\n[[step]]\nname = \"a\"\ntask = t/noop\n");
    assert!(message.contains("line 5"), "{message}");
}

#[test]
fn type_errors_and_missing_keys_name_the_line() {
    let message = toml_error_of("name = \"wf\"\n[[step]]\nname = \"a\"\n");
    assert!(message.contains("missing field `task`"), "{message}");
    let message = toml_error_of(
        "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\nparents = \"b\"\n",
    );
    assert!(message.contains("line 5"), "{message}");
    assert!(
        message.contains("invalid type: string \"b\", expected a sequence"),
        "{message}"
    );
    let message = toml_error_of("name = \"wf\"\n[policy]\ntimeout = \"soon\"\n");
    assert!(message.contains("invalid duration `soon`"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    let message = toml_error_of("name = \"wf\"\n[policy]\nmax_attempts = \"three\"\n");
    assert!(message.contains("line 3, column 16"), "{message}");
    assert!(
        message.contains("invalid type: string \"three\", expected u32"),
        "{message}"
    );
    let message = toml_error_of(
        "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.policy]\nretry_on = [\"trap\", \"oom\"]\n",
    );
    assert!(message.contains("line 6, column 21"), "{message}");
    assert!(message.contains("unknown variant `oom`"), "{message}");
    let message = toml_error_of("name = \"wf\"\n[policy]\nbackoff = \"1 fortnight\"\n");
    assert!(
        message.contains("invalid duration `1 fortnight`"),
        "{message}"
    );
}

#[test]
fn unknown_keys_are_named_with_their_table_and_a_suggestion() {
    let problems = unknown_keys_of(
        r#"
name = "wf"
descripton = "typo"
[policy]
retires = 3
[[step]]
name = "a"
task = "t/noop"
parent = ["b"]
[step.policy]
timeot = "1s"
[[step]]
task = "t/noop"
colour = "blue"
"#,
    );
    assert_eq!(
        problems,
        [
            "unknown key `descripton` at the top level; did you mean `description`?",
            "unknown key `retires` in [policy]; did you mean `retry_on`?",
            "unknown key `parent` in [[step]] `a`; did you mean `parents`?",
            "unknown key `timeot` in [step.policy] of step `a`; did you mean `timeout`?",
            "unknown key `colour` in [[step]] #2 (known keys: `name`, `task`, `parents`, \
                 `args`, `policy`)",
        ]
    );
    let message = DagError::UnknownKeys(problems).to_string();
    assert_eq!(message.lines().count(), 5);
}

#[test]
fn suggestions_pick_the_closest_key() {
    let cases = [
        ("retries", "; did you mean `retry_on`?"),
        ("max_attempt", "; did you mean `max_attempts`?"),
        ("attempts", "; did you mean `max_attempts`?"),
        ("back_off", "; did you mean `backoff`?"),
        ("backof", "; did you mean `backoff`?"),
        ("max-backoff", "; did you mean `max_backoff`?"),
        ("schedule", "; did you mean `schedule_to_start`?"),
        ("runtimeout", "; did you mean `run_timeout`?"),
        ("colour", ""),
        ("delay", ""),
    ];
    for (word, expected) in cases {
        let suggestion = did_you_mean(word, WORKFLOW_POLICY_KEYS.iter().copied());
        assert_eq!(suggestion, expected, "{word}");
    }
    // A tie goes to the first candidate.
    assert_eq!(did_you_mean("ab", ["ax", "ay"]), "");
    assert_eq!(
        did_you_mean("step-c", ["step-a", "step-b"]),
        "; did you mean `step-a`?"
    );
}

#[test]
fn a_misspelt_step_table_is_an_unknown_key() {
    assert_eq!(
        unknown_keys_of("name = \"wf\"\n[[steps]]\nname = \"a\"\ntask = \"t/noop\""),
        ["unknown key `steps` at the top level; did you mean `step`?"]
    );
}

#[test]
fn run_timeout_is_workflow_level_only() {
    assert_eq!(
        unknown_keys_of(
            "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
                 [step.policy]\nrun_timeout = \"1h\"\n"
        ),
        [
            "`run_timeout` limits the whole run, so it is only allowed in the workflow's \
              [policy], not in [step.policy] of step `a`"
        ]
    );
}

#[test]
fn args_keys_are_free() {
    let spec = DagSpec::parse(
        "name = \"wf\"\n[[step]]\nname = \"a\"\ntask = \"t/noop\"\n\
             [step.args]\nretires = 1\nanything = { at = \"all\" }",
    )
    .unwrap();
    assert_eq!(spec.steps[0].args.len(), 2);
}

#[test]
fn every_documented_key_parses() {
    let spec = DagSpec::parse(
        r#"
name = "wf"
description = "d"
on_failure = "t/one"
[policy]
max_attempts = 2
backoff = "1s"
max_backoff = "2s"
retry_on = ["timeout"]
timeout = "3s"
schedule_to_start = "4s"
run_timeout = "5s"
[[step]]
name = "a"
task = "t/noop"
parents = []
args = {}
[step.policy]
max_attempts = 6
backoff = "7s"
max_backoff = "8s"
retry_on = ["trap"]
timeout = "9s"
schedule_to_start = "10s"
"#,
    )
    .unwrap();
    let keys =
        |value: Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(keys(json.clone()).len(), TOP_KEYS.len());
    assert_eq!(
        keys(json["policy"].clone()).len(),
        WORKFLOW_POLICY_KEYS.len()
    );
    assert_eq!(
        keys(json["step"][0]["policy"].clone()).len(),
        STEP_POLICY_KEYS.len()
    );
    assert_eq!(
        spec.steps[0]
            .policy
            .schedule_to_start_ms
            .map(Duration::from_millis),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        spec.policy.run_timeout_ms.map(Duration::from_millis),
        Some(Duration::from_secs(5))
    );
}

#[test]
fn policy_key_lists_match_the_policy_types() {
    let retry = RetryPolicy {
        max_attempts: Some(2),
        backoff: Some(Duration::from_secs(1)),
        max_backoff: Some(Duration::from_secs(2)),
        retry_on: Some(vec![RetryOn::Trap]),
    };
    let keys =
        |value: Value| -> BTreeSet<String> { value.as_object().unwrap().keys().cloned().collect() };
    // Every field a DAG file can set, in the file's shape; a step has no `run_timeout`.
    let step = Policy {
        retry,
        timeout_ms: Some(1000),
        schedule_to_start_ms: Some(1000),
        ..Policy::default()
    };
    let workflow = FilePolicy::from(&Policy {
        run_timeout_ms: Some(1000),
        ..step.clone()
    });
    let step = FilePolicy::from(&step);
    let listed = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect();
    assert_eq!(
        keys(serde_json::to_value(workflow).unwrap()),
        listed(WORKFLOW_POLICY_KEYS)
    );
    assert_eq!(
        keys(serde_json::to_value(step).unwrap()),
        listed(STEP_POLICY_KEYS)
    );
}

#[test]
fn valid_names() {
    for name in ["a", "transcripts-dag", "step_2", "x-1_y"] {
        assert!(is_valid_name(name), "{name}");
    }
    for name in [
        "", "1a", "-a", "_a", "A", "fetchA", "a/b", "a b", "a.b", "é",
    ] {
        assert!(!is_valid_name(name), "{name}");
    }
}

#[test]
fn error_empty_workflow_name() {
    let mut spec = graph(&[("a", &[])]);
    spec.name = String::new();
    assert_eq!(problems(&spec), ["workflow name is empty"]);
}

#[test]
fn error_invalid_workflow_name() {
    let mut spec = graph(&[("a", &[])]);
    spec.name = "Transcripts/DAG".to_string();
    assert_eq!(
        problems(&spec),
        [
            "workflow name `Transcripts/DAG` is invalid: names use lowercase letters, digits, \
              `-` and `_`, and start with a letter"
        ]
    );
}

#[test]
fn error_no_steps() {
    assert_eq!(
        problems(&graph(&[])),
        ["workflow `wf` has no steps: declare at least one [[step]]"]
    );
    let spec = DagSpec::parse("name = \"wf\"").unwrap();
    assert_eq!(
        problems(&spec),
        ["workflow `wf` has no steps: declare at least one [[step]]"]
    );
}

#[test]
fn error_empty_step_name() {
    assert_eq!(
        problems(&graph(&[("a", &[]), ("", &["a"])])),
        ["step #2 has an empty name"]
    );
}

#[test]
fn error_invalid_step_name() {
    assert_eq!(
        problems(&graph(&[("Fetch A", &[])])),
        [
            "step name `Fetch A` is invalid: names use lowercase letters, digits, `-` and `_`, \
              and start with a letter"
        ]
    );
}

#[test]
fn error_step_named_input() {
    assert_eq!(
        problems(&graph(&[("input", &[])])),
        [
            "step name `input` is reserved: a parameter named `input` receives the workflow \
              input"
        ]
    );
}

#[test]
fn error_duplicate_step_names() {
    assert_eq!(
        problems(&graph(&[("a", &[]), ("b", &[]), ("a", &[]), ("a", &[])])),
        [
            "steps #1 and #3 are both named `a`: step names must be unique",
            "steps #1 and #4 are both named `a`: step names must be unique",
        ]
    );
}

#[test]
fn error_unknown_parent() {
    let spec = graph(&[
        ("transcribe-a", &[]),
        ("transcribe-b", &[]),
        ("merge", &["transcribe-a", "transcribe-c"]),
        ("report", &["nothing-like-it"]),
    ]);
    assert_eq!(
        problems(&spec),
        [
            "step `merge` names parent `transcribe-c`, which is not a step of this \
                 workflow; did you mean `transcribe-a`?",
            "step `report` names parent `nothing-like-it`, which is not a step of this \
                 workflow",
        ]
    );
}

#[test]
fn error_step_is_its_own_parent() {
    assert_eq!(
        problems(&graph(&[("a", &["a"])])),
        ["step `a` lists itself as a parent"]
    );
}

#[test]
fn error_repeated_parent() {
    assert_eq!(
        problems(&graph(&[("a", &[]), ("b", &["a", "a"])])),
        ["step `b` lists parent `a` more than once"]
    );
}

#[test]
fn error_cycle_with_its_path() {
    let spec = graph(&[
        ("start", &[]),
        ("a", &["start", "c"]),
        ("b", &["a"]),
        ("c", &["b"]),
    ]);
    assert_eq!(
        problems(&spec),
        ["steps form a cycle (each is a parent of the next): a -> b -> c -> a"]
    );
}

#[test]
fn error_cycle_starts_at_the_first_step_in_the_file() {
    // The search enters the cycle at `c`, the report still starts at `a`.
    let spec = graph(&[("c", &["b"]), ("a", &["c"]), ("b", &["a"])]);
    assert_eq!(
        problems(&spec),
        ["steps form a cycle (each is a parent of the next): c -> a -> b -> c"]
    );
    let spec = graph(&[("x", &[]), ("b", &["a"]), ("a", &["b"])]);
    assert_eq!(
        problems(&spec),
        ["steps form a cycle (each is a parent of the next): b -> a -> b"]
    );
}

#[test]
fn error_every_separate_cycle() {
    let spec = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["d"]), ("d", &["c"])]);
    assert_eq!(
        problems(&spec),
        [
            "steps form a cycle (each is a parent of the next): a -> b -> a",
            "steps form a cycle (each is a parent of the next): c -> d -> c",
        ]
    );
}

#[test]
fn error_unknown_task() {
    let mut spec = graph(&[("a", &[])]);
    spec.steps[0].task = "t/nope".to_string();
    assert_eq!(problems(&spec), ["step `a`: no task `t/nope`"]);
}

#[test]
fn error_parameter_the_convention_cannot_fill() {
    let mut spec = example();
    spec.steps[4].args.clear();
    assert_eq!(
        problems(&spec),
        [
            "task `transcripts/merge` of step `merge` takes parameter `format`, which is not \
              `input`, a parent step or an `args` key"
        ]
    );
}

#[test]
fn error_args_key_input() {
    let mut spec = example();
    spec.steps[0].args.insert("input".to_string(), json!(1));
    assert_eq!(
        problems(&spec),
        [
            "step `fetch-a` has an `args` key `input`, which is ambiguous: a parameter named \
              `input` receives the workflow input"
        ]
    );
}

#[test]
fn error_args_key_naming_a_parent() {
    let mut spec = example();
    spec.steps[4]
        .args
        .insert("transcribe-a".to_string(), json!("x"));
    assert_eq!(
        problems(&spec),
        [
            "step `merge` has an `args` key `transcribe-a`, which is ambiguous: \
              `transcribe-a` is also a parent, whose output a parameter of that name receives"
        ]
    );
}

#[test]
fn error_args_key_the_task_does_not_take() {
    let mut spec = example();
    spec.steps[4]
        .args
        .insert("formats".to_string(), json!("vtt"));
    spec.steps[2].args.insert("speed".to_string(), json!(2));
    let mut noop = graph(&[("a", &[])]);
    noop.steps[0].args.insert("x".to_string(), json!(1));
    assert_eq!(
        problems(&spec),
        [
            "step `transcribe-a` has an `args` key `speed`, which task \
                 `transcripts/transcribe-a` does not take (its parameters: `fetch-a`)",
            "step `merge` has an `args` key `formats`, which task `transcripts/merge` does \
                 not take (its parameters: `transcribe-a`, `transcribe-b`, `format`); did you \
                 mean `format`?",
        ]
    );
    assert_eq!(
        problems(&noop),
        [
            "step `a` has an `args` key `x`, which task `t/noop` does not take (it takes no \
              parameters)"
        ]
    );
}

#[test]
fn error_unknown_on_failure_task() {
    let mut spec = example();
    spec.on_failure = Some("transcripts/report".to_string());
    assert_eq!(
        problems(&spec),
        ["on_failure: no task `transcripts/report`"]
    );
}

#[test]
fn error_on_failure_task_parameter_count() {
    let mut spec = example();
    spec.on_failure = Some("t/pair".to_string());
    assert_eq!(
        problems(&spec),
        [
            "on_failure task `t/pair` must take exactly one parameter (the map of failed step \
              name to error), but takes 2: `left`, `right`"
        ]
    );
    spec.on_failure = Some("t/noop".to_string());
    assert_eq!(
        problems(&spec),
        [
            "on_failure task `t/noop` must take exactly one parameter (the map of failed step \
              name to error), but takes 0"
        ]
    );
}

#[test]
fn error_invalid_workflow_policy() {
    let mut spec = example();
    spec.policy.retry.max_attempts = Some(0);
    assert_eq!(
        problems(&spec),
        ["[policy]: max_attempts must be between 1 and 100, not 0"]
    );
}

#[test]
fn error_invalid_step_policy_after_overlay() {
    let mut spec = example();
    // Valid alone, but longer than the workflow's cap once overlaid.
    spec.policy.retry.max_backoff = Some(Duration::from_secs(5));
    spec.steps[1].policy.retry.backoff = Some(Duration::from_secs(10));
    spec.steps[2].policy.retry.retry_on = Some(vec![]);
    assert_eq!(
        problems(&spec),
        [
            "step `fetch-b` [step.policy]: backoff 10s is longer than max_backoff 5s: \
                 lower backoff or raise max_backoff",
            "step `transcribe-a` [step.policy]: retry_on must list at least one of trap, \
                 timeout, retryable, application (to disable retries, set max_attempts = 1)",
        ]
    );
}

#[test]
fn step_policies_are_not_rechecked_under_an_invalid_workflow_policy() {
    let mut spec = example();
    spec.policy.retry.backoff = Some(Duration::ZERO);
    assert_eq!(
        problems(&spec),
        ["[policy]: backoff must be greater than zero"]
    );
}

#[test]
fn error_zero_timeouts() {
    let mut spec = example();
    spec.policy.timeout_ms = Some(0);
    spec.policy.schedule_to_start_ms = Some(0);
    spec.policy.run_timeout_ms = Some(0);
    spec.steps[0].policy.timeout_ms = Some(0);
    spec.steps[0].policy.schedule_to_start_ms = Some(0);
    assert_eq!(
        problems(&spec),
        [
            "[policy]: timeout must be greater than zero",
            "[policy]: schedule_to_start must be greater than zero",
            "[policy]: run_timeout must be greater than zero",
            "step `fetch-a` [step.policy]: timeout must be greater than zero",
            "step `fetch-a` [step.policy]: schedule_to_start must be greater than zero",
        ]
    );
}

#[test]
fn validate_collects_every_problem() {
    let mut spec = graph(&[("a", &["b"]), ("b", &["a", "zz"]), ("Bad", &[])]);
    spec.name = "bad name".to_string();
    spec.steps[2].task = "t/missing".to_string();
    let errors = spec.validate(&registry).unwrap_err();
    assert_eq!(
        errors.0,
        [
            "workflow name `bad name` is invalid: names use lowercase letters, digits, `-` \
                 and `_`, and start with a letter",
            "step `b` names parent `zz`, which is not a step of this workflow",
            "step name `Bad` is invalid: names use lowercase letters, digits, `-` and `_`, \
                 and start with a letter",
            "step `Bad`: no task `t/missing`",
            "steps form a cycle (each is a parent of the next): a -> b -> a",
        ]
    );
    assert_eq!(errors.to_string(), errors.0.join("\n"));
}

#[test]
fn topological_order_keeps_file_order_among_ready_steps() {
    let spec = graph(&[
        ("merge", &["left", "right"]),
        ("right", &["source"]),
        ("left", &["source"]),
        ("source", &[]),
        ("other", &[]),
    ]);
    assert_eq!(
        names(spec.topological_order()),
        ["source", "right", "left", "merge", "other"]
    );
    assert_eq!(
        names(example().topological_order()),
        [
            "fetch-a",
            "fetch-b",
            "transcribe-a",
            "transcribe-b",
            "merge"
        ]
    );
}

#[test]
fn topological_order_leaves_out_cycles() {
    let spec = graph(&[
        ("a", &[]),
        ("b", &["a", "c"]),
        ("c", &["b"]),
        ("d", &["c"]),
        ("e", &[]),
    ]);
    assert_eq!(names(spec.topological_order()), ["a", "e"]);
}

#[test]
fn ready_steps_follow_finished_parents() {
    let spec = example();
    let none = HashSet::new();
    assert_eq!(names(spec.ready(&none, &none)), ["fetch-a", "fetch-b"]);
    assert_eq!(names(spec.ready(&none, &set(&["fetch-a"]))), ["fetch-b"]);
    let finished = set(&["fetch-a"]);
    assert_eq!(
        names(spec.ready(&finished, &set(&["fetch-a", "fetch-b"]))),
        ["transcribe-a"]
    );
    let finished = set(&["fetch-a", "fetch-b", "transcribe-a"]);
    let started = set(&["fetch-a", "fetch-b", "transcribe-a", "transcribe-b"]);
    assert!(spec.ready(&finished, &started).is_empty());
    let finished = set(&["fetch-a", "fetch-b", "transcribe-a", "transcribe-b"]);
    assert_eq!(names(spec.ready(&finished, &started)), ["merge"]);
    let all = set(&[
        "fetch-a",
        "fetch-b",
        "transcribe-a",
        "transcribe-b",
        "merge",
    ]);
    assert!(spec.ready(&all, &all).is_empty());
    // A finished step is never ready again, even if the caller did not mark it started.
    assert!(spec.ready(&all, &none).is_empty());
}

#[test]
fn step_input_follows_the_convention() {
    let spec = example();
    let outputs: HashMap<String, Value> = [
        ("transcribe-a".to_string(), json!({"text": "hello"})),
        ("transcribe-b".to_string(), json!({"text": "world"})),
    ]
    .into();
    let input = json!({"url": "https://example.com/a"});
    let params = registry("transcripts/merge").unwrap();
    assert_eq!(
        spec.step_input(spec.step("merge").unwrap(), &input, &outputs, &params),
        Ok(json!({
            "transcribe-a": {"text": "hello"},
            "transcribe-b": {"text": "world"},
            "format": "srt",
        }))
    );
    let params = registry("transcripts/fetch-track").unwrap();
    assert_eq!(
        spec.step_input(spec.step("fetch-b").unwrap(), &input, &outputs, &params),
        Ok(json!({"input": {"url": "https://example.com/a"}, "track": 1}))
    );
    assert_eq!(
        spec.step_input(spec.step("fetch-b").unwrap(), &input, &outputs, &[]),
        Ok(json!({}))
    );
}

#[test]
fn step_input_needs_parent_outputs() {
    let spec = example();
    let outputs: HashMap<String, Value> = [("transcribe-a".to_string(), json!("a"))].into();
    let params = registry("transcripts/merge").unwrap();
    assert_eq!(
        spec.step_input(spec.step("merge").unwrap(), &json!(null), &outputs, &params),
        Err(
            "step `merge` needs the output of parent `transcribe-b`, which has none \
                 (it has not finished successfully)"
                .to_string()
        )
    );
}

#[test]
fn step_input_rejects_unmatched_parameters() {
    let spec = example();
    let params = vec!["extra".to_string()];
    assert_eq!(
        spec.step_input(
            spec.step("merge").unwrap(),
            &json!(null),
            &HashMap::new(),
            &params
        ),
        Err(
            "task `transcripts/merge` of step `merge` takes parameter `extra`, which is not \
                 `input`, a parent step or an `args` key"
                .to_string()
        )
    );
}

#[test]
fn step_policy_overlays_the_step_on_the_workflow() {
    let spec = example();
    let merge = spec.step_policy(spec.step("merge").unwrap());
    let (retry, timeout, schedule_to_start) = (
        merge.retry,
        merge.timeout_ms.map(Duration::from_millis),
        merge.schedule_to_start_ms.map(Duration::from_millis),
    );
    assert_eq!(
        merge.run_timeout_ms, None,
        "run_timeout is the workflow's alone"
    );
    assert_eq!(
        retry,
        RetryPolicy {
            max_attempts: Some(5),
            backoff: Some(Duration::from_millis(200)),
            max_backoff: None,
            retry_on: Some(vec![RetryOn::Trap, RetryOn::Application]),
        }
    );
    assert_eq!(timeout, Some(Duration::from_secs(30)));
    assert_eq!(schedule_to_start, Some(Duration::from_secs(300)));
    let transcribe = spec.step_policy(spec.step("transcribe-a").unwrap());
    assert_eq!(transcribe.retry, spec.policy.retry);
    assert_eq!(transcribe.timeout_ms, Some(120_000));
    let bare = graph(&[("a", &[])]);
    assert_eq!(bare.step_policy(&bare.steps[0]), Policy::default());
}

#[test]
fn step_overrides_keep_the_json_of_the_old_override_type() {
    // Step overrides are stored as JSON with the step; what the former `PolicyOverride`
    // wrote reads back as the same partial `Policy`, and is written the same way.
    let stored = json!({"retry": {"max_attempts": 5, "backoff": "200ms"},
                            "timeout_ms": 30000, "schedule_to_start_ms": 300000});
    let policy: Policy = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(policy.timeout_ms, Some(30_000));
    assert_eq!(policy.retry.max_attempts, Some(5));
    assert_eq!(serde_json::to_value(&policy).unwrap(), stored);
    let deployment = Policy {
        memory_limit_bytes: Some(1 << 20),
        timeout_ms: Some(1000),
        ..Policy::default()
    };
    let overlaid = deployment.overlaid(&policy);
    assert_eq!(overlaid.memory_limit_bytes, Some(1 << 20));
    assert_eq!(overlaid.timeout_ms, Some(30_000));
    assert_eq!(overlaid.schedule_to_start_ms, Some(300_000));
    assert_eq!(overlaid.retry.backoff, Some(Duration::from_millis(200)));
}
