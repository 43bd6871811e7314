//! The journal entries of the attempt's log: the lines a guest emits through
//! `hypergraph:task/log` or its stdout and stderr (served by `hypergraph_capabilities::log`).
//! They are outputs: a replay must emit the identical entry, so they have no call type.

use serde::{Deserialize, Serialize};

/// The namespaces of this family's kinds (`log` itself and `log.<what>`).
pub(super) const NAMESPACES: &[&str] = &["log"];

/// An output of the attempt's log. Its serde tag (`kind`) is the stored kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum LogEntry {
    /// A line the guest emitted: `hypergraph:task/log.log`, or a line of stdout/stderr.
    #[serde(rename = "log")]
    Line {
        stream: String,
        level: String,
        message: String,
    },
    /// Lines the guest emitted beyond the per-attempt log cap; they are counted, not kept.
    #[serde(rename = "log.dropped")]
    Dropped { count: u64 },
}

impl LogEntry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            LogEntry::Line { .. } => "log",
            LogEntry::Dropped { .. } => "log.dropped",
        }
    }
}
