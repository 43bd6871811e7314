//! The workflow file format: reading TOML into a [`DagSpec`], with every unknown key reported
//! by name, and the file's representation of policies ([`FilePolicy`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{did_you_mean, quoted_list, DagError, DagSpec, DagStep};
use crate::retry::{duration_serde, RetryOn, RetryPolicy};
use crate::store::Policy;

/// Keys of a workflow file's top level.
pub(super) const TOP_KEYS: &[&str] = &["name", "description", "on_failure", "policy", "step"];
/// Keys of a `[[step]]` table.
const STEP_KEYS: &[&str] = &["name", "task", "parents", "args", "policy"];
/// Keys of the workflow `[policy]` table.
pub(super) const WORKFLOW_POLICY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "max_backoff",
    "retry_on",
    "timeout",
    "schedule_to_start",
    "run_timeout",
];
/// Keys of a `[step.policy]` table.
pub(super) const STEP_POLICY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "max_backoff",
    "retry_on",
    "timeout",
    "schedule_to_start",
];

/// The typed form of a workflow file, before `args` is converted to JSON. The raw types deny
/// unknown fields only as a safety net: [`unknown_keys`] reports them first, with better messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    step: Vec<RawStep>,
}

/// The typed form of a `[[step]]`, before `args` is converted to JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    task: String,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    args: toml::Table,
    #[serde(default)]
    policy: FilePolicy,
}

/// `[policy]` and `[step.policy]` as written in the file: the [`RetryPolicy`] keys flat, and
/// durations (`timeout`, `schedule_to_start`, `run_timeout`) as humantime strings. Only the file's
/// representation of a partial [`Policy`] (see the `From` conversions); written out rather than
/// flattening [`RetryPolicy`], so that toml's errors point at the offending value, not at the
/// table header. (`run_timeout` in a step policy never gets here: the unknown-key check rejects
/// it.)
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    backoff: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    max_backoff: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_on: Option<Vec<RetryOn>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    timeout: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    schedule_to_start: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    run_timeout: Option<Duration>,
}

/// Milliseconds of a file duration, as a [`Policy`] stores them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<FilePolicy> for Policy {
    fn from(file: FilePolicy) -> Policy {
        Policy {
            retry: RetryPolicy {
                max_attempts: file.max_attempts,
                backoff: file.backoff,
                max_backoff: file.max_backoff,
                retry_on: file.retry_on,
            },
            timeout_ms: file.timeout.map(millis),
            schedule_to_start_ms: file.schedule_to_start.map(millis),
            run_timeout_ms: file.run_timeout.map(millis),
            ..Policy::default()
        }
    }
}

impl From<&Policy> for FilePolicy {
    fn from(policy: &Policy) -> FilePolicy {
        FilePolicy {
            max_attempts: policy.retry.max_attempts,
            backoff: policy.retry.backoff,
            max_backoff: policy.retry.max_backoff,
            retry_on: policy.retry.retry_on.clone(),
            timeout: policy.timeout_ms.map(Duration::from_millis),
            schedule_to_start: policy.schedule_to_start_ms.map(Duration::from_millis),
            run_timeout: policy.run_timeout_ms.map(Duration::from_millis),
        }
    }
}

/// Serializes a DAG policy in the file's shape ([`FilePolicy`]).
pub(super) fn file_policy<S: serde::Serializer>(
    policy: &Policy,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    FilePolicy::from(policy).serialize(serializer)
}

impl DagSpec {
    /// Reads a workflow file.
    ///
    /// Fails with [`DagError::Toml`] on a TOML syntax error, a value of the wrong type or a
    /// missing `name`/`task` (toml's message, with line and column); with
    /// [`DagError::UnknownKeys`] listing every key that is not part of the format (including
    /// `run_timeout` in a step policy); and with [`DagError::Args`] for a float in `args` that JSON
    /// cannot represent. Nothing else is checked here: see [`DagSpec::validate`].
    pub fn parse(text: &str) -> Result<DagSpec, DagError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|error| DagError::Toml(error.to_string()))?;
        let unknown = unknown_keys(&table);
        if !unknown.is_empty() {
            return Err(DagError::UnknownKeys(unknown));
        }
        let raw: RawSpec =
            toml::from_str(text).map_err(|error| DagError::Toml(error.to_string()))?;
        let steps = raw
            .step
            .into_iter()
            .map(|step| {
                let mut args = Map::new();
                for (key, value) in &step.args {
                    let json = toml_to_json(value, key).map_err(|path| {
                        DagError::Args(format!(
                            "step `{}`: `args` value `{path}` is not a finite number, \
                             which JSON cannot represent",
                            step.name
                        ))
                    })?;
                    args.insert(key.clone(), json);
                }
                Ok(DagStep {
                    name: step.name,
                    task: step.task,
                    parents: step.parents,
                    args,
                    policy: step.policy.into(),
                })
            })
            .collect::<Result<Vec<_>, DagError>>()?;
        Ok(DagSpec {
            name: raw.name,
            description: raw.description,
            on_failure: raw.on_failure,
            policy: raw.policy.into(),
            steps,
        })
    }
}

/// Every key of a workflow file that is not part of the format, as messages naming its table.
fn unknown_keys(top: &toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    check_keys(top.keys(), TOP_KEYS, "at the top level", &mut problems);
    if let Some(toml::Value::Table(policy)) = top.get("policy") {
        check_keys(
            policy.keys(),
            WORKFLOW_POLICY_KEYS,
            "in [policy]",
            &mut problems,
        );
    }
    let Some(toml::Value::Array(steps)) = top.get("step") else {
        return problems;
    };
    for (index, step) in steps.iter().enumerate() {
        let toml::Value::Table(step) = step else {
            continue;
        };
        let label = match step.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("`{name}`"),
            None => format!("#{}", index + 1),
        };
        let location = format!("in [[step]] {label}");
        check_keys(step.keys(), STEP_KEYS, &location, &mut problems);
        if let Some(toml::Value::Table(policy)) = step.get("policy") {
            if policy.contains_key("run_timeout") {
                problems.push(format!(
                    "`run_timeout` limits the whole run, so it is only allowed in the workflow's \
                     [policy], not in [step.policy] of step {label}"
                ));
            }
            let location = format!("in [step.policy] of step {label}");
            let keys = policy.keys().filter(|key| *key != "run_timeout");
            check_keys(keys, STEP_POLICY_KEYS, &location, &mut problems);
        }
    }
    problems
}

/// Adds a message for every key in `keys` that is not in `known` (which must not be empty), with
/// the closest known key as a suggestion, or the list of known keys when none is close.
fn check_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    known: &[&str],
    location: &str,
    problems: &mut Vec<String>,
) {
    for key in keys.filter(|key| !known.contains(&key.as_str())) {
        let suggestion = did_you_mean(key, known.iter().copied());
        problems.push(if suggestion.is_empty() {
            format!(
                "unknown key `{key}` {location} (known keys: {})",
                quoted_list(known)
            )
        } else {
            format!("unknown key `{key}` {location}{suggestion}")
        });
    }
}

/// Converts a TOML value to JSON (datetimes become their RFC 3339 text); on a `nan` or infinite
/// float, fails with the dotted path of that value below `path`.
fn toml_to_json(value: &toml::Value, path: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Value::Number)
            .ok_or_else(|| path.to_string())?,
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| toml_to_json(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, item)| Ok((key.clone(), toml_to_json(item, &format!("{path}.{key}"))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}
