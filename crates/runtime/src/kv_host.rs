//! The runtime's side of `hypergraph:task/kv`: an attempt's key-value reads, answered from the
//! store (see [`KvBackend`]). A read that meets a database outage waits for the database instead
//! of failing the attempt.

use std::sync::Arc;

use async_trait::async_trait;

use crate::capabilities::kv::KvBackend;
use crate::outage::retry_transient;
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

    /// Waits out a database outage (see [`retry_transient`]) instead of failing the attempt.
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        retry_transient("reading key-value data", || {
            self.store.kv_get(&self.scope, key)
        })
        .await
    }

    /// Waits out a database outage (see [`retry_transient`]) instead of failing the attempt.
    async fn list(&self, prefix: &str, limit: u32) -> anyhow::Result<KvListing> {
        retry_transient("listing key-value data", || {
            self.store.kv_list(&self.scope, prefix, limit)
        })
        .await
    }
}
