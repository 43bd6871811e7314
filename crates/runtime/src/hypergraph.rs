//! [`Hypergraph`]: the handle that ties a [`Store`] to an [`Engine`].
//!
//! Its operations are grouped by responsibility: deploying and resolving tasks in `registry`,
//! submitting runs and waiting for them in `scheduler`, executing steps in `worker`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::OnceCell;

use crate::engine::{Engine, EngineOptions};
use crate::scheduler::Submitter;
use crate::signals::Signals;
use crate::store::Store;

/// A store and an engine, shared by the CLI, workers and (later) the HTTP API of one process.
#[derive(Clone)]
pub struct Hypergraph {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// In-process wake-ups (other processes are found by polling).
    pub(crate) signals: Arc<Signals>,
    /// Group-commits this process's submissions; started on first use.
    pub(crate) submitter: Arc<OnceCell<Submitter>>,
}

impl Hypergraph {
    /// A handle over `store` with a new engine caching compiled components in `cache_dir`.
    pub fn new(store: Arc<dyn Store>, cache_dir: Option<PathBuf>) -> Result<Hypergraph> {
        let engine = Engine::new(EngineOptions {
            cache_dir,
            ..EngineOptions::default()
        })?;
        Ok(Hypergraph::with_engine(store, Arc::new(engine)))
    }

    /// A handle over `store` sharing an existing engine.
    pub fn with_engine(store: Arc<dyn Store>, engine: Arc<Engine>) -> Hypergraph {
        Hypergraph {
            store,
            engine,
            signals: Arc::default(),
            submitter: Arc::default(),
        }
    }
}
