//! The wasmtime engine: configuration, compile cache and pre-instantiated components.
//!
//! One [`Engine`] per process. A component is compiled once per digest (and cached on disk keyed by
//! digest and engine configuration, so a restarted CLI does not recompile), linked once into an
//! `InstancePre`, and then instantiated fresh for every attempt from the pooling allocator with
//! copy-on-write memory images (see `invoke`). A background thread advances the epoch every
//! [`EPOCH_TICK`]; execution deadlines are counted in those ticks.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::capabilities::{self, HostState};
use crate::convert::{task_exports, TaskExport};
use crate::limits::MAX_MEMORY_BYTES;

/// How often the epoch advances: the granularity of execution deadlines and of cooperative yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a pooled linear memory an instance wrote that are reset in place (and kept resident)
/// when its slot is freed, rather than decommitted: see [`Engine::new`].
const POOL_MEMORY_KEEP_RESIDENT: usize = 16 << 20;
/// The same for each pooled table (a whole table of `table_elements` 8-byte entries is 800 KB).
const POOL_TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// Options for [`Engine::new`].
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Maximum instances alive at once in this process (pooling allocator slots); 0 = default 256.
    pub max_instances: u32,
}

/// A compiled, linked component ready to be instantiated, with its tasks.
pub struct Prepared {
    /// sha256 of the component bytes, lowercase hex.
    pub digest: String,
    pub component: Component,
    pub(crate) pre: InstancePre<HostState>,
    pub tasks: Vec<PreparedTask>,
}

/// One exported function of a [`Prepared`] component.
pub struct PreparedTask {
    pub export: TaskExport,
    pub(crate) index: ComponentExportIndex,
}

impl Prepared {
    /// The task whose name within the component (`greet`, `pricing.quote`) is `name`.
    pub fn task(&self, name: &str) -> Option<&PreparedTask> {
        self.tasks.iter().find(|t| t.export.name == name)
    }
}

/// The process-wide wasmtime engine, linker and caches.
pub struct Engine {
    pub(crate) wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
    _ticker: EpochTicker,
}

/// The sha256 digest of component bytes, lowercase hex: the content address of a component.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What kind of WebAssembly (or not) some bytes are.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Component,
    CoreModule,
    Text,
    Unknown,
}

fn shape(bytes: &[u8]) -> Shape {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() >= 8 && &bytes[..4] == MAGIC {
        // Layer 0 is a core module, layer 1 a component (bytes 6..8 of the preamble).
        return match (bytes[6], bytes[7]) {
            (0, 0) => Shape::CoreModule,
            (1, 0) => Shape::Component,
            _ => Shape::Unknown,
        };
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let trimmed = strip_wat_comments(text);
            if trimmed.starts_with("(component") {
                Shape::Text
            } else if trimmed.starts_with("(module") {
                Shape::CoreModule
            } else {
                Shape::Unknown
            }
        }
        Err(_) => Shape::Unknown,
    }
}

fn strip_wat_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix(";;") {
            text = rest.split_once('\n').map(|(_, r)| r).unwrap_or("");
        } else if let Some(rest) = text.strip_prefix("(;") {
            text = rest.split_once(";)").map(|(_, r)| r).unwrap_or("");
        } else {
            return text;
        }
    }
}

impl Engine {
    /// Creates the engine, its linker with every host capability, and the epoch ticker.
    pub fn new(options: EngineOptions) -> Result<Engine> {
        let max_instances = if options.max_instances == 0 {
            256
        } else {
            options.max_instances
        };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 4)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .total_stacks(max_instances)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .table_elements(100_000)
            .max_memory_size(MAX_MEMORY_BYTES as usize);
        // Pooled-slot page reset. By default a freed slot's linear memories and tables are
        // decommitted (`madvise(DONTNEED)`), so the next instance in that slot page-faults again on
        // every page it writes: for a componentize-py or ComponentizeJS guest, hundreds of faults
        // per run, in the function tables its dynamically linked modules fill at instantiation and
        // in the heap pages it dirties. Where Linux has the `PAGEMAP_SCAN` ioctl (6.7+), wasmtime
        // finds the pages an instance actually wrote and restores just those in place (`memcpy`
        // from the image, `memset`), up to the bytes below per memory or table, keeping them
        // resident; anything beyond is decommitted as before. The cost is resident memory: up to
        // that much per warm slot (slots are reused most-recently-used first, so about one per
        // concurrent instance). Without the ioctl these options would `memset` that many bytes on
        // every reset whatever was touched, so they stay off there. Measured in BENCHMARKS.md
        // ("Tasks in every language").
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(POOL_MEMORY_KEEP_RESIDENT)
                .table_keep_resident(POOL_TABLE_KEEP_RESIDENT);
        }
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20);
        let wasmtime = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;
        let mut linker = Linker::new(&wasmtime);
        capabilities::add_to_linker(&mut linker)?;
        let ticker = EpochTicker::start(wasmtime.clone());
        Ok(Engine {
            wasmtime,
            linker,
            cache_dir: options.cache_dir,
            prepared: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    /// The underlying wasmtime engine (for embedders and benchmarks).
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.wasmtime
    }

    /// Compiles `bytes` (a binary component or its WAT text) without caching, with clear errors
    /// for core modules and bytes that are not WebAssembly at all.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component> {
        match shape(bytes) {
            Shape::Component | Shape::Text => {}
            Shape::CoreModule => bail!(
                "this is a core WebAssembly module, not a component: Hypergraph runs components \
                 (the component model). Build for the `wasm32-wasip2` target (`hypergraph build \
                 <crate dir>`), or wrap the module with `wasm-tools component new`"
            ),
            Shape::Unknown => bail!(
                "not a WebAssembly component: expected a binary component (`\\0asm` with the \
                 component layer) or component text starting with `(component`"
            ),
        }
        Component::new(&self.wasmtime, bytes)
            .map_err(|e| anyhow::anyhow!("the component is invalid and cannot be compiled: {e:#}"))
    }

    /// Checks that every import of `component` is provided by this host. The error lists each
    /// unsatisfiable import; an import whose name is served but whose type differs gets the
    /// linker's explanation.
    pub fn check_imports(&self, component: &Component) -> Result<()> {
        let ty = component.component_type();
        let missing: Vec<&str> = ty
            .imports(&self.wasmtime)
            // World-level types (records, variants, ...) are imported as types; they need nothing.
            .filter(|(_, item)| !matches!(item.ty, ComponentItem::Type(_)))
            .map(|(name, _)| name)
            .filter(|name| !capabilities::provides(name))
            .collect();
        if !missing.is_empty() {
            let mut message = format!(
                "the component imports {} interface(s) this host does not provide:",
                missing.len()
            );
            for name in &missing {
                message.push_str(&format!("\n  - {name}"));
            }
            message.push_str(
                "\nA task may import hypergraph:task/*, hypergraph:workflow/* and WASI 0.2 \
                 (wasi:cli, wasi:clocks, wasi:io, wasi:random, wasi:filesystem, wasi:sockets, \
                 wasi:http/outgoing-handler); other capabilities are not available yet.",
            );
            bail!(message)
        }
        if let Err(e) = self.linker.instantiate_pre(component) {
            bail!("the component's imports do not match what this host provides: {e:#}");
        }
        Ok(())
    }

    /// Returns the prepared component for `digest`, compiling it (or loading it from the disk
    /// cache) and linking it on first use. `bytes` is called only when the component is not in the
    /// in-memory cache. The component's tasks are listed and checked (no resources) here too.
    pub async fn prepare<F, Fut>(&self, digest: &str, bytes: F) -> Result<Arc<Prepared>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        if let Some(prepared) = self.cached(digest) {
            return Ok(prepared);
        }
        let bytes = bytes().await?;
        let component = self.compile_cached(digest, &bytes)?;
        let prepared = Arc::new(self.link(digest, component)?);
        let mut cache = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache.entry(digest.to_string()).or_insert(prepared).clone())
    }

    /// [`Engine::prepare`] for component bytes at hand: digests them and prepares them.
    pub async fn prepare_bytes(&self, bytes: &[u8]) -> Result<Arc<Prepared>> {
        self.prepare(&digest(bytes), || async { Ok(bytes.to_vec()) })
            .await
    }

    fn cached(&self, digest: &str) -> Option<Arc<Prepared>> {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    /// Links a compiled component: import check, task listing, `InstancePre`.
    fn link(&self, digest: &str, component: Component) -> Result<Prepared> {
        self.check_imports(&component)?;
        let pre = self.linker.instantiate_pre(&component)?;
        let mut tasks = Vec::new();
        for export in task_exports(&self.wasmtime, &component)? {
            let index = export
                .export_index(&component)
                .with_context(|| format!("exported function `{}` not found", export.name))?;
            tasks.push(PreparedTask { export, index });
        }
        Ok(Prepared {
            digest: digest.to_string(),
            component,
            pre,
            tasks,
        })
    }

    /// Compiles `bytes`, using the on-disk cache keyed by digest and engine configuration.
    fn compile_cached(&self, digest: &str, bytes: &[u8]) -> Result<Component> {
        let Some(path) = self.cache_path(digest) else {
            return self.compile(bytes);
        };
        // Read into memory rather than mmap the file: a cache file replaced or truncated by another
        // process must never be able to fault this one.
        if let Ok(cached) = std::fs::read(&path) {
            match verified_artifact(&cached) {
                // SAFETY: the artifact's checksum matches the one written with it, so these are
                // exactly the bytes `Component::serialize` produced on an engine with the same
                // compatibility hash (it is part of the path); deserialize also checks the header.
                Some(artifact) => match unsafe { Component::deserialize(&self.wasmtime, artifact) }
                {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "ignoring bad cache entry: {e:#}")
                    }
                },
                None => tracing::warn!(
                    path = %path.display(),
                    "ignoring a corrupt compile cache entry (its checksum does not match); recompiling"
                ),
            }
        }
        let component = self.compile(bytes)?;
        if let Err(e) = write_cache(&path, &component) {
            tracing::warn!(path = %path.display(), "could not write the compile cache: {e:#}");
        }
        Ok(component)
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.wasmtime
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(
            dir.join(format!("{:016x}", hasher.finish()))
                .join(format!("{digest}.cwasm")),
        )
    }
}

/// The first bytes of a compile cache entry; the format is `CACHE_MAGIC`, the sha256 of the
/// artifact, then the artifact (`Component::serialize`'s output).
const CACHE_MAGIC: &[u8; 8] = b"HGCWASM1";

/// A compile cache entry: the artifact framed with [`CACHE_MAGIC`] and its checksum.
fn cache_entry(artifact: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(CACHE_MAGIC.len() + 32 + artifact.len());
    entry.extend_from_slice(CACHE_MAGIC);
    entry.extend_from_slice(&Sha256::digest(artifact));
    entry.extend_from_slice(artifact);
    entry
}

/// The artifact of a compile cache entry whose checksum matches, `None` for anything else (a
/// corrupted, truncated or foreign file). Native code is never loaded unverified.
fn verified_artifact(entry: &[u8]) -> Option<&[u8]> {
    let rest = entry.strip_prefix(CACHE_MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (checksum, artifact) = rest.split_at(32);
    (Sha256::digest(artifact).as_slice() == checksum).then_some(artifact)
}

fn write_cache(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, cache_entry(&component.serialize()?))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hypergraph-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_are_verified_before_use() {
        let artifact = b"native code".repeat(100);
        let entry = cache_entry(&artifact);
        assert_eq!(verified_artifact(&entry), Some(artifact.as_slice()));
        // Any flipped byte, a truncation, or a file without the frame is refused.
        for at in [0, 9, 40, entry.len() - 1] {
            let mut bad = entry.clone();
            bad[at] ^= 0x20;
            assert_eq!(verified_artifact(&bad), None, "byte {at}");
        }
        assert_eq!(verified_artifact(&entry[..entry.len() - 1]), None);
        assert_eq!(verified_artifact(&entry[..20]), None);
        assert_eq!(verified_artifact(&artifact), None);
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(b"\0asm\x0d\0\x01\0"), Shape::Component);
        assert_eq!(shape(b"\0asm\x01\0\0\0"), Shape::CoreModule);
        assert_eq!(shape(b";; hi\n(component)"), Shape::Text);
        assert_eq!(shape(b"(; block ;) (module)"), Shape::CoreModule);
        assert_eq!(shape(b"hello world"), Shape::Unknown);
        assert_eq!(shape(&[0xff, 0xfe, 0x00]), Shape::Unknown);
    }
}
