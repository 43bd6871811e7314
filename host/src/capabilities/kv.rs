//! `hypergraph:task/kv`: durable key-value storage scoped to `<tenant>/<deployment>`.
//!
//! Reads (`get`, `list-keys`) are answered through the journal: live from the store when recording
//! (merged with the attempt's own buffered writes), from the recording when replaying, so a replay
//! never touches the store. Writes (`set`, `delete`) are journaled as outputs and buffered in
//! [`KvState`]; the worker commits them with the attempt's completion, and only if it succeeded.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::hypergraph::task::kv;
use super::HostState;
use crate::journal::{Call, Entry};
use crate::store::Store;

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:task/kv@0.1.0"];

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value accepted.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list-keys` returns.
pub const MAX_LIST_KEYS: u32 = 10_000;

/// Where an attempt's key-value reads go when recording.
#[derive(Clone)]
pub struct KvBackend {
    pub store: Arc<dyn Store>,
    /// `<tenant>/<deployment>`.
    pub scope: String,
}

/// The key-value state of one attempt: the backend (absent in replay, where the journal answers)
/// and the writes buffered so far (`None` deletes), last write per key.
#[derive(Default)]
pub struct KvState {
    pub(crate) backend: Option<KvBackend>,
    pub(crate) writes: BTreeMap<String, Option<Vec<u8>>>,
}

impl KvState {
    /// State reading from `backend` (or from nothing, in replay).
    pub fn new(backend: Option<KvBackend>) -> KvState {
        KvState {
            backend,
            writes: BTreeMap::new(),
        }
    }

    /// The buffered writes, in key order.
    pub fn take_writes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        std::mem::take(&mut self.writes).into_iter().collect()
    }

    fn backend(&self) -> wasmtime::Result<&KvBackend> {
        self.backend
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("key-value storage is not available here"))
    }
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

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        check_key(&key)?;
        let call = Call::KvGet { key: key.clone() };
        let live = if self.journal.is_replaying() {
            None
        } else if let Some(buffered) = self.kv.writes.get(&key) {
            Some(buffered.clone())
        } else {
            let backend = self.kv.backend()?;
            let value = backend
                .store
                .kv_get(&backend.scope, &key)
                .await
                .map_err(|e| wasmtime::format_err!("kv get `{key}` failed: {e:#}"))?;
            Some(value)
        };
        let answer = self.journal.answer(call, || Entry::KvGet {
            key: key.clone(),
            value: live.flatten().map(hex::encode),
        });
        Ok(match answer {
            Some(Entry::KvGet {
                value: Some(hex), ..
            }) => hex::decode(hex).ok(),
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
        self.journal.emit(Entry::KvSet {
            key: key.clone(),
            value: hex::encode(&value),
        });
        self.kv.writes.insert(key, Some(value));
        Ok(())
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        check_key(&key)?;
        self.journal.emit(Entry::KvDelete { key: key.clone() });
        self.kv.writes.insert(key, None);
        Ok(())
    }

    async fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        check_key(&prefix)?;
        let call = Call::KvListKeys {
            prefix: prefix.clone(),
        };
        let live = if self.journal.is_replaying() {
            Vec::new()
        } else {
            let backend = self.kv.backend()?;
            let stored = backend
                .store
                .kv_list(&backend.scope, &prefix, MAX_LIST_KEYS)
                .await
                .map_err(|e| wasmtime::format_err!("kv list-keys `{prefix}` failed: {e:#}"))?;
            let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
            for (key, value) in self.kv.writes.range(prefix.clone()..) {
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
        let answer = self.journal.answer(call, || Entry::KvListKeys {
            prefix: prefix.clone(),
            keys: live,
        });
        Ok(match answer {
            Some(Entry::KvListKeys { keys, .. }) => keys,
            _ => Vec::new(),
        })
    }
}

/// Registers `hypergraph:task/kv` in `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    kv::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}
