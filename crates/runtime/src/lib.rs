//! Hypergraph's runtime: everything that runs tasks, on top of the store and the capabilities.
//!
//! - [`engine`]: wasmtime configuration, compile cache, pre-instantiated components;
//! - [`invoke`]: one attempt in a fresh instance;
//! - [`convert`]: JSON ↔ WIT values, signatures and task naming;
//! - [`registry`], [`scheduler`], [`worker`]: deploy and resolve, submit and wait, execute;
//! - [`replay`], [`bundle`]: deterministic replay and portable replay bundles;
//! - [`dag`], [`dag_runner`], [`resume`]: DAG workflow files and their execution, resuming
//!   failed runs;
//! - [`Hypergraph`]: the handle that holds a store and an engine.
//!
//! See `docs/architecture.md` for the crate map and the life of a run.

pub mod bundle;
pub mod convert;
pub mod dag;
pub mod dag_runner;
pub mod engine;
mod hypergraph;
pub mod invoke;
mod kv_host;
pub mod outage;
pub mod registry;
mod remote;
pub mod replay;
pub mod resume;
pub mod scheduler;
pub mod worker;
mod workflow_host;

pub use hypergraph::Hypergraph;

// The crates below, under the names the modules of this crate use.
pub use hypergraph_capabilities as capabilities;
pub use hypergraph_core::{journal, limits, retry, signals};
pub use hypergraph_store as store;
