//! The journal entries of WASI: every outside value a task reads through `wasi:clocks` and
//! `wasi:random` (served by `hypergraph_capabilities::wasi`).

use serde::{Deserialize, Serialize};

/// The namespaces of this family's kinds (`<namespace>.<call>`).
pub(super) const NAMESPACES: &[&str] = &["wall_clock", "monotonic_clock", "random"];

/// A value a guest read from a WASI clock or random generator. Its serde tag (`kind`) is the
/// stored kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WasiEntry {
    /// `wasi:clocks/wall-clock.now` (and every other read of the wall clock).
    #[serde(rename = "wall_clock.now")]
    WallClockNow { seconds: u64, nanos: u32 },
    /// `wasi:clocks/wall-clock.resolution`.
    #[serde(rename = "wall_clock.resolution")]
    WallClockResolution { seconds: u64, nanos: u32 },
    /// `wasi:clocks/monotonic-clock.now` (and internal reads, e.g. for `subscribe-duration`).
    #[serde(rename = "monotonic_clock.now")]
    MonotonicNow { nanos: u64 },
    /// `wasi:clocks/monotonic-clock.resolution`.
    #[serde(rename = "monotonic_clock.resolution")]
    MonotonicResolution { nanos: u64 },
    /// Bytes drawn from the secure (`wasi:random/random`) or insecure (`wasi:random/insecure`)
    /// generator, hex encoded.
    #[serde(rename = "random.bytes")]
    RandomBytes { secure: bool, hex: String },
    /// `wasi:random/insecure-seed.insecure-seed`, as two 64-bit halves.
    #[serde(rename = "random.insecure_seed")]
    InsecureSeed { hi: u64, lo: u64 },
}

impl WasiEntry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            WasiEntry::WallClockNow { .. } => "wall_clock.now",
            WasiEntry::WallClockResolution { .. } => "wall_clock.resolution",
            WasiEntry::MonotonicNow { .. } => "monotonic_clock.now",
            WasiEntry::MonotonicResolution { .. } => "monotonic_clock.resolution",
            WasiEntry::RandomBytes { .. } => "random.bytes",
            WasiEntry::InsecureSeed { .. } => "random.insecure_seed",
        }
    }

    /// True when this recorded entry is the answer to `call`: the same read (random bytes: as
    /// many, from the same generator).
    pub fn answers(&self, call: &WasiCall) -> bool {
        match (self, call) {
            (WasiEntry::WallClockNow { .. }, WasiCall::WallClockNow)
            | (WasiEntry::WallClockResolution { .. }, WasiCall::WallClockResolution)
            | (WasiEntry::MonotonicNow { .. }, WasiCall::MonotonicNow)
            | (WasiEntry::MonotonicResolution { .. }, WasiCall::MonotonicResolution)
            | (WasiEntry::InsecureSeed { .. }, WasiCall::InsecureSeed) => true,
            (WasiEntry::RandomBytes { secure, hex }, WasiCall::RandomBytes { secure: s, len }) => {
                secure == s && hex.len() == 2 * len
            }
            _ => false,
        }
    }
}

/// A WASI read as the guest makes it, with its arguments: what a [`WasiEntry`] must answer in
/// replay. Serialized (in a divergence) under the kind of the entry that answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum WasiCall {
    #[serde(rename = "wall_clock.now")]
    WallClockNow,
    #[serde(rename = "wall_clock.resolution")]
    WallClockResolution,
    #[serde(rename = "monotonic_clock.now")]
    MonotonicNow,
    #[serde(rename = "monotonic_clock.resolution")]
    MonotonicResolution,
    #[serde(rename = "random.bytes")]
    RandomBytes { secure: bool, len: usize },
    #[serde(rename = "random.insecure_seed")]
    InsecureSeed,
}
