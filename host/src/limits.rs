//! Per-instance resource limits (memory, execution time, log volume) and capability grants (the
//! HTTP allowlist).
//!
//! Host defaults apply unless the deployment's [`Policy`] overrides them. Memory is enforced by
//! [`InstanceLimiter`] (a wasmtime `ResourceLimiter`) on every linear-memory and table growth; time
//! by epoch interruption (see `engine`); log volume by the log capability.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::capabilities::http::HttpAllowlist;
use crate::store::Policy;

/// Default linear-memory cap of one instance: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Largest memory cap a deployment may ask for: the pooling allocator's per-memory reservation.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Default execution deadline of one attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of log lines kept per attempt.
pub const DEFAULT_MAX_LOG_LINES: u32 = 1000;
/// Largest table (e.g. function table) an instance may grow to, in elements.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The limits and grants that apply to one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_log_lines: u32,
    /// Hosts outbound HTTP may reach (none by default).
    pub http_allow: HttpAllowlist,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            max_log_lines: DEFAULT_MAX_LOG_LINES,
            http_allow: HttpAllowlist::default(),
        }
    }
}

impl Limits {
    /// The host defaults overridden by whatever `policy` sets.
    pub fn from_policy(policy: &Policy) -> Limits {
        let defaults = Limits::default();
        Limits {
            memory_bytes: policy.memory_limit_bytes.unwrap_or(defaults.memory_bytes),
            timeout: policy
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.timeout),
            max_log_lines: policy.max_log_lines.unwrap_or(defaults.max_log_lines),
            http_allow: HttpAllowlist::new(&policy.http_allow),
        }
    }
}

/// Validates a policy before it is stored, so a bad override fails at deploy time.
pub fn validate_policy(policy: &Policy) -> anyhow::Result<()> {
    if let Some(bytes) = policy.memory_limit_bytes {
        anyhow::ensure!(
            (64 * 1024..=MAX_MEMORY_BYTES).contains(&bytes),
            "memory limit {bytes} bytes is out of range: it must be between 64 KiB and {} GiB",
            MAX_MEMORY_BYTES >> 30
        );
    }
    for (name, value) in [
        ("timeout", policy.timeout_ms),
        ("schedule-to-start timeout", policy.schedule_to_start_ms),
        ("run timeout", policy.run_timeout_ms),
    ] {
        anyhow::ensure!(value != Some(0), "the {name} must be greater than zero");
    }
    policy.retry.validate().map_err(anyhow::Error::msg)?;
    for entry in &policy.http_allow {
        HttpAllowlist::validate_entry(entry).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

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
    pub(crate) hit: Option<MemoryLimitHit>,
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
    fn policy_overrides_defaults() {
        let limits = Limits::from_policy(&Policy {
            memory_limit_bytes: Some(1 << 20),
            timeout_ms: Some(250),
            max_log_lines: None,
            http_allow: vec!["127.0.0.1:8080".into()],
            ..Policy::default()
        });
        assert_eq!(limits.memory_bytes, 1 << 20);
        assert!(limits
            .http_allow
            .allows(&"http://127.0.0.1:8080/".parse().unwrap()));
        assert_eq!(limits.timeout, Duration::from_millis(250));
        assert_eq!(limits.max_log_lines, DEFAULT_MAX_LOG_LINES);
    }

    #[test]
    fn bad_policies_are_rejected() {
        let too_big = Policy {
            memory_limit_bytes: Some(MAX_MEMORY_BYTES + 1),
            ..Policy::default()
        };
        assert!(validate_policy(&too_big).is_err());
        let zero = Policy {
            timeout_ms: Some(0),
            ..Policy::default()
        };
        assert!(validate_policy(&zero).is_err());
        assert!(validate_policy(&Policy::default()).is_ok());
    }

    #[test]
    fn limiter_refuses_and_remembers() {
        let mut limiter = InstanceLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert_eq!(limiter.hit.as_ref().unwrap().requested, (1 << 20) + 1);
    }
}
