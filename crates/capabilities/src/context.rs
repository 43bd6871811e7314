//! `hypergraph:task/context`: the run id, task name and attempt number of the invocation.
//!
//! These values are fixed for the attempt and stored with the step, so they are not journaled.
//! The capability's state and view are the [`InvocationContext`] itself.

use wasmtime::component::{HasSelf, Linker};

use super::bindings::hypergraph::task::context;

/// Identity of the invocation, served to the guest.
#[derive(Clone, Debug, Default)]
pub struct InvocationContext {
    pub run_id: String,
    pub task_name: String,
    pub attempt: u32,
}

impl context::Host for InvocationContext {
    fn run_id(&mut self) -> String {
        self.run_id.clone()
    }

    fn task_name(&mut self) -> String {
        self.task_name.clone()
    }

    fn attempt(&mut self) -> u32 {
        self.attempt
    }
}

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:task/context@0.1.0"];

/// Registers `hypergraph:task/context` in `linker`, served from the context `project` finds in
/// the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut InvocationContext,
) -> anyhow::Result<()> {
    context::add_to_linker::<T, HasSelf<InvocationContext>>(linker, project)?;
    Ok(())
}
