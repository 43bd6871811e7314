//! Host capabilities: everything a guest can import, one module per WIT interface family.
//!
//! Each module owns three things for its interfaces, like Spin's factors: its linker registration,
//! its slice of the per-instance state, and the journal entry kinds it records. [`HostState`] is
//! the wasmtime `Store` data of one instance; it is built fresh for every attempt and dropped with
//! the store, so nothing a guest does survives its invocation.
//!
//! - [`wasi`] serves WASI 0.2 with nothing ambient; journaled clocks, random and insecure seed.
//! - [`log`] serves `hypergraph:task/log` plus stdout/stderr capture into capped log lines.
//! - [`context`] serves `hypergraph:task/context`.
//! - [`kv`] serves `hypergraph:task/kv`: journaled reads, writes buffered until the attempt commits.
//! - [`http`] serves `wasi:http/outgoing-handler` to allowlisted hosts, journaling every exchange.
//! - [`workflow`] serves `hypergraph:workflow/workflow`: children, joins, durable sleep, events.

pub mod context;
pub mod http;
pub mod kv;
pub mod limiter;
pub mod log;
pub mod wasi;
pub mod workflow;

use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use hypergraph_core::journal::Journal;
use hypergraph_core::limits::Limits;
// The modules below name these through `crate::`.
use hypergraph_core::{journal, limits};
use hypergraph_store as store;

pub use limiter::InstanceLimiter;

/// Bindings generated from `wit/` for the Hypergraph interfaces; WASI maps to wasmtime-wasi's.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        // The workflow world: the task world plus `hypergraph:workflow/workflow`.
        world: "hypergraph:task/workflow",
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi": wasmtime_wasi::p2::bindings,
        },
        require_store_data_send: true,
        imports: {
            "hypergraph:task/kv.get": async | trappable,
            "hypergraph:task/kv.set": async | trappable,
            "hypergraph:task/kv.delete": async | trappable,
            "hypergraph:task/kv.list-keys": async | trappable,
            "hypergraph:workflow/workflow.start": async | trappable,
            "hypergraph:workflow/workflow.join": async | trappable,
            "hypergraph:workflow/workflow.call": async | trappable,
            "hypergraph:workflow/workflow.sleep": async | trappable,
            "hypergraph:workflow/workflow.wait-event": async | trappable,
        },
    });
}

/// A host call that failed because of the host, not the guest (the database could not be read,
/// the attempt lost its step, ...): the attempt fails with kind `host`. Any other error a host
/// call returns (a key too long, a join on a child that does not exist) is the guest's fault and
/// fails the attempt like a trap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostFault(pub String);

/// A [`HostFault`] as the error a host call returns.
pub fn host_fault(message: String) -> wasmtime::Error {
    wasmtime::Error::new(HostFault(message))
}

/// Identity of the invocation, served to the guest by [`context`].
#[derive(Clone, Debug, Default)]
pub struct InvocationContext {
    pub run_id: String,
    pub task_name: String,
    pub attempt: u32,
}

/// The store data of one instance: fresh per attempt.
///
/// Capability state that costs something to build (the WASI context with its clocks, random
/// generators and stdio; the HTTP context) is built on the guest's first call into that
/// capability, so a task that imports nothing, or only a little, pays only for what it uses. The
/// behaviour is the same either way: every value is journaled, and the monotonic clock still
/// counts from the start of the attempt.
pub struct HostState {
    /// Built on first use by [`WasiView::ctx`].
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub context: InvocationContext,
    pub logs: log::LogSink,
    pub limiter: InstanceLimiter,
    pub journal: Journal,
    pub kv: kv::KvState,
    /// Built on first use by `WasiHttpView::http`.
    http: Option<http::HttpState>,
    http_allow: http::HttpAllowlist,
    pub workflow: workflow::WorkflowState,
    /// When the attempt started (the origin of the guest's monotonic clock).
    started: Instant,
    /// When the attempt's execution time runs out.
    pub deadline: Instant,
}

impl HostState {
    /// Builds the state for one attempt: capped log capture and (on first use) a WASI context
    /// whose only sources of outside values are the clocks and random generators answered by
    /// `journal` (recording live values, or replaying recorded ones).
    pub fn new(
        context: InvocationContext,
        limits: &Limits,
        journal: Journal,
        kv: kv::KvState,
        workflow: workflow::WorkflowState,
    ) -> HostState {
        let logs = log::LogSink::new(limits, journal.clone());
        let started = Instant::now();
        HostState {
            wasi: None,
            table: ResourceTable::new(),
            context,
            logs,
            limiter: InstanceLimiter::new(limits.memory_bytes),
            journal,
            kv,
            http: None,
            http_allow: limits.http_allow.clone(),
            workflow,
            started,
            deadline: started + limits.timeout,
        }
    }

    /// The resource table and the HTTP state (built on first use), borrowed together for
    /// wasmtime-wasi-http.
    fn http_parts(&mut self) -> (&mut ResourceTable, &mut http::HttpState) {
        let http = self.http.get_or_insert_with(|| {
            http::HttpState::new(
                std::mem::take(&mut self.http_allow),
                self.journal.clone(),
                self.logs.clone(),
                self.deadline,
            )
        });
        (&mut self.table, http)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self
            .wasi
            .get_or_insert_with(|| wasi::build_ctx(&self.journal, &self.logs, self.started));
        WasiCtxView {
            ctx: wasi,
            table: &mut self.table,
        }
    }
}

/// Every interface the host serves, as `namespace:package/interface@version`, gathered from the
/// capability modules that serve them.
pub fn provided_interfaces() -> impl Iterator<Item = &'static str> {
    wasi::INTERFACES
        .iter()
        .chain(log::INTERFACES)
        .chain(context::INTERFACES)
        .chain(kv::INTERFACES)
        .chain(http::INTERFACES)
        .chain(workflow::INTERFACES)
        .copied()
}

/// True when an import named `import` is served by this host: same interface, and a version
/// semver-compatible with the served one (same major; same minor while the major is 0), which
/// is the rule wasmtime's linker applies.
pub fn provides(import: &str) -> bool {
    let (name, version) = split_version(import);
    provided_interfaces().any(|provided| {
        let (p_name, p_version) = split_version(provided);
        p_name == name && compatible(p_version, version)
    })
}

fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (name, None),
    }
}

fn compatible(provided: Option<&str>, wanted: Option<&str>) -> bool {
    let key = |v: &str| {
        let mut parts = v.split('.');
        let major = parts.next().unwrap_or("").to_string();
        let minor = parts.next().unwrap_or("").to_string();
        if major == "0" {
            (major, minor)
        } else {
            (major, String::new())
        }
    };
    match (provided, wanted) {
        (Some(p), Some(w)) => key(p) == key(w),
        (None, None) => true,
        _ => false,
    }
}

/// Registers every capability in `linker`. Later registrations shadow WASI's defaults where a
/// capability serves a WASI function itself (see [`wasi::add_to_linker`]).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasi::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    context::add_to_linker(linker)?;
    kv::add_to_linker(linker)?;
    http::add_to_linker(linker)?;
    workflow::add_to_linker(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::provides;

    #[test]
    fn semver_compatible_imports_are_provided() {
        assert!(provides("wasi:cli/stdout@0.2.0"));
        assert!(provides("wasi:io/streams@0.2.3"));
        assert!(provides("hypergraph:task/log@0.1.0"));
        assert!(provides("hypergraph:task/context@0.1.9"));
        assert!(!provides("wasi:cli/stdout@0.3.0"));
        assert!(!provides("hypergraph:task/log@0.2.0"));
        assert!(provides("wasi:http/outgoing-handler@0.2.0"));
        assert!(!provides("wasi:http/outgoing-handler@0.3.0"));
        assert!(!provides("acme:db/query@1.0.0"));
        assert!(!provides("wasi:cli/stdout"));
    }
}
