//! The workflow records: the children an activation starts, what a suspended workflow waits for,
//! how a child ended as its workflow sees it, and the limits on children and events.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Policy, Status, StepOutcome};
use crate::time::Micros;

/// Most children one workflow attempt may start.
pub const MAX_CHILDREN: usize = 100_000;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 256;

/// Largest event payload, in bytes of JSON.
pub const MAX_EVENT_PAYLOAD_BYTES: u64 = crate::limits::DEFAULT_MAX_INPUT_BYTES;

/// Checks an event name, the same way for `events send` and for a workflow's `wait-event`, so
/// that nothing can wait for a name that cannot be sent: 1 to 256 bytes, no control characters.
pub fn validate_event_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!name.is_empty(), "an event name must not be empty");
    anyhow::ensure!(
        name.len() <= MAX_EVENT_NAME_BYTES,
        "an event name must be at most {MAX_EVENT_NAME_BYTES} bytes, not {}",
        name.len()
    );
    anyhow::ensure!(
        !name.chars().any(char::is_control),
        "an event name must not contain control characters: {name:?}"
    );
    Ok(())
}

/// A child step started by an activation, created when the activation commits.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChild {
    pub step_id: String,
    /// Position among the workflow's children.
    pub index: u32,
    pub task: String,
    pub deployment: String,
    pub version: i64,
    pub digest: String,
    /// Canonical input, converted against the child's signature.
    pub input: Value,
    /// Overrides of the child deployment's policy (a DAG step's `[step.policy]`).
    pub policy: Option<Policy>,
    /// The step's name in its DAG file (`None` for a workflow component's child).
    pub name: Option<String>,
    /// The child fails if no worker starts it by then (schedule-to-start).
    pub start_deadline: Option<Micros>,
}

/// What a suspended workflow waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until every one of these child steps has finished.
    Children(Vec<String>),
    /// Until any one of these child steps has finished.
    AnyChild(Vec<String>),
    /// Until this time.
    Timer(Micros),
    /// Until an event named `name` with a sequence number above `after` is sent, or `deadline`.
    Event {
        name: String,
        after: i64,
        deadline: Option<Micros>,
    },
}

/// How a child ended, as journaled by `workflow.join` and returned to the workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildResult {
    /// The child's output, as JSON text.
    Ok(String),
    Err {
        kind: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
}

impl ChildResult {
    /// The result of a finished child step, `None` while it has not finished. With `unwrap_ok`
    /// (the child's task returns a `result`), a success is the `ok` payload rather than
    /// `{"ok": payload}`: the error case is already the child's failure.
    pub fn of(outcome: &StepOutcome, unwrap_ok: bool) -> Option<ChildResult> {
        let text = |v: &Value| serde_json::to_string(v).expect("values serialize");
        let field = |name: &str| {
            outcome
                .error
                .as_ref()
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match outcome.status {
            Status::Succeeded => {
                let output = outcome.output.as_ref().unwrap_or(&Value::Null);
                let output = match output.get("ok") {
                    Some(ok) if unwrap_ok => ok,
                    _ => output,
                };
                Some(ChildResult::Ok(text(output)))
            }
            Status::Failed => Some(ChildResult::Err {
                kind: field("kind").unwrap_or_else(|| "host".into()),
                message: field("message").unwrap_or_default(),
                value: outcome
                    .error
                    .as_ref()
                    .and_then(|e| e.get("value"))
                    .map(text),
            }),
            Status::Cancelled => Some(ChildResult::Err {
                kind: "cancelled".into(),
                message: "the child was cancelled".into(),
                value: None,
            }),
            _ => None,
        }
    }
}
