//! Hypergraph: a durable task runtime in which every task is a WebAssembly component.
//!
//! Each invocation runs in a fresh instance; every input, output and host-call result is recorded
//! in one database, so runs can be resumed, inspected and replayed. See `DESIGN.md` for the
//! concepts and invariants; the modules map one-to-one onto responsibilities:
//!
//! - [`engine`]: wasmtime configuration, compile cache, pre-instantiated components;
//! - [`capabilities`]: what guests can import (one module per WIT interface);
//! - [`journal`]: the per-attempt record of host-call results;
//! - [`invoke`]: one attempt in a fresh instance;
//! - [`convert`]: JSON ↔ WIT values, signatures and task naming;
//! - [`store`]: the storage trait and its SQLite implementation;
//! - [`registry`], [`scheduler`], [`worker`]: deploy and resolve, submit and wait, execute;
//! - [`replay`], [`bundle`]: deterministic replay and portable replay bundles;
//! - [`retry`], [`dag`], [`dag_runner`], [`resume`]: retry policies, DAG workflow files and their
//!   execution, resuming failed runs;
//! - [`builder`]: building task projects (Rust, Python, JavaScript, C) into components;
//! - [`scaffold`]: `hypergraph new`, task projects to start from;
//! - [`cli`]: the `hypergraph` command line.

pub mod builder;
pub mod bundle;
pub mod capabilities;
pub mod cli;
pub mod convert;
pub mod dag;
pub mod dag_runner;
pub mod engine;
pub mod invoke;
pub mod journal;
pub mod limits;
pub mod notify;
pub mod registry;
pub mod replay;
pub mod resume;
pub mod retry;
pub mod runtime;
pub mod scaffold;
pub mod scheduler;
pub mod store;
pub mod worker;

pub use runtime::Hypergraph;
