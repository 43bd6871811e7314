//! How a store is opened: where its time comes from and what an acknowledged write survives.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Error};
use hypergraph_core::time::{Clock, SystemClock};

/// What an acknowledged write (a submission, a completion, an event, a deployment) survives.
/// Both backends keep the same promise for each level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the process **and** of the machine (power loss, kernel panic): a write is
    /// acknowledged only once it is on disk. SQLite `synchronous = FULL` (the WAL is synced at
    /// every commit); PostgreSQL `synchronous_commit = on`. The default.
    #[default]
    Strict,
    /// A crash of the process only. After a crash of the machine (or, on PostgreSQL, of the
    /// database server) the last acknowledged writes may be lost: the database stays consistent
    /// and simply goes back to an earlier commit, so their steps run again. SQLite
    /// `synchronous = NORMAL` (the WAL is synced at checkpoints); PostgreSQL
    /// `synchronous_commit = off` (at most `3 x wal_writer_delay`, 600 ms by default, of
    /// commits).
    Relaxed,
}

impl Durability {
    /// The name used on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Relaxed => "relaxed",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "strict" => Ok(Durability::Strict),
            "relaxed" => Ok(Durability::Relaxed),
            other => bail!("unknown durability `{other}`: use `strict` or `relaxed`"),
        }
    }
}

/// How to open a store (see [`crate::open_with`]).
#[derive(Clone)]
pub struct OpenOptions {
    /// Where every timestamp the store writes and every deadline it checks comes from.
    pub clock: Arc<dyn Clock>,
    /// What an acknowledged write survives.
    pub durability: Durability,
}

impl Default for OpenOptions {
    /// The system clock, [`Durability::Strict`].
    fn default() -> Self {
        OpenOptions {
            clock: Arc::new(SystemClock),
            durability: Durability::Strict,
        }
    }
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_names_round_trip_and_unknown_ones_are_refused() {
        for d in [Durability::Strict, Durability::Relaxed] {
            assert_eq!(d.as_str().parse::<Durability>().unwrap(), d);
        }
        let err = "fast".parse::<Durability>().unwrap_err().to_string();
        assert!(err.contains("strict") && err.contains("relaxed"), "{err}");
        assert_eq!(Durability::default(), Durability::Strict);
    }
}
