//! Host capabilities: everything a guest can import, one module per WIT interface family.
//!
//! Each module owns, for its interfaces: its linker registration (`add_to_linker`, given the
//! projection from the store data to its view, as wasmtime-wasi's `WasiView` is), its
//! per-instance state, and the host-trait implementations on its own view type; its journal
//! entry kinds live beside the journal in `hypergraph_core::journal`. A capability that needs
//! the world outside the instance asks through a narrow trait it defines ([`kv::KvBackend`],
//! [`workflow::WorkflowHost`]), implemented by the runtime. [`HostState`] is the wasmtime `Store`
//! data of one instance: it holds each capability's state and projects the views; it is built
//! fresh for every attempt and dropped with the store, so nothing a guest does survives its
//! invocation.
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
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use hypergraph_core::journal::{Divergence, Entry, Journal};
use hypergraph_core::limits::Limits;
use hypergraph_core::model::{KvRead, LogRecord};
use hypergraph_core::workflow::{NewChild, Wait};
// The modules below name these through `crate::`.
use hypergraph_core::{journal, limits};

pub use context::InvocationContext;
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

/// The store data of one instance: fresh per attempt, private to the capabilities.
///
/// It holds what the capabilities share (the resource table, the journal, the log sink, the
/// attempt's deadline) and each capability's own state, and projects each capability's view
/// for the host calls [`add_to_linker`] registers. Capability state that costs something to
/// build (the WASI context with its clocks, random generators and stdio; the HTTP context) is
/// built on the guest's first call into that capability, so a task that imports nothing, or only
/// a little, pays only for what it uses. The behaviour is the same either way: every value is
/// journaled, and the monotonic clock still counts from the start of the attempt.
pub struct HostState {
    table: ResourceTable,
    journal: Journal,
    logs: log::LogSink,
    limiter: InstanceLimiter,
    context: InvocationContext,
    wasi: wasi::WasiState,
    kv: kv::KvState,
    http: http::HttpState,
    workflow: workflow::WorkflowState,
    /// When the attempt's execution time runs out.
    deadline: Instant,
}

/// What the capabilities of one instance produced, taken when its attempt ends
/// ([`HostState::finish`]).
#[derive(Debug, Default)]
pub struct Produced {
    /// Every journal entry of the attempt, in order (a resumed journal's prefix included).
    pub journal: Vec<Entry>,
    /// When replaying: the first divergence from the recorded journal.
    pub divergence: Option<Divergence>,
    /// The log lines to store: those emitted live, and the dropped-lines marker if any.
    pub logs: Vec<LogRecord>,
    /// The buffered key-value writes (`None` deletes), in key order, last write per key.
    pub kv_writes: Vec<(String, Option<Vec<u8>>)>,
    /// The store reads to validate at commit (those since the last checkpoint).
    pub kv_reads: Vec<KvRead>,
    /// Children a workflow started in this activation.
    pub children: Vec<NewChild>,
    /// Set when a workflow suspended: what it waits for.
    pub wait: Option<Wait>,
}

impl HostState {
    /// Builds the state for one attempt: capped log capture, `kv` and `workflow` as given, and
    /// (on first use) a WASI context whose only sources of outside values are the clocks and
    /// random generators answered by `journal` (recording live values, or replaying recorded
    /// ones). The attempt's execution deadline is `limits.timeout` from now.
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
            table: ResourceTable::new(),
            journal,
            logs,
            limiter: InstanceLimiter::new(limits.memory_bytes),
            context,
            wasi: wasi::WasiState::new(started),
            kv,
            http: http::HttpState::new(limits.http_allow.clone()),
            workflow,
            deadline: started + limits.timeout,
        }
    }

    /// The memory limiter, for `wasmtime::Store::limiter`; it remembers a refused growth
    /// ([`InstanceLimiter::hit`]).
    pub fn limiter(&mut self) -> &mut InstanceLimiter {
        &mut self.limiter
    }

    /// Why the instance hit its memory cap, if it did: the first refused growth.
    pub fn memory_limit_hit(&self) -> Option<&limiter::MemoryLimitHit> {
        self.limiter.hit.as_ref()
    }

    /// `hypergraph:task/context`'s view: the identity of the invocation.
    fn context(&mut self) -> &mut InvocationContext {
        &mut self.context
    }

    /// `hypergraph:task/log`'s view: the attempt's log.
    fn log(&mut self) -> &mut log::LogSink {
        &mut self.logs
    }

    /// `hypergraph:task/kv`'s view.
    fn kv(&mut self) -> kv::KvCtx<'_> {
        kv::KvCtx {
            state: &mut self.kv,
            journal: &self.journal,
        }
    }

    /// `hypergraph:workflow/workflow`'s view: also what a checkpoint takes from the rest of the
    /// instance (the journal, the log lines, the key-value reads).
    pub fn workflow(&mut self) -> workflow::WorkflowCtx<'_> {
        workflow::WorkflowCtx {
            state: &mut self.workflow,
            journal: &self.journal,
            logs: &self.logs,
            kv: &mut self.kv,
            deadline: self.deadline,
        }
    }

    /// The journal the WASI functions served here (not by wasmtime-wasi) record into.
    fn journal(&mut self) -> &Journal {
        &self.journal
    }

    /// Ends the attempt's capabilities and takes what they produced: the log is finished (its
    /// partial lines flushed and the dropped-lines marker journaled) before the journal is
    /// taken.
    pub fn finish(mut self) -> Produced {
        let kv_writes = self.kv.take_writes();
        let kv_reads = self.kv.take_reads();
        let (children, wait) = self.workflow.take();
        let logs = self.logs.finish();
        let divergence = self.journal.divergence();
        Produced {
            journal: self.journal.take(),
            divergence,
            logs,
            kv_writes,
            kv_reads,
            children,
            wait,
        }
    }
}

impl WasiView for HostState {
    /// WASI's view: the context is built on first use.
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view(&mut self.table, &self.journal, &self.logs)
    }
}

impl WasiHttpView for HostState {
    /// `wasi:http`'s view: the context is built on first use.
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.http
            .view(&mut self.table, &self.journal, &self.logs, self.deadline)
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
    wasi::add_to_linker(linker, HostState::journal)?;
    log::add_to_linker(linker, HostState::log)?;
    context::add_to_linker(linker, HostState::context)?;
    kv::add_to_linker(linker, HostState::kv)?;
    http::add_to_linker(linker)?;
    workflow::add_to_linker(linker, HostState::workflow)?;
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
