//! `hypergraph:task/context`: the run id, task name and attempt number of the invocation.
//!
//! These values are fixed for the attempt and stored with the step, so they are not journaled.

use wasmtime::component::{HasSelf, Linker};

use super::bindings::hypergraph::task::context;
use super::HostState;

impl context::Host for HostState {
    fn run_id(&mut self) -> String {
        self.context.run_id.clone()
    }

    fn task_name(&mut self) -> String {
        self.context.task_name.clone()
    }

    fn attempt(&mut self) -> u32 {
        self.context.attempt
    }
}

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:task/context@0.1.0"];

/// Registers `hypergraph:task/context` in `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    context::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}
