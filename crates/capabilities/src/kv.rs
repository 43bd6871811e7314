//! `hypergraph:task/kv`: durable key-value storage scoped to `<tenant>/<deployment>`.
//!
//! Reads (`get`, `list-keys`) are answered through the journal: live from the store when recording
//! (merged with the attempt's own buffered writes), from the recording when replaying, so a replay
//! never touches the store. Writes (`set`, `delete`) are journaled as outputs and buffered in
//! [`KvState`]; the worker commits them with the attempt's completion, and only if it succeeded.
//!
//! # Isolation
//!
//! Each attempt is a transaction over the keys it reads and writes. Every stored key has a
//! version (a store-wide counter stamped by each committing write), and the attempt records the
//! version of every key it read from the store, and for each `list-keys` how many keys the prefix
//! held and their newest version ([`KvRead`]). When the attempt commits, the store checks that
//! none of them changed; if one did, nothing of the attempt is kept and the step is executed
//! again in a fresh instance, under the same attempt number (a conflict is not a failure). So
//! concurrent read-modify-write tasks never lose an update: N increments end at N. A workflow's
//! reads are checked when the activation that made them ends the step; reads stored by an earlier
//! activation (before it waited, or in a lingering checkpoint) are part of its history and are
//! not checked again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use hypergraph_core::model::{KvListing, KvRead};

use super::bindings::hypergraph::task::kv;
use crate::journal::{Blob, Journal, KvCall, KvEntry};
use crate::limits::{format_bytes, LimitExceeded};

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:task/kv@0.1.0"];

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value accepted.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST_KEYS: u32 = 10_000;
/// How many times an attempt is re-executed after key-value conflicts before it fails with
/// `kv_conflict`: a bound against livelock, not a contention policy. Completions committed
/// together are checked most-reruns first, so an attempt that lost rounds wins against those in
/// its batch; but it still loses to any commit made since its read in another batch, so under
/// heavy contention on one key an attempt can lose many rounds. 200 increments of one key on 16
/// slots (SQLite, commits synced, load ~4 on 2 cores): at most 100-130 re-executions of one
/// attempt in commit order, 53-71 most-reruns first (BENCHMARKS.md); the bound stays well above.
pub const MAX_RERUNS: u32 = 1_000;

/// Where an attempt's key-value reads go when recording: one scope of the store, read as the
/// commit will validate it. Implemented by the runtime over its store.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync {
    /// The scope read, `<tenant>/<deployment>`: the reads recorded for validation name it.
    fn scope(&self) -> &str;
    /// The value stored under `key`, with its version (see [`KvRead`]); `None` when absent.
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, i64)>>;
    /// The keys starting with `prefix`, in byte order, at most `limit`, read in one snapshot
    /// with the prefix's key count and newest version.
    async fn list(&self, prefix: &str, limit: u32) -> anyhow::Result<KvListing>;
}

/// The key-value state of one attempt: the backend (absent in replay, where the journal answers),
/// the writes buffered so far (`None` deletes, last write per key), and the reads to validate.
#[derive(Default)]
pub struct KvState {
    backend: Option<Arc<dyn KvBackend>>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Store reads since the last checkpoint, first read of each key or prefix.
    reads: Vec<KvRead>,
    read_keys: HashSet<String>,
    read_prefixes: HashSet<String>,
    /// Bytes (keys and values) of every `set` so far, and the budget.
    written: u64,
    max_written: u64,
}

impl KvState {
    /// State reading from `backend` (or from nothing, in replay), allowing `max_written` bytes
    /// of writes.
    pub fn new(backend: Option<Arc<dyn KvBackend>>, max_written: u64) -> KvState {
        KvState {
            backend,
            max_written,
            ..KvState::default()
        }
    }

    /// The buffered writes, in key order.
    pub fn take_writes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut self.writes).into_iter().collect()
    }

    /// The store reads made since the last call, to validate at commit (see the module docs).
    pub fn take_reads(&mut self) -> Vec<KvRead> {
        self.read_keys.clear();
        self.read_prefixes.clear();
        std::mem::take(&mut self.reads)
    }

    fn backend(&self) -> wasmtime::Result<Arc<dyn KvBackend>> {
        self.backend
            .clone()
            .ok_or_else(|| super::host_fault("key-value storage is not available here".into()))
    }
}

/// This capability's view of the store data: its state and the journal it records into.
pub struct KvCtx<'a> {
    pub state: &'a mut KvState,
    pub journal: &'a Journal,
}

/// Marks the projection to [`KvCtx`] for the generated `add_to_linker`.
struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvCtx<'a>;
}

fn check_key(key: &str) -> wasmtime::Result<()> {
    if key.len() > MAX_KEY_BYTES {
        wasmtime::bail!(
            "kv key of {} bytes is longer than the {MAX_KEY_BYTES}-byte limit",
            key.len()
        );
    }
    Ok(())
}

impl kv::Host for KvCtx<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        check_key(&key)?;
        let call = KvCall::Get { key: key.clone() };
        let live = if !self.journal.is_live() {
            None
        } else if let Some(buffered) = self.state.writes.get(&key) {
            Some((buffered.clone(), None))
        } else {
            let backend = self.state.backend()?;
            let stored = backend
                .get(&key)
                .await
                .map_err(|e| super::host_fault(format!("kv get `{key}` failed: {e:#}")))?;
            let version = stored.as_ref().map_or(0, |(_, version)| *version);
            if self.state.read_keys.insert(key.clone()) {
                self.state.reads.push(KvRead::Key {
                    scope: backend.scope().to_string(),
                    key: key.clone(),
                    version,
                });
            }
            Some((stored.map(|(value, _)| value), Some(version)))
        };
        let answer = self.journal.answer(call, || {
            let (value, version) = live.expect("live when the journal is");
            KvEntry::Get {
                key: key.clone(),
                value: value.as_deref().map(Blob::from_bytes),
                version,
            }
        });
        Ok(match answer {
            Some(KvEntry::Get {
                value: Some(value), ..
            }) => Some(value.to_vec()),
            _ => None,
        })
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            wasmtime::bail!(
                "kv value of {} bytes for `{key}` is larger than the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            );
        }
        let written = self.state.written + (key.len() + value.len()) as u64;
        if written > self.state.max_written {
            return Err(wasmtime::Error::new(LimitExceeded(format!(
                "the attempt's key-value writes exceed the deployment's limit of {} per attempt \
                 (`set` of `{key}` would bring them to {written} bytes; raise it with \
                 `hypergraph deploy --max-kv-write`)",
                format_bytes(self.state.max_written)
            ))));
        }
        self.state.written = written;
        self.journal.emit(KvEntry::Set {
            key: key.clone(),
            value: Blob::from_bytes(&value),
        });
        self.state.writes.insert(key, Some(value));
        Ok(())
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        check_key(&key)?;
        self.journal.emit(KvEntry::Delete { key: key.clone() });
        self.state.writes.insert(key, None);
        Ok(())
    }

    async fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        check_key(&prefix)?;
        let call = KvCall::ListKeys {
            prefix: prefix.clone(),
        };
        let live = if !self.journal.is_live() {
            Vec::new()
        } else {
            let backend = self.state.backend()?;
            let stored = backend
                .list(&prefix, MAX_LIST_KEYS)
                .await
                .map_err(|e| super::host_fault(format!("kv list-keys `{prefix}` failed: {e:#}")))?;
            if self.state.read_prefixes.insert(prefix.clone()) {
                self.state.reads.push(KvRead::Prefix {
                    scope: backend.scope().to_string(),
                    prefix: prefix.clone(),
                    count: stored.count,
                    max_version: stored.max_version,
                });
            }
            let mut keys: std::collections::BTreeSet<String> = stored.keys.into_iter().collect();
            for (key, value) in self.state.writes.range(prefix.clone()..) {
                if !key.starts_with(&prefix) {
                    break;
                }
                match value {
                    Some(_) => keys.insert(key.clone()),
                    None => keys.remove(key),
                };
            }
            keys.into_iter().take(MAX_LIST_KEYS as usize).collect()
        };
        let answer = self.journal.answer(call, || KvEntry::ListKeys {
            prefix: prefix.clone(),
            keys: live,
        });
        Ok(match answer {
            Some(KvEntry::ListKeys { keys, .. }) => keys,
            _ => Vec::new(),
        })
    }
}

/// Registers `hypergraph:task/kv` in `linker`, served from the view `project` takes of the
/// store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> KvCtx<'_>,
) -> anyhow::Result<()> {
    kv::add_to_linker::<T, HasKv>(linker, project)?;
    Ok(())
}
