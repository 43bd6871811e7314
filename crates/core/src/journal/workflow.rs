//! The journal entries of `hypergraph:workflow/workflow` (served by
//! `hypergraph_capabilities::workflow`), and the resume cut the store applies to them.
//!
//! A workflow is re-executed from the start on every activation; these entries answer every
//! call it made before, so completed children are never started again.

use serde::{Deserialize, Serialize};

use super::Entry;
use crate::time::Micros;
use crate::workflow::ChildResult;

/// The namespaces of this family's kinds (`workflow.<call>`).
pub(super) const NAMESPACES: &[&str] = &["workflow"];

/// A workflow call and its result. Its serde tag (`kind`) is the stored kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WorkflowEntry {
    /// `start`: the child's position and step id, or why it was not started.
    #[serde(rename = "workflow.start")]
    Start {
        task: String,
        input: String,
        child: Option<u32>,
        step_id: Option<String>,
        error: Option<String>,
    },
    /// `join` (and the join of `call`): the children's results, in the order asked.
    #[serde(rename = "workflow.join")]
    Join {
        children: Vec<u32>,
        results: Vec<ChildResult>,
    },
    /// A DAG's wait for any of `children`: those that had finished, with their results.
    #[serde(rename = "workflow.join_any")]
    JoinAny {
        children: Vec<u32>,
        finished: Vec<(u32, ChildResult)>,
    },
    /// `sleep` began: the timer runs until `until` (microseconds since the Unix epoch).
    #[serde(rename = "workflow.sleep")]
    Sleep { millis: u64, until: Micros },
    /// The timer of the preceding `workflow.sleep` fired.
    #[serde(rename = "workflow.timer_fired")]
    TimerFired,
    /// `wait-event` began: events with a sequence number above `after` count.
    #[serde(rename = "workflow.wait_event")]
    WaitEvent {
        name: String,
        timeout_millis: Option<u64>,
        after: i64,
        deadline: Option<Micros>,
    },
    /// The wait ended: the event's payload, or none when the timeout passed first.
    #[serde(rename = "workflow.event")]
    Event {
        name: String,
        payload: Option<String>,
    },
}

impl WorkflowEntry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkflowEntry::Start { .. } => "workflow.start",
            WorkflowEntry::Join { .. } => "workflow.join",
            WorkflowEntry::JoinAny { .. } => "workflow.join_any",
            WorkflowEntry::Sleep { .. } => "workflow.sleep",
            WorkflowEntry::TimerFired => "workflow.timer_fired",
            WorkflowEntry::WaitEvent { .. } => "workflow.wait_event",
            WorkflowEntry::Event { .. } => "workflow.event",
        }
    }

    /// True when this recorded entry is the answer to `call`: the same call with the same
    /// arguments.
    pub fn answers(&self, call: &WorkflowCall) -> bool {
        match (self, call) {
            (
                WorkflowEntry::Start { task, input, .. },
                WorkflowCall::Start { task: t, input: i },
            ) => task == t && input == i,
            (WorkflowEntry::Join { children, .. }, WorkflowCall::Join { children: c })
            | (WorkflowEntry::JoinAny { children, .. }, WorkflowCall::JoinAny { children: c }) => {
                children == c
            }
            (WorkflowEntry::Sleep { millis, .. }, WorkflowCall::Sleep { millis: m }) => millis == m,
            (WorkflowEntry::TimerFired, WorkflowCall::TimerFired) => true,
            (
                WorkflowEntry::WaitEvent {
                    name,
                    timeout_millis,
                    ..
                },
                WorkflowCall::WaitEvent {
                    name: n,
                    timeout_millis: t,
                },
            ) => name == n && timeout_millis == t,
            (WorkflowEntry::Event { name, .. }, WorkflowCall::Event { name: n }) => name == n,
            _ => false,
        }
    }

    /// True for a join (or a DAG's join-any) that saw a failed child: where a resume cuts.
    fn saw_failed_child(&self) -> bool {
        let failed = |r: &ChildResult| matches!(r, ChildResult::Err { .. });
        match self {
            WorkflowEntry::Join { results, .. } => results.iter().any(failed),
            WorkflowEntry::JoinAny { finished, .. } => finished.iter().any(|(_, r)| failed(r)),
            _ => false,
        }
    }
}

/// A workflow call as the guest makes it, with its arguments: what a [`WorkflowEntry`] must
/// answer in replay. Serialized (in a divergence) under the kind of its entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum WorkflowCall {
    #[serde(rename = "workflow.start")]
    Start { task: String, input: String },
    #[serde(rename = "workflow.join")]
    Join { children: Vec<u32> },
    #[serde(rename = "workflow.join_any")]
    JoinAny { children: Vec<u32> },
    #[serde(rename = "workflow.sleep")]
    Sleep { millis: u64 },
    #[serde(rename = "workflow.timer_fired")]
    TimerFired,
    #[serde(rename = "workflow.wait_event")]
    WaitEvent {
        name: String,
        timeout_millis: Option<u64>,
    },
    #[serde(rename = "workflow.event")]
    Event { name: String },
}

/// Where a failed workflow's journal is cut when its run is resumed: before the first join (or a
/// DAG's join-any) that saw a failed child (so the re-run children are joined again), else
/// nothing is cut.
pub fn resume_cut(entries: &[Entry]) -> usize {
    entries
        .iter()
        .position(|e| matches!(e, Entry::Workflow(w) if w.saw_failed_child()))
        .unwrap_or(entries.len())
}

impl Entry {
    /// The position of the child this entry started: `Some` for a `workflow.start` that started
    /// one, `None` for any other entry.
    pub fn started_child(&self) -> Option<u32> {
        match self {
            Entry::Workflow(WorkflowEntry::Start { child, .. }) => *child,
            _ => None,
        }
    }
}
