//! How an attempt fails: the error kinds and the error stored with a failed step.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What went wrong in a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The task returned the `err` case of its `result`.
    Application,
    /// The guest trapped (e.g. `unreachable`, a Rust panic, an out-of-bounds access).
    Trap,
    /// The attempt ran past its execution deadline.
    Timeout,
    /// The guest tried to grow memory beyond its cap.
    MemoryLimit,
    /// The guest exhausted its call stack.
    StackOverflow,
    /// The guest called `wasi:cli/exit`.
    Exit,
    /// The host could not run the task (instantiation or input conversion failed).
    Host,
    /// The step was cancelled (`runs cancel`) while the attempt ran.
    Cancelled,
    /// The attempt hit a size limit of its deployment (output, key-value writes).
    Limit,
    /// The keys the attempt read kept changing before it could commit, through every
    /// re-execution the host allows (see `capabilities::kv`).
    KvConflict,
}

/// A failed attempt, as stored in the step's `error` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
    /// The wasm backtrace, innermost frame first, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
    /// The payload of an application error (the JSON of the `err` case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl TaskError {
    pub fn host(message: impl Into<String>) -> TaskError {
        TaskError {
            kind: ErrorKind::Host,
            message: message.into(),
            backtrace: None,
            value: None,
        }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}: {}", self.message, value),
            None => f.write_str(&self.message),
        }
    }
}
