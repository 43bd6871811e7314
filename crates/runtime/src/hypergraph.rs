//! [`Hypergraph`]: the handle that ties a [`Store`] to an [`Engine`].
//!
//! Its operations are grouped by responsibility: deploying and resolving tasks in `registry`,
//! submitting runs and waiting for them in `scheduler`, executing steps in `worker`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use tokio::sync::OnceCell;

use crate::engine::{Engine, EngineOptions};
use crate::remote::Remote;
use crate::scheduler::Submitter;
use crate::signals::Signals;
use crate::store::Store;

/// A store and an engine, shared by the CLI, workers and (later) the HTTP API of one process.
#[derive(Clone)]
pub struct Hypergraph {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// In-process wake-ups (other processes are found by polling, and by their wake-ups where
    /// the store delivers them: see [`Hypergraph::listening`]).
    pub(crate) signals: Arc<Signals>,
    /// Forwards other processes' wake-ups into `signals`; started on first use.
    remote: Arc<OnceLock<Option<Remote>>>,
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
            remote: Arc::default(),
            submitter: Arc::default(),
        }
    }

    /// Whether other processes' submissions and completions wake this handle's workers and
    /// waiters right now (the store delivers wake-ups and is listening: see
    /// [`crate::store::Store::subscribe`]); when false they are found by polling alone. The
    /// first call starts forwarding them.
    pub fn listening(&self) -> bool {
        self.remote
            .get_or_init(|| Remote::start(self.store.as_ref(), self.signals.clone()))
            .as_ref()
            .is_some_and(Remote::listening)
    }
}
