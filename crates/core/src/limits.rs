//! Per-instance resource limits (memory, execution time, log volume) and capability grants (the
//! HTTP allowlist).
//!
//! Host defaults apply unless the deployment's [`Policy`] overrides them. Memory is enforced by
//! [`InstanceLimiter`] (a wasmtime `ResourceLimiter`) on every linear-memory and table growth; time
//! by epoch interruption (see `engine`); log volume by the log capability.

use std::time::Duration;

use crate::http::HttpAllowlist;
use crate::model::Policy;

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
/// Default longest log line kept: 64 KiB.
pub const DEFAULT_MAX_LOG_LINE_BYTES: u64 = 64 << 10;
/// Default log bytes kept per attempt: 1 MiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 1 << 20;
/// Default largest input (JSON text) of a task: 16 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 16 << 20;
/// Default largest output (JSON text) of a task: 16 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// Default key-value bytes one attempt may write: 16 MiB.
pub const DEFAULT_MAX_KV_WRITE_BYTES: u64 = 16 << 20;
/// Default number of lost leases a step survives: 3.
pub const DEFAULT_MAX_LOST_LEASES: u32 = 3;
/// The largest input, output or key-value write budget a deployment may ask for: 64 MiB. The
/// command line refuses input text past it before parsing it.
pub const MAX_PAYLOAD_LIMIT: u64 = 64 << 20;
/// The largest log budget a deployment may ask for, per line and per attempt: 16 MiB.
pub const MAX_LOG_LIMIT: u64 = 16 << 20;
/// The largest number of lost leases a deployment may let a step survive.
pub const MAX_LOST_LEASES_LIMIT: u32 = 100;

/// The limits and grants that apply to one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_log_lines: u32,
    /// Longest log line kept, in bytes.
    pub max_log_line_bytes: u64,
    /// Log bytes kept per attempt.
    pub max_log_bytes: u64,
    /// Largest output, in bytes of its JSON text.
    pub max_output_bytes: u64,
    /// Key-value bytes the attempt may write.
    pub max_kv_write_bytes: u64,
    /// Hosts outbound HTTP may reach (none by default).
    pub http_allow: HttpAllowlist,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            max_log_lines: DEFAULT_MAX_LOG_LINES,
            max_log_line_bytes: DEFAULT_MAX_LOG_LINE_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_kv_write_bytes: DEFAULT_MAX_KV_WRITE_BYTES,
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
            max_log_line_bytes: policy
                .max_log_line_bytes
                .unwrap_or(defaults.max_log_line_bytes),
            max_log_bytes: policy.max_log_bytes.unwrap_or(defaults.max_log_bytes),
            max_output_bytes: policy.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            max_kv_write_bytes: policy
                .max_kv_write_bytes
                .unwrap_or(defaults.max_kv_write_bytes),
            http_allow: HttpAllowlist::new(&policy.http_allow),
        }
    }
}

/// The largest input `policy` accepts, in bytes of its JSON text.
pub fn max_input_bytes(policy: &Policy) -> u64 {
    policy.max_input_bytes.unwrap_or(DEFAULT_MAX_INPUT_BYTES)
}

/// How many lost leases a step under `policy` survives.
pub fn max_lost_leases(policy: &Policy) -> u32 {
    policy.max_lost_leases.unwrap_or(DEFAULT_MAX_LOST_LEASES)
}

/// Checks that `input` fits `policy`'s input limit; the error names the size, the limit and the
/// flag that raises it.
pub fn check_input_size(input: &serde_json::Value, policy: &Policy) -> anyhow::Result<()> {
    let limit = max_input_bytes(policy);
    let size = json_len(input);
    anyhow::ensure!(
        size <= limit,
        "the input is {} ({size} bytes of JSON), larger than the deployment's limit of {} \
         (raise it with `hypergraph deploy --max-input`)",
        format_bytes(size),
        format_bytes(limit)
    );
    Ok(())
}

/// The length of `value`'s compact JSON text, without building it.
pub fn json_len(value: &serde_json::Value) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("counting never fails");
    counter.0
}

/// `bytes` for people: `512 B`, `64 KiB`, `16 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenths = (bytes % size) * 10 / size;
            return if tenths == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenths} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// A limit of the deployment that an attempt hit: fails it as [`ErrorKind::Limit`]
/// (`crate::invoke::ErrorKind`), never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

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
    for (name, value, max) in [
        ("max-log-line", policy.max_log_line_bytes, MAX_LOG_LIMIT),
        ("max-log-bytes", policy.max_log_bytes, MAX_LOG_LIMIT),
        ("max-input", policy.max_input_bytes, MAX_PAYLOAD_LIMIT),
        ("max-output", policy.max_output_bytes, MAX_PAYLOAD_LIMIT),
        ("max-kv-write", policy.max_kv_write_bytes, MAX_PAYLOAD_LIMIT),
    ] {
        if let Some(bytes) = value {
            anyhow::ensure!(
                (1024..=max).contains(&bytes),
                "{name} of {bytes} bytes is out of range: it must be between 1 KiB and {}",
                format_bytes(max)
            );
        }
    }
    if let Some(leases) = policy.max_lost_leases {
        anyhow::ensure!(
            (1..=MAX_LOST_LEASES_LIMIT).contains(&leases),
            "max-lost-leases must be between 1 and {MAX_LOST_LEASES_LIMIT}, not {leases}"
        );
    }
    policy.retry.validate().map_err(anyhow::Error::msg)?;
    for entry in &policy.http_allow {
        HttpAllowlist::validate_entry(entry).map_err(anyhow::Error::msg)?;
    }
    Ok(())
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
    fn sizes_and_lengths() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 10), "64 KiB");
        assert_eq!(format_bytes(3 << 19), "1.5 MiB");
        let value = serde_json::json!({"a": [1, "x\"y"], "b": null});
        assert_eq!(json_len(&value), value.to_string().len() as u64);
        let big = Policy {
            max_input_bytes: Some(2048),
            ..Policy::default()
        };
        assert!(check_input_size(&serde_json::json!("x".repeat(2000)), &big).is_ok());
        let err = check_input_size(&serde_json::json!("x".repeat(3000)), &big).unwrap_err();
        assert!(err.to_string().contains("--max-input"), "{err}");
        for bad in [
            Policy {
                max_output_bytes: Some(MAX_PAYLOAD_LIMIT + 1),
                ..Policy::default()
            },
            Policy {
                max_log_line_bytes: Some(10),
                ..Policy::default()
            },
            Policy {
                max_lost_leases: Some(0),
                ..Policy::default()
            },
        ] {
            assert!(validate_policy(&bad).is_err(), "{bad:?}");
        }
    }
}
