//! Hypergraph's domain: what every other crate speaks, with no WebAssembly and no database.
//!
//! - [`time`]: timestamps ([`time::Micros`]) and the [`time::Clock`] every time-based decision
//!   reads (system and manual clocks);
//! - [`model`]: deployments, policies, statuses, runs, steps, attempts, completions and the views
//!   read back; [`workflow`]: children, waits and child results;
//! - [`error`]: how an attempt fails; [`retry`]: when it is tried again;
//! - [`limits`]: the host's limits and their defaults; [`http`]: the HTTP allowlist and the
//!   journaled form of an exchange;
//! - [`journal`]: the per-attempt record of host-call results, for resume and replay;
//! - [`worker`]: worker processes, their heartbeats and when they count as dead;
//! - [`signals`]: in-process wake-ups; [`tenant`]: whose work it is.

pub mod error;
pub mod http;
pub mod journal;
pub mod limits;
pub mod model;
pub mod retry;
pub mod signals;
pub mod tenant;
pub mod time;
pub mod worker;
pub mod workflow;
