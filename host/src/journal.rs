//! The journal: the append-only, ordered list of host-call results of one attempt.
//!
//! Every value that enters a guest from outside (clock reads, random bytes, the insecure seed) and
//! every output it emits through the host (log calls, stdout, stderr) is appended here by the
//! capability that serves the call, *before* the guest sees the result. The journal is committed
//! with the step's output in one transaction, which is what later makes resume and bit-for-bit
//! replay possible.
//!
//! Adding a kind of host call is a local change: add a variant to [`Entry`] (its serde tag is the
//! stored `kind`) and record it from the capability module that serves the call.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::store::JournalRecord;

/// One journaled host call. The serde tag (`kind`) is stored in its own column so journals can be
/// queried by kind; the whole entry is stored as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Entry {
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
    /// A line the guest emitted: `hypergraph:task/log.log`, or a line of stdout/stderr.
    #[serde(rename = "log")]
    Log {
        stream: String,
        level: String,
        message: String,
    },
    /// Lines the guest emitted beyond the per-attempt log cap; they are counted, not kept.
    #[serde(rename = "log.dropped")]
    LogsDropped { count: u64 },
}

impl Entry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::WallClockNow { .. } => "wall_clock.now",
            Entry::WallClockResolution { .. } => "wall_clock.resolution",
            Entry::MonotonicNow { .. } => "monotonic_clock.now",
            Entry::MonotonicResolution { .. } => "monotonic_clock.resolution",
            Entry::RandomBytes { .. } => "random.bytes",
            Entry::InsecureSeed { .. } => "random.insecure_seed",
            Entry::Log { .. } => "log",
            Entry::LogsDropped { .. } => "log.dropped",
        }
    }

    /// Parses a stored record back into an entry.
    pub fn from_record(record: &JournalRecord) -> anyhow::Result<Entry> {
        serde_json::from_str(&record.data).map_err(|e| {
            anyhow::anyhow!(
                "journal entry {} of kind `{}` is not valid: {e}",
                record.seq,
                record.kind
            )
        })
    }
}

/// The journal of the attempt being executed, shared by every capability of one instance.
///
/// Cloning is cheap and yields a handle to the same journal. Appends are serialized by a mutex
/// that is only ever contended by the guest's own (single-threaded) host calls.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Journal {
    /// Appends `entry` and returns its sequence number.
    pub fn record(&self, entry: Entry) -> u32 {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push(entry);
        (entries.len() - 1) as u32
    }

    /// Number of entries recorded so far.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the recorded entries, leaving the journal empty.
    pub fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Converts entries into storable records, numbered in order.
    pub fn to_records(entries: &[Entry]) -> Vec<JournalRecord> {
        entries
            .iter()
            .enumerate()
            .map(|(seq, entry)| JournalRecord {
                seq: seq as u32,
                kind: entry.kind().to_string(),
                data: serde_json::to_string(entry).expect("journal entries always serialize"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_matches_serde_tag_for_every_variant() {
        let all = [
            Entry::WallClockNow {
                seconds: 1,
                nanos: 2,
            },
            Entry::WallClockResolution {
                seconds: 0,
                nanos: 1,
            },
            Entry::MonotonicNow { nanos: 3 },
            Entry::MonotonicResolution { nanos: 1 },
            Entry::RandomBytes {
                secure: true,
                hex: "00ff".into(),
            },
            Entry::InsecureSeed { hi: 1, lo: 2 },
            Entry::Log {
                stream: "log".into(),
                level: "info".into(),
                message: "hi".into(),
            },
            Entry::LogsDropped { count: 4 },
        ];
        for entry in all {
            let json: serde_json::Value = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["kind"], entry.kind(), "{entry:?}");
        }
    }

    #[test]
    fn records_round_trip_in_order() {
        let journal = Journal::default();
        assert_eq!(journal.record(Entry::MonotonicNow { nanos: 10 }), 0);
        assert_eq!(
            journal.record(Entry::RandomBytes {
                secure: false,
                hex: "abcd".into()
            }),
            1
        );
        let records = Journal::to_records(&journal.take());
        assert!(journal.is_empty());
        assert_eq!(records[1].seq, 1);
        assert_eq!(records[1].kind, "random.bytes");
        let back: Vec<Entry> = records
            .iter()
            .map(|r| Entry::from_record(r).unwrap())
            .collect();
        assert_eq!(back[0], Entry::MonotonicNow { nanos: 10 });
    }

    #[test]
    fn corrupt_record_is_a_clear_error() {
        let err = Entry::from_record(&JournalRecord {
            seq: 7,
            kind: "wall_clock.now".into(),
            data: "{\"kind\":\"wall_clock.now\"}".into(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("journal entry 7"), "{err}");
    }
}
