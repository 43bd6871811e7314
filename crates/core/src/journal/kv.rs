//! The journal entries of `hypergraph:task/kv` (served by `hypergraph_capabilities::kv`): the
//! reads a guest made (inputs) and the writes it buffered (outputs).

use serde::{Deserialize, Serialize};

use super::Blob;

/// The namespaces of this family's kinds (`kv.<call>`).
pub(super) const NAMESPACES: &[&str] = &["kv"];

/// A key-value call of the guest and what it saw. Its serde tag (`kind`) is the stored kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum KvEntry {
    /// `hypergraph:task/kv.get`: the value the guest saw, including its own buffered writes, and
    /// the version of the stored key it read (0: absent; none when its own write answered).
    #[serde(rename = "kv.get")]
    Get {
        key: String,
        value: Option<Blob>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
    },
    /// `hypergraph:task/kv.list-keys`: the keys the guest saw.
    #[serde(rename = "kv.list_keys")]
    ListKeys { prefix: String, keys: Vec<String> },
    /// `hypergraph:task/kv.set` (an output): the key and the value written.
    #[serde(rename = "kv.set")]
    Set { key: String, value: Blob },
    /// `hypergraph:task/kv.delete` (an output).
    #[serde(rename = "kv.delete")]
    Delete { key: String },
}

impl KvEntry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            KvEntry::Get { .. } => "kv.get",
            KvEntry::ListKeys { .. } => "kv.list_keys",
            KvEntry::Set { .. } => "kv.set",
            KvEntry::Delete { .. } => "kv.delete",
        }
    }

    /// True when this recorded entry is the answer to `call`: the same read of the same key or
    /// prefix.
    pub fn answers(&self, call: &KvCall) -> bool {
        match (self, call) {
            (KvEntry::Get { key, .. }, KvCall::Get { key: k }) => key == k,
            (KvEntry::ListKeys { prefix, .. }, KvCall::ListKeys { prefix: p }) => prefix == p,
            _ => false,
        }
    }
}

/// A key-value read as the guest makes it: what a [`KvEntry`] must answer in replay (writes
/// are outputs, matched whole). Serialized (in a divergence) under the kind of its entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum KvCall {
    #[serde(rename = "kv.get")]
    Get { key: String },
    #[serde(rename = "kv.list_keys")]
    ListKeys { prefix: String },
}
