//! [`InstanceLimiter`]: the wasmtime `ResourceLimiter` that enforces an attempt's memory cap on
//! every linear-memory and table growth, remembering the first refusal so the trap that follows
//! is reported as "memory limit exceeded".

use hypergraph_core::limits::MAX_TABLE_ELEMENTS;
use wasmtime::ResourceLimiter;

/// Why an instance hit its memory cap, kept to explain the trap that follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimitHit {
    pub requested: usize,
    pub limit: u64,
}

/// Enforces [`Limits::memory_bytes`] on each linear memory and remembers the first refusal, so the
/// resulting trap can be reported as "memory limit exceeded" rather than a generic error.
#[derive(Debug)]
pub struct InstanceLimiter {
    memory_limit: u64,
    pub hit: Option<MemoryLimitHit>,
}

impl InstanceLimiter {
    /// A limiter allowing each linear memory to grow to `memory_limit` bytes.
    pub fn new(memory_limit: u64) -> InstanceLimiter {
        InstanceLimiter {
            memory_limit,
            hit: None,
        }
    }
}

/// The error a refused memory growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the guest asked for {requested} bytes of linear memory, the limit is {limit} bytes (raise it with the deployment's memory limit)")]
pub struct MemoryLimitExceeded {
    pub requested: usize,
    pub limit: u64,
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.hit = Some(MemoryLimitHit {
                requested: desired,
                limit: self.memory_limit,
            });
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                requested: desired,
                limit: self.memory_limit,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_and_remembers() {
        let mut limiter = InstanceLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert_eq!(limiter.hit.as_ref().unwrap().requested, (1 << 20) + 1);
    }
}
