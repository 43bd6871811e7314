//! The runtime's side of `hypergraph:task/kv`: an attempt's key-value reads, answered from the
//! store (see [`KvBackend`]).

use std::sync::Arc;

use async_trait::async_trait;

use crate::capabilities::kv::KvBackend;
use crate::store::{KvListing, Store};

/// One deployment's key-value scope of a store, read by the attempts of its tasks.
pub struct StoreKv {
    store: Arc<dyn Store>,
    /// `<tenant>/<deployment>`.
    scope: String,
}

impl StoreKv {
    /// Reads of `scope` (`<tenant>/<deployment>`, see [`crate::worker::kv_scope`]) in `store`.
    pub fn new(store: Arc<dyn Store>, scope: String) -> StoreKv {
        StoreKv { store, scope }
    }
}

#[async_trait]
impl KvBackend for StoreKv {
    fn scope(&self) -> &str {
        &self.scope
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        self.store.kv_get(&self.scope, key).await
    }

    async fn list(&self, prefix: &str, limit: u32) -> anyhow::Result<KvListing> {
        self.store.kv_list(&self.scope, prefix, limit).await
    }
}
