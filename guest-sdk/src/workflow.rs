//! Durable orchestration from a workflow task: start child tasks, join them, sleep and wait for
//! events, with typed (serde) inputs and outputs.
//!
//! A *workflow* is a task whose component imports `hypergraph:workflow/workflow` (its world
//! includes `hypergraph:task/workflow@0.1.0` instead of `hypergraph:task/task@0.1.0`). Each child
//! it starts is a step of the same run, with its own attempts, retries, journal and logs, shown as
//! a tree by `hypergraph runs show`. This module wraps the raw bindings
//! ([`crate::bindings::workflow`]) so that inputs are any [`Serialize`] value and outputs any
//! [`DeserializeOwned`] type.
//!
//! ```ignore
//! use hypergraph_guest::workflow::{self, ChildError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Track { speaker: String, text: String }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! struct Transcript { word_count: u32 }
//!
//! fn pipeline(tracks: Vec<Track>) -> Result<u32, String> {
//!     // Fan out: one child per track, all running in parallel, then wait for all of them.
//!     let results: Vec<Result<Transcript, ChildError>> = workflow::map(
//!         "transcripts/transcribe",
//!         tracks.iter().map(|track| serde_json::json!({ "track": track })),
//!     )
//!     .map_err(|e| e.to_string())?;
//!     let mut words = 0;
//!     for result in results {
//!         match result {
//!             Ok(t) => words += t.word_count,
//!             // One child's failure (after its retries) does not fail the others.
//!             Err(e) => hypergraph_guest::warn!("{e}"),
//!         }
//!     }
//!     // One child, started and joined: a durable step of its own.
//!     let title: String = workflow::call("transcripts/title", &serde_json::json!({ "words": words }))
//!         .map_err(|e| e.to_string())?;
//!     hypergraph_guest::info!("{title}");
//!     Ok(words)
//! }
//! ```
//!
//! # Inputs and outputs
//!
//! A child is named like any task, `<deployment>/<function>` (or
//! `<deployment>/<interface>.<function>`), and resolved to the deployment's latest version when
//! it is first started. Its input is serialized to JSON text here and converted by the host
//! against the child's WIT signature, exactly like `hypergraph run --input`:
//!
//! * the input is an **object keyed by parameter name** (`{"track": ..., "index": 2}`); for a
//!   task with a single parameter the bare value is accepted too, and a task without parameters
//!   takes `()` (JSON `null`);
//! * records are objects keyed by the **kebab-case** WIT field names, so mirror a WIT record with
//!   `#[serde(rename_all = "kebab-case")]`; enums are the case name, variants `{"case": payload}`
//!   or the bare case name, options `null` or the value, `result` `{"ok": ...}` / `{"err": ...}`
//!   (see the crate docs for the whole mapping).
//!
//! An input of the wrong shape is refused by [`start`] (or [`call`]) before anything runs, with an
//! error naming the JSON path and the expected WIT type. A child's output comes back as JSON in
//! the same mapping and is deserialized into the type you ask for; when it does not fit, the
//! result is a [`ChildError`] of kind [`ChildError::DECODE`]. Ask for [`serde_json::Value`] to take
//! any output.
//!
//! # Determinism: the workflow is re-executed on every resume
//!
//! A workflow does not stay in memory while its children run. When it makes a call the host cannot
//! answer yet (a [`join`] of unfinished children, a [`sleep`], a [`wait_event`]), that call does
//! not return: the host stops the instance and the step waits, holding no memory or instance. When
//! the answer is there (a child finished, the timer fired, the event arrived, or a worker crashed
//! and the step was claimed again), the workflow is **re-executed from the start** in a fresh
//! instance, and every call it already made is answered from the journal instead of being made
//! again: a completed child is never run twice, a started child is not started again, a finished
//! sleep does not sleep again.
//!
//! This only works if the workflow makes the same calls, with the same arguments, in the same
//! order, every time it runs. So:
//!
//! * decide only on the workflow's input, the results of these calls and other host calls (clock
//!   reads, random numbers, key-value reads are journaled too, so using them is fine);
//! * the code between calls runs again on every re-execution: keep it free of side effects of its
//!   own, and write key-value state from child tasks rather than from the workflow;
//! * do not change the sequence of calls of a deployed workflow while runs of it are in flight: a
//!   re-execution that makes a different call than the journal holds is a *divergence*, reported
//!   with the position and both calls. `hypergraph check-upgrade` finds such changes before they
//!   ship.
//!
//! Put the real work in child tasks: each child commits its output (and its key-value writes) on
//! its own, so a crash after child 3 of 5 keeps children 1–3, and a child's retries do not
//! re-execute its siblings.
//!
//! # Errors
//!
//! * [`StartError`]: the child could not be started (unknown task, input of the wrong shape, an
//!   input that cannot be serialized). Nothing was started.
//! * [`ChildError`]: the child ran and failed after its retries ([`ChildError::kind`] says how:
//!   an application error with its `err` value, a trap, a timeout, ...), or its output did not
//!   deserialize into the requested type.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::workflow as raw;

/// A started child task: its position among this workflow's children (0, 1, ...) and its name.
///
/// Pass children to [`join`] to wait for their results. A handle is only meaningful inside the
/// workflow execution that made it (and its re-executions, which get the same handles).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Child {
    index: u32,
    task: String,
}

impl Child {
    /// The child's position among this workflow's children, as the host numbers them (0, 1, ...).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The task the child runs, as given to [`start`].
    pub fn task(&self) -> &str {
        &self.task
    }
}

/// A child could not be started: nothing was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// The task that was to be started.
    pub task: String,
    /// Why: an unknown task (the host suggests the closest names), an input that does not match
    /// the task's signature (with the JSON path and the expected WIT type), or an input that could
    /// not be serialized to JSON.
    pub message: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start `{}`: {}", self.task, self.message)
    }
}

impl std::error::Error for StartError {}

/// Why a child produced no (usable) output.
///
/// Either the child failed after its retries (kinds [`APPLICATION`](Self::APPLICATION),
/// `trap`, `timeout`, `memory_limit`, `stack_overflow`, `exit`, `host`, `cancelled`, as reported
/// by the host), or this module could not use its result (kinds [`DECODE`](Self::DECODE),
/// [`ENCODE`](Self::ENCODE), [`START`](Self::START)).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildError {
    /// The task of the child.
    pub task: String,
    /// How it failed: `application`, `trap`, `timeout`, `memory_limit`, `stack_overflow`, `exit`,
    /// `host`, `cancelled` (from the host) or `decode`, `encode`, `start` (from this module).
    pub kind: String,
    /// A human-readable description.
    pub message: String,
    /// For an `application` error, the `err` value the child returned, as JSON (for example the
    /// string of a `result<_, string>`, or `{"retryable": "..."}` for a variant). For a `decode`
    /// error, the output that could not be decoded. `None` otherwise.
    pub value: Option<serde_json::Value>,
}

impl ChildError {
    /// Kind of a child that returned the `err` case of its `result`; [`value`](Self::value) holds it.
    pub const APPLICATION: &'static str = "application";
    /// Kind of a child whose output did not deserialize into the requested type.
    pub const DECODE: &'static str = "decode";
    /// Kind of a [`call`] whose input could not be serialized to JSON (nothing was started).
    pub const ENCODE: &'static str = "encode";
    /// Kind of a [`map`] element whose child could not be started (see [`StartError`]).
    pub const START: &'static str = "start";

    /// Whether the child returned an application error (the `err` case of its `result`).
    pub fn is_application(&self) -> bool {
        self.kind == Self::APPLICATION
    }

    /// The application error value deserialized into `E`, e.g. the generated error type's serde
    /// mirror, or `String` for a `result<_, string>`. `None` when there is no value or it does
    /// not fit `E`.
    pub fn value_as<E: DeserializeOwned>(&self) -> Option<E> {
        self.value
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    fn from_raw(task: &str, raw: raw::ChildError) -> Self {
        let value = raw.value.map(|text| {
            // The host sends JSON; keep the text as a string should it ever not parse.
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        });
        ChildError {
            task: task.to_string(),
            kind: raw.kind,
            message: raw.message,
            value,
        }
    }

    fn decode(task: &str, output: &str, error: serde_json::Error) -> Self {
        ChildError {
            task: task.to_string(),
            kind: Self::DECODE.to_string(),
            message: format!("the output of `{task}` does not fit the requested type: {error}"),
            value: Some(
                serde_json::from_str(output)
                    .unwrap_or_else(|_| serde_json::Value::String(output.to_string())),
            ),
        }
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` failed ({}): {}",
            self.task, self.kind, self.message
        )?;
        match &self.value {
            Some(value) if self.kind == Self::APPLICATION => write!(f, " [value: {value}]"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for ChildError {}

impl From<StartError> for ChildError {
    fn from(e: StartError) -> Self {
        ChildError {
            task: e.task,
            kind: ChildError::START.to_string(),
            message: e.message,
            value: None,
        }
    }
}

/// The output of a finished child as JSON text, to decode later into a type of your choice.
///
/// Returned by [`join_raw`]; useful when the children of one join have different output types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOutput {
    task: String,
    json: String,
}

impl RawOutput {
    /// The task of the child.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The output as JSON text, in the WIT JSON mapping.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The output deserialized into `O`, or a [`ChildError`] of kind [`ChildError::DECODE`].
    pub fn decode<O: DeserializeOwned>(&self) -> Result<O, ChildError> {
        serde_json::from_str(&self.json).map_err(|e| ChildError::decode(&self.task, &self.json, e))
    }
}

fn encode<I: Serialize + ?Sized>(task: &str, input: &I) -> Result<String, StartError> {
    serde_json::to_string(input).map_err(|e| StartError {
        task: task.to_string(),
        message: format!("cannot serialize the input to JSON: {e}"),
    })
}

/// Starts a child running `task` with `input` and returns its handle at once; the child runs in
/// parallel with the workflow and with other children until you [`join`] it.
///
/// `input` is an object keyed by parameter name (a bare value for a single-parameter task; see
/// the [module docs](self#inputs-and-outputs)). On a re-execution the call is answered from the
/// journal: the same handle, and the child is not started again.
///
/// # Errors
///
/// An unknown task or an input that does not match its signature: nothing is started.
pub fn start<I: Serialize + ?Sized>(task: &str, input: &I) -> Result<Child, StartError> {
    let json = encode(task, input)?;
    match raw::start(task, &json) {
        Ok(index) => Ok(Child {
            index,
            task: task.to_string(),
        }),
        Err(message) => Err(StartError {
            task: task.to_string(),
            message,
        }),
    }
}

/// Starts one child of `task` per input, in order; they all run in parallel.
///
/// # Errors
///
/// The first input that cannot be started. The children started before it keep running (a
/// workflow cannot take a start back); since every call is deterministic, a re-execution fails at
/// the same input, so this is best treated as a bug in the workflow (a wrong task name or input
/// shape), not a condition to recover from.
pub fn start_all<I, It>(task: &str, inputs: It) -> Result<Vec<Child>, StartError>
where
    I: Serialize,
    It: IntoIterator<Item = I>,
{
    inputs
        .into_iter()
        .map(|input| start(task, &input))
        .collect()
}

/// Waits until every child in `children` has finished (after its retries) and returns their
/// outputs as JSON, in the same order. Each child's failure is reported on its own; the others
/// still succeed.
pub fn join_raw(children: &[Child]) -> Vec<Result<RawOutput, ChildError>> {
    if children.is_empty() {
        return Vec::new();
    }
    let handles: Vec<u32> = children.iter().map(|c| c.index).collect();
    let results = raw::join(&handles);
    debug_assert_eq!(
        results.len(),
        children.len(),
        "the host answers every child"
    );
    children
        .iter()
        .zip(results)
        .map(|(child, result)| match result {
            Ok(json) => Ok(RawOutput {
                task: child.task.clone(),
                json,
            }),
            Err(e) => Err(ChildError::from_raw(&child.task, e)),
        })
        .collect()
}

/// Waits until every child in `children` has finished (after its retries) and returns their
/// outputs deserialized into `O`, in the same order.
///
/// Each child's failure is reported on its own (the others still succeed). An output that does not
/// deserialize into `O` becomes a [`ChildError`] of kind [`ChildError::DECODE`], with the output in
/// its `value`. Joining no children returns at once, without a host call.
pub fn join<O: DeserializeOwned>(children: &[Child]) -> Vec<Result<O, ChildError>> {
    join_raw(children)
        .into_iter()
        .map(|result| result.and_then(|output| output.decode()))
        .collect()
}

/// Waits for two children with different output types, started in parallel:
/// `let (title, summary) = join2::<String, Summary>(&a, &b);`. One host call, like [`join`].
pub fn join2<A: DeserializeOwned, B: DeserializeOwned>(
    a: &Child,
    b: &Child,
) -> (Result<A, ChildError>, Result<B, ChildError>) {
    let mut results = join_raw(&[a.clone(), b.clone()]).into_iter();
    let mut next = |child: &Child| {
        results.next().unwrap_or_else(|| {
            Err(ChildError {
                task: child.task.clone(),
                kind: "host".to_string(),
                message: "the host returned no result for this child".to_string(),
                value: None,
            })
        })
    };
    let ra = next(a);
    let rb = next(b);
    (ra.and_then(|o| o.decode()), rb.and_then(|o| o.decode()))
}

/// Runs one child to completion: starts `task` with `input` and waits for its output.
///
/// One durable step: on re-execution its result comes from the journal. Failures to start (an
/// unknown task, an input of the wrong shape) are reported as a [`ChildError`] too, of kind
/// [`ChildError::START`] when this module can tell, else as the host reports them.
///
/// # Errors
///
/// The child's failure after its retries, or an output that does not fit `O` (kind
/// [`ChildError::DECODE`]).
pub fn call<I: Serialize + ?Sized, O: DeserializeOwned>(
    task: &str,
    input: &I,
) -> Result<O, ChildError> {
    let json = serde_json::to_string(input).map_err(|e| ChildError {
        task: task.to_string(),
        kind: ChildError::ENCODE.to_string(),
        message: format!("cannot serialize the input to JSON: {e}"),
        value: None,
    })?;
    match raw::call(task, &json) {
        Ok(output) => {
            serde_json::from_str(&output).map_err(|e| ChildError::decode(task, &output, e))
        }
        Err(e) => Err(ChildError::from_raw(task, e)),
    }
}

/// Fan-out and fan-in of one task over many inputs: starts one child per input (all in parallel),
/// then joins them all and returns their outputs in input order.
///
/// # Errors
///
/// A [`StartError`] when an input cannot be started (see [`start_all`]); a failed child is an
/// `Err` in its own slot of the returned list.
pub fn map<I, O, It>(task: &str, inputs: It) -> Result<Vec<Result<O, ChildError>>, StartError>
where
    I: Serialize,
    O: DeserializeOwned,
    It: IntoIterator<Item = I>,
{
    let children = start_all(task, inputs)?;
    Ok(join(&children))
}

/// Sleeps durably for `duration` (rounded up to whole milliseconds).
///
/// The timer is kept by the host: it survives restarts of the worker, and no instance is held
/// while it runs. On re-execution a finished sleep returns at once.
pub fn sleep(duration: Duration) {
    raw::sleep(millis_ceil(duration))
}

/// `duration` in whole milliseconds, rounded up (so that a non-zero duration never becomes 0),
/// saturating at `u64::MAX`.
fn millis_ceil(duration: Duration) -> u64 {
    let mut millis = duration.as_millis();
    if duration.subsec_nanos() % 1_000_000 != 0 {
        millis += 1;
    }
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// An event's payload did not deserialize into the requested type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// The event's name.
    pub event: String,
    /// The payload as received (JSON text).
    pub payload: String,
    /// Why it did not fit.
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the payload of event `{}` does not fit the requested type: {} (payload: {})",
            self.event, self.message, self.payload
        )
    }
}

impl std::error::Error for EventError {}

/// Waits durably for the next event named `name` (sent with `hypergraph events send` after the
/// wait began) and returns its payload deserialized into `T`.
///
/// Returns `None` when `timeout` passed first (`None` waits for ever), `Some(Err(..))` when the
/// payload arrived but does not deserialize into `T` (ask for [`serde_json::Value`] to take any
/// payload). No instance is held while waiting; on re-execution the recorded payload (or timeout)
/// is returned at once. A timeout is rounded up to whole milliseconds.
pub fn wait_event<T: DeserializeOwned>(
    name: &str,
    timeout: Option<Duration>,
) -> Option<Result<T, EventError>> {
    let payload = raw::wait_event(name, timeout.map(millis_ceil))?;
    Some(serde_json::from_str(&payload).map_err(|e| EventError {
        event: name.to_string(),
        message: e.to_string(),
        payload,
    }))
}
