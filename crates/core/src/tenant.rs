//! Tenants: whose deployments, runs and keys these are.
//!
//! Hypergraph has one tenant today, [`TenantId::default`]. The tenants issue gives each its own
//! quotas and capabilities; the store already scopes key-value data by tenant (see
//! [`crate::model::KvWrite::scope`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of a tenant: 1 to 64 ASCII letters, digits, `-` or `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant of everything until tenants exist: `default`.
    pub const DEFAULT: &'static str = "default";

    /// A tenant id, checked.
    pub fn new(name: &str) -> anyhow::Result<TenantId> {
        anyhow::ensure!(
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "`{name}` is not a valid tenant name: use 1 to 64 ASCII letters, digits, `-` or `_`"
        );
        Ok(TenantId(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key-value scope of `deployment` for this tenant: `<tenant>/<deployment>`.
    pub fn kv_scope(&self, deployment: &str) -> String {
        format!("{}/{deployment}", self.0)
    }
}

impl Default for TenantId {
    fn default() -> Self {
        TenantId(Self::DEFAULT.to_string())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_scope_keys() {
        assert_eq!(TenantId::default().as_str(), "default");
        assert_eq!(TenantId::default().kv_scope("counter"), "default/counter");
        assert!(TenantId::new("acme-1_x").is_ok());
        for bad in ["", "a/b", "é", &"x".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
    }
}
