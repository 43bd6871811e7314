//! The journal: the append-only, ordered list of host-call results of one attempt.
//!
//! Every value that enters a guest from outside (clock reads, random bytes, the insecure seed) and
//! every output it emits through the host (log calls, stdout, stderr) is appended here by the
//! capability that serves the call, *before* the guest sees the result. The journal is committed
//! with the step's output in one transaction, which is what later makes resume and bit-for-bit
//! replay possible.
//!
//! Each capability owns its entry kinds, in a module of its own here: an entry enum (one variant
//! per kind; its serde tag is the stored `kind`, named `<namespace>.<call>`) and, for the inputs
//! replay must match, a call enum ([`WasiEntry`]/[`WasiCall`], [`LogEntry`], [`KvEntry`]/
//! [`KvCall`], [`HttpEntry`]/[`HttpCall`], [`WorkflowEntry`]/[`WorkflowCall`]). [`Entry`] and
//! [`Call`] compose them, one variant per capability, and serialize as the inner value, so the
//! stored JSON is the capability's own. Adding a capability's kinds is a module here, a variant
//! of [`Entry`] (and of [`Call`] if it has inputs) and its line in the `families!` list.

mod http;
mod kv;
mod log;
mod wasi;
mod workflow;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Serialize};

use crate::model::JournalRecord;

pub use self::http::{HttpCall, HttpEntry};
pub use self::kv::{KvCall, KvEntry};
pub use self::log::LogEntry;
pub use self::wasi::{WasiCall, WasiEntry};
pub use self::workflow::{resume_cut, WorkflowCall, WorkflowEntry};

/// Bytes as journaled (key-value values, HTTP bodies): UTF-8 text as it is, other bytes in
/// base64. Journals written before this encoding held key-value bytes as a hex string, which
/// still reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blob {
    Utf8(String),
    Base64(String),
}

impl Blob {
    /// `bytes` in the journal's encoding: as text when they are UTF-8 that JSON does not
    /// inflate past base64's size (control characters are escaped as six bytes each), else in
    /// base64.
    pub fn from_bytes(bytes: &[u8]) -> Blob {
        let base64_len = bytes.len().div_ceil(3) * 4;
        match std::str::from_utf8(bytes) {
            Ok(text) if json_text_len(text) <= base64_len.max(bytes.len()) => {
                Blob::Utf8(text.to_string())
            }
            _ => Blob::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// The bytes (empty for base64 that does not decode, which only a corrupted journal holds).
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Blob::Utf8(text) => text.as_bytes().to_vec(),
            Blob::Base64(data) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default(),
        }
    }

    /// The size of the bytes.
    pub fn len(&self) -> usize {
        match self {
            Blob::Utf8(text) => text.len(),
            Blob::Base64(data) => data.len() / 4 * 3,
        }
    }

    /// True for no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The length of `text` inside a JSON string, escapes included.
fn json_text_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Tagged {
            Utf8(String),
            Base64(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Tagged(Tagged),
            /// The earlier encoding of key-value bytes.
            Hex(String),
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Tagged(Tagged::Utf8(text)) => Blob::Utf8(text),
            Repr::Tagged(Tagged::Base64(data)) => Blob::Base64(data),
            Repr::Hex(hex) => Blob::from_bytes(
                &hex::decode(&hex)
                    .map_err(|e| serde::de::Error::custom(format!("bad hex bytes: {e}")))?,
            ),
        })
    }
}

/// One journaled host call: the entry of the capability that served it. The kind (the inner
/// entry's serde tag) is stored in its own column so journals can be queried by kind; the whole
/// entry is stored as JSON, exactly as the capability's entry serializes (no wrapper).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Entry {
    /// `wasi:clocks` and `wasi:random` reads.
    Wasi(WasiEntry),
    /// Log lines and the dropped-lines count.
    Log(LogEntry),
    /// `hypergraph:task/kv` reads and writes.
    Kv(KvEntry),
    /// `wasi:http/outgoing-handler` exchanges.
    Http(HttpEntry),
    /// `hypergraph:workflow/workflow` calls.
    Workflow(WorkflowEntry),
}

/// A host call as the guest makes it: what a journal entry must answer during replay. Inputs
/// carry their arguments, in the call type of the capability that serves them; outputs (log
/// lines, key-value writes) are the whole entry. Serialized (in a [`Divergence`]) as the inner
/// call, or the output's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Call {
    /// A WASI read.
    Wasi(WasiCall),
    /// A key-value read.
    Kv(KvCall),
    /// An HTTP request; its body is compared when it has been written (see
    /// [`Deferred::complete`]).
    Http(HttpCall),
    /// A workflow call.
    Workflow(WorkflowCall),
    /// An output the guest emitted; replay requires the identical entry.
    Output(Entry),
}

/// Composes the capabilities' entry kinds: one line per family (`Variant: module::Entry`, and
/// `, Call` when it has inputs) generates the kind dispatch, the decoding by kind namespace and
/// the conversions between [`Entry`]/[`Call`] and the family's own types.
macro_rules! families {
    ($($family:ident: $module:ident::$entry:ident $(, $call:ident)?;)*) => {
        impl Entry {
            /// The stored kind, identical to the serde tag of the capability's entry.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Entry::$family(entry) => entry.kind(),)*
                }
            }

            /// True when this recorded entry is the answer to `call`: the same capability's call
            /// with the same arguments, or, for an output, the identical entry.
            pub fn answers(&self, call: &Call) -> bool {
                match (self, call) {
                    $($((Entry::$family(entry), Call::$family(call)) => {
                        let call: &$call = call;
                        entry.answers(call)
                    })?)*
                    (entry, Call::Output(emitted)) => entry == emitted,
                    _ => false,
                }
            }

            /// Decodes an entry of `kind` from `from` as the entry type of the capability whose
            /// namespace (the part of `kind` before the first `.`) it is in.
            fn decode<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                from: D,
            ) -> Result<Entry, D::Error> {
                let namespace = kind.split('.').next().unwrap_or(kind);
                $(if $module::NAMESPACES.contains(&namespace) {
                    return $entry::deserialize(from).map(Entry::$family);
                })*
                Err(D::Error::custom(format!("unknown journal entry kind `{kind}`")))
            }
        }

        $(
            impl From<$entry> for Entry {
                fn from(entry: $entry) -> Entry {
                    Entry::$family(entry)
                }
            }

            impl TryFrom<Entry> for $entry {
                type Error = Entry;

                /// The capability's entry, or the entry back when it is another capability's.
                fn try_from(entry: Entry) -> Result<$entry, Entry> {
                    match entry {
                        Entry::$family(entry) => Ok(entry),
                        other => Err(other),
                    }
                }
            }

            $(impl From<$call> for Call {
                fn from(call: $call) -> Call {
                    Call::$family(call)
                }
            })?
        )*
    };
}

families! {
    Wasi: wasi::WasiEntry, WasiCall;
    Log: log::LogEntry;
    Kv: kv::KvEntry, KvCall;
    Http: http::HttpEntry, HttpCall;
    Workflow: workflow::WorkflowEntry, WorkflowCall;
}

impl Entry {
    /// True for the entries of `hypergraph:workflow` calls: their attempt is a workflow's.
    pub fn is_workflow(&self) -> bool {
        matches!(self, Entry::Workflow(_))
    }

    /// Parses a stored record back into an entry (from its JSON alone: the kind inside it names
    /// the capability whose entry type decodes the rest).
    pub fn from_record(record: &JournalRecord) -> anyhow::Result<Entry> {
        Entry::parse(&record.data).map_err(|e| {
            anyhow::anyhow!(
                "journal entry {} of kind `{}` is not valid: {e}",
                record.seq,
                record.kind
            )
        })
    }

    /// Parses an entry's JSON: its `kind` first, then the whole as that capability's entry.
    fn parse(text: &str) -> serde_json::Result<Entry> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let Kind { kind } = serde_json::from_str(text)?;
        let mut from = serde_json::Deserializer::from_str(text);
        let entry = Entry::decode(&kind, &mut from)?;
        from.end()?;
        Ok(entry)
    }
}

impl<'de> Deserialize<'de> for Entry {
    /// Decodes an entry as [`Entry::from_record`] does, from any self-describing format.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let kind = match value.get("kind") {
            Some(serde_json::Value::String(kind)) => kind.clone(),
            _ => return Err(D::Error::missing_field("kind")),
        };
        Entry::decode(&kind, value).map_err(D::Error::custom)
    }
}

impl From<Entry> for Call {
    /// An output: replay requires the identical entry.
    fn from(entry: Entry) -> Call {
        Call::Output(entry)
    }
}

/// The first point where a replayed attempt did something other than what its journal recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// Position in the journal, or `None` when the calls matched but the result differs.
    pub seq: Option<u32>,
    /// What the recording holds there: the journal entry, `{"kind": "end"}` when the recorded
    /// attempt ended there, or the recorded result.
    pub expected: serde_json::Value,
    /// What the replay did instead, in the same shapes (a call is its kind and arguments).
    pub actual: serde_json::Value,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "diverged at journal entry {seq}: ")?,
            None => write!(f, "diverged in the result: ")?,
        }
        write!(f, "expected {}, got {}", self.expected, self.actual)
    }
}

fn end_marker() -> serde_json::Value {
    serde_json::json!({ "kind": "end" })
}

#[derive(Debug, Default)]
struct State {
    /// Entries recorded (record mode) or consumed (replay mode), in order.
    entries: Vec<Entry>,
    /// Present in replay mode.
    replay: Option<Replay>,
    /// Incremented by [`Journal::take`], so a [`Deferred`] completing afterwards changes nothing.
    generation: u64,
    /// Entries before this position are already stored (a resumed attempt's prefix, or what a
    /// [`Journal::checkpoint`] handed out).
    committed: usize,
    /// Positions of live [`Deferred`] placeholders whose answer has not arrived yet.
    outstanding: Vec<usize>,
}

#[derive(Debug)]
struct Replay {
    expected: Vec<Entry>,
    divergence: Option<Divergence>,
    /// Resume mode: once `expected` is used up, calls are answered live and recorded.
    then_record: bool,
}

impl Replay {
    /// True when the call at `seq` is past a resumed journal's prefix and must be answered live.
    fn live_at(&self, seq: usize) -> bool {
        self.then_record && self.divergence.is_none() && seq >= self.expected.len()
    }
}

impl State {
    /// True when the next call is answered live.
    fn is_live(&self) -> bool {
        self.replay
            .as_ref()
            .is_none_or(|r| r.live_at(self.entries.len()))
    }

    /// Replay mode: consumes the next recorded entry if it answers `call`, else records the
    /// divergence (once) and returns `None`.
    fn replay_next(&mut self, call: &Call) -> Option<Entry> {
        let seq = self.entries.len();
        let replay = self.replay.as_mut().expect("replay mode");
        if replay.divergence.is_some() {
            return None;
        }
        match replay.expected.get(seq) {
            Some(expected) if expected.answers(call) => {
                let entry = expected.clone();
                self.entries.push(entry.clone());
                Some(entry)
            }
            expected => {
                let expected = expected
                    .map(|e| serde_json::to_value(e).expect("entries serialize"))
                    .unwrap_or_else(end_marker);
                let actual = serde_json::to_value(call).expect("calls serialize");
                replay.divergence = Some(Divergence {
                    seq: Some(seq as u32),
                    expected,
                    actual,
                });
                None
            }
        }
    }
}

/// What [`Journal::lookup`] found for a call, with the recorded entry as the capability's own
/// entry type `E`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<E = Entry> {
    /// The recorded entry answers it (a replay, or a resumed journal's prefix).
    Recorded(E),
    /// The call is live: the caller decides what to [`Journal::append`], or to suspend instead.
    Live,
    /// The replay has diverged (here or earlier).
    Diverged,
}

/// A journal position reserved by [`Journal::defer`] for an answer that arrives later.
#[derive(Debug)]
pub struct Deferred {
    journal: Journal,
    seq: usize,
    generation: u64,
    recorded: Option<Entry>,
}

impl Deferred {
    /// When replaying: the recorded entry at this position.
    pub fn recorded(&self) -> Option<&Entry> {
        self.recorded.as_ref()
    }

    /// Completes the call with its full entry. Recording: the entry replaces the placeholder.
    /// Replaying: it must equal the recorded entry (it differs when the guest sent, say, another
    /// request body), else this position becomes the divergence unless an earlier one exists.
    /// Does nothing once the journal has been taken.
    pub fn complete(self, entry: impl Into<Entry>) {
        let entry = entry.into();
        let mut state = self.journal.lock();
        if state.generation != self.generation {
            return;
        }
        let Some(recorded) = &self.recorded else {
            if let Some(slot) = state.entries.get_mut(self.seq) {
                *slot = entry;
            }
            return;
        };
        let replay = state.replay.as_mut().expect("replay mode");
        let earlier = replay
            .divergence
            .as_ref()
            .is_some_and(|d| d.seq.is_none_or(|seq| seq as usize <= self.seq));
        if entry != *recorded && !earlier {
            replay.divergence = Some(Divergence {
                seq: Some(self.seq as u32),
                expected: serde_json::to_value(recorded).expect("entries serialize"),
                actual: serde_json::to_value(&entry).expect("entries serialize"),
            });
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if self.recorded.is_none() {
            let mut state = self.journal.lock();
            if state.generation == self.generation {
                state.outstanding.retain(|&seq| seq != self.seq);
            }
        }
    }
}

/// The journal of the attempt being executed, shared by every capability of one instance.
///
/// In **record** mode (the default) every host call takes its live value and appends it. In
/// **replay** mode every host call is answered from the recorded entries, in order, and nothing
/// live is consulted; the first call that the next entry does not answer is kept as the
/// [`Divergence`], after which calls are answered with deterministic stand-ins (zeros) so the guest
/// can run to its end without touching the outside world.
///
/// Cloning is cheap and yields a handle to the same journal. Appends are serialized by a mutex
/// that is only ever contended by the guest's own (single-threaded) host calls.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    state: Arc<Mutex<State>>,
}

impl Journal {
    /// A journal that records live values.
    pub fn recording() -> Journal {
        Journal::default()
    }

    /// A journal that answers calls from `expected`, a recorded attempt's entries in order.
    pub fn replaying(expected: Vec<Entry>) -> Journal {
        Journal::with_replay(expected, false)
    }

    /// A journal that continues `prefix`: calls are answered from it in order, exactly as in
    /// replay mode, and once it is used up, live and recorded. This is how a workflow resumes: it
    /// is re-executed from the start, and everything it already did is answered from its journal.
    /// A call the prefix does not answer is a divergence (the workflow is not deterministic).
    pub fn resuming(prefix: Vec<Entry>) -> Journal {
        Journal::with_replay(prefix, true)
    }

    fn with_replay(expected: Vec<Entry>, then_record: bool) -> Journal {
        Journal {
            state: Arc::new(Mutex::new(State {
                entries: Vec::new(),
                replay: Some(Replay {
                    expected,
                    divergence: None,
                    then_record,
                }),
                generation: 0,
                committed: 0,
                outstanding: Vec::new(),
            })),
        }
    }

    /// True while calls are answered live: in record mode, and past a resumed journal's prefix.
    pub fn is_live(&self) -> bool {
        let state = self.lock();
        state
            .replay
            .as_ref()
            .is_none_or(|r| r.live_at(state.entries.len()))
    }

    /// In resume mode: the number of entries the resumed journal started with.
    pub fn prefix_len(&self) -> usize {
        let state = self.lock();
        match &state.replay {
            Some(replay) if replay.then_record => replay.expected.len(),
            _ => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True in replay mode (a pure replay, not a resumed journal).
    pub fn is_replaying(&self) -> bool {
        self.lock().replay.as_ref().is_some_and(|r| !r.then_record)
    }

    /// Answers an input call: the live value from `live` when recording, the recorded entry when
    /// replaying, as the capability's own entry type `E` (a recorded entry answers a call only
    /// if it is of the same capability). `None` means the replay has diverged; the caller
    /// substitutes a stand-in value.
    pub fn answer<E>(&self, call: impl Into<Call>, live: impl FnOnce() -> E) -> Option<E>
    where
        E: Clone + Into<Entry> + TryFrom<Entry>,
    {
        let mut state = self.lock();
        if state.is_live() {
            let entry = live();
            state.entries.push(entry.clone().into());
            return Some(entry);
        }
        state
            .replay_next(&call.into())
            .and_then(|entry| E::try_from(entry).ok())
    }

    /// Fixes the place of a call whose answer arrives after the guest has moved on (an HTTP
    /// response), so the order of entries never depends on timing. When recording, `placeholder`
    /// holds the place until [`Deferred::complete`] replaces it (it stays if the attempt ends
    /// first); when replaying, the recorded entry is consumed now and available through
    /// [`Deferred::recorded`]. `None` means the replay has diverged.
    pub fn defer(&self, call: impl Into<Call>, placeholder: impl Into<Entry>) -> Option<Deferred> {
        let mut state = self.lock();
        let seq = state.entries.len();
        let generation = state.generation;
        let recorded = if state.is_live() {
            state.entries.push(placeholder.into());
            state.outstanding.push(seq);
            None
        } else {
            Some(state.replay_next(&call.into())?)
        };
        Some(Deferred {
            journal: self.clone(),
            seq,
            generation,
            recorded,
        })
    }

    /// Records an output (a log line): appended when recording, checked against the next entry
    /// when replaying. True when the output is new (recorded live), false when it was matched
    /// against a recorded entry (so a resumed workflow does not store its old log lines again).
    pub fn emit(&self, entry: impl Into<Entry>) -> bool {
        let entry = entry.into();
        let live = self.is_live();
        self.answer(Call::Output(entry.clone()), || entry);
        live
    }

    /// Looks a call up without answering it live: see [`Lookup`]. A recorded answer comes as
    /// the capability's own entry type `E` (a recorded entry answers a call only if it is of the
    /// same capability).
    pub fn lookup<E: TryFrom<Entry>>(&self, call: impl Into<Call>) -> Lookup<E> {
        let mut state = self.lock();
        if state.is_live() {
            return Lookup::Live;
        }
        match state
            .replay_next(&call.into())
            .and_then(|entry| E::try_from(entry).ok())
        {
            Some(entry) => Lookup::Recorded(entry),
            None => Lookup::Diverged,
        }
    }

    /// Appends a live entry (after [`Journal::lookup`] returned [`Lookup::Live`]).
    pub fn append(&self, entry: impl Into<Entry>) {
        let mut state = self.lock();
        debug_assert!(state.is_live(), "append outside live mode");
        state.entries.push(entry.into());
    }

    /// Takes the recorded entries, leaving the journal empty.
    pub fn take(&self) -> Vec<Entry> {
        let mut state = self.lock();
        state.generation += 1;
        state.outstanding.clear();
        std::mem::take(&mut state.entries)
    }

    /// Declares the first `len` entries already stored: [`Journal::checkpoint`] and
    /// [`Journal::committed`] start after them. A workflow resumed within the same attempt marks
    /// its prefix, which that attempt stored before.
    pub fn mark_committed(&self, len: usize) {
        self.lock().committed = len;
    }

    /// How many leading entries are stored (see [`Journal::mark_committed`]).
    pub fn committed(&self) -> usize {
        self.lock().committed
    }

    /// The entries recorded since the last checkpoint, as records numbered by their position,
    /// up to the first one whose answer is still outstanding (a [`Deferred`] placeholder is
    /// never stored while it can still change); they count as stored from now on.
    pub fn checkpoint(&self) -> Vec<JournalRecord> {
        let mut state = self.lock();
        let settled = state
            .outstanding
            .iter()
            .copied()
            .min()
            .unwrap_or(state.entries.len());
        let from = state.committed.min(settled);
        let records = state.entries[from..settled]
            .iter()
            .enumerate()
            .map(|(i, entry)| record(from + i, entry))
            .collect();
        state.committed = settled;
        records
    }

    /// In replay mode: the first divergence, including an attempt that ended before consuming
    /// every recorded entry. `None` when recording or when the replay matched so far.
    pub fn divergence(&self) -> Option<Divergence> {
        let state = self.lock();
        let replay = state.replay.as_ref()?;
        if let Some(divergence) = &replay.divergence {
            return Some(divergence.clone());
        }
        let seq = state.entries.len();
        replay.expected.get(seq).map(|expected| Divergence {
            seq: Some(seq as u32),
            expected: serde_json::to_value(expected).expect("entries serialize"),
            actual: end_marker(),
        })
    }

    /// Converts entries into storable records, numbered in order.
    pub fn to_records(entries: &[Entry]) -> Vec<JournalRecord> {
        entries
            .iter()
            .enumerate()
            .map(|(seq, entry)| record(seq, entry))
            .collect()
    }
}

/// One entry as a storable record at position `seq`.
fn record(seq: usize, entry: &Entry) -> JournalRecord {
    JournalRecord {
        seq: seq as u32,
        kind: entry.kind().to_string(),
        data: serde_json::to_string(entry).expect("journal entries always serialize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_matches_serde_tag_for_every_variant() {
        let all = [
            Entry::from(WasiEntry::WallClockNow {
                seconds: 1,
                nanos: 2,
            }),
            Entry::from(WasiEntry::WallClockResolution {
                seconds: 0,
                nanos: 1,
            }),
            Entry::from(WasiEntry::MonotonicNow { nanos: 3 }),
            Entry::from(WasiEntry::MonotonicResolution { nanos: 1 }),
            Entry::from(WasiEntry::RandomBytes {
                secure: true,
                hex: "00ff".into(),
            }),
            Entry::from(WasiEntry::InsecureSeed { hi: 1, lo: 2 }),
            Entry::from(LogEntry::Line {
                stream: "log".into(),
                level: "info".into(),
                message: "hi".into(),
            }),
            Entry::from(LogEntry::Dropped { count: 4 }),
            Entry::from(KvEntry::Get {
                key: "k".into(),
                value: None,
                version: Some(0),
            }),
            Entry::from(KvEntry::ListKeys {
                prefix: "p".into(),
                keys: vec![],
            }),
            Entry::from(KvEntry::Set {
                key: "k".into(),
                value: Blob::from_bytes(&[0]),
            }),
            Entry::from(KvEntry::Delete { key: "k".into() }),
        ];
        for entry in all {
            let json: serde_json::Value = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["kind"], entry.kind(), "{entry:?}");
        }
    }

    #[test]
    fn key_value_bytes_are_journaled_compactly_and_old_hex_journals_still_read() {
        let binary = Entry::from(KvEntry::Set {
            key: "k".into(),
            value: Blob::from_bytes(&[0xff; 300]),
        });
        let text = serde_json::to_string(&binary).unwrap();
        assert!(text.contains(r#""base64":"#), "{text}");
        assert!(text.len() < 300 * 2, "{text}");
        let utf8 = serde_json::to_string(&Entry::from(KvEntry::Set {
            key: "k".into(),
            value: Blob::from_bytes(b"hello"),
        }))
        .unwrap();
        assert!(utf8.contains(r#"{"utf8":"hello"}"#), "{utf8}");
        // Control characters are valid UTF-8 but six bytes each in JSON: base64 then.
        let controls = Blob::from_bytes(&[7; 300]);
        assert!(matches!(controls, Blob::Base64(_)), "{controls:?}");
        assert_eq!(controls.to_vec(), vec![7; 300]);
        // A journal written before: values as hex strings.
        let old: Entry =
            serde_json::from_str(r#"{"kind":"kv.get","key":"k","value":"68656c6c6f"}"#).unwrap();
        assert_eq!(
            old,
            Entry::from(KvEntry::Get {
                key: "k".into(),
                value: Some(Blob::from_bytes(b"hello")),
                version: None,
            })
        );
        let round: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(round, binary);
    }

    #[test]
    fn checkpoints_hand_out_settled_entries_once() {
        let now = |nanos| Entry::from(WasiEntry::MonotonicNow { nanos });
        let journal = Journal::resuming(vec![now(1)]);
        journal.mark_committed(1);
        journal.answer(WasiCall::MonotonicNow, || now(99));
        journal.answer(WasiCall::MonotonicNow, || now(2));
        // Entry 2 waits for its answer: nothing from it on is stored yet.
        let pending = journal.defer(WasiCall::MonotonicNow, now(0)).unwrap();
        journal.answer(WasiCall::MonotonicNow, || now(4));
        let first = journal.checkpoint();
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
        pending.complete(now(3));
        let second = journal.checkpoint();
        assert_eq!(second.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(Entry::from_record(&second[0]).unwrap(), now(3));
        assert!(journal.checkpoint().is_empty());
        assert_eq!(journal.committed(), 4);
        assert_eq!(journal.take().len(), 4);
    }

    #[test]
    fn records_round_trip_in_order() {
        let journal = Journal::recording();
        journal.answer(WasiCall::MonotonicNow, || {
            Entry::from(WasiEntry::MonotonicNow { nanos: 10 })
        });
        journal.answer(
            WasiCall::RandomBytes {
                secure: false,
                len: 2,
            },
            || {
                Entry::from(WasiEntry::RandomBytes {
                    secure: false,
                    hex: "abcd".into(),
                })
            },
        );
        let records = Journal::to_records(&journal.take());
        assert!(journal.take().is_empty());
        assert_eq!(records[1].seq, 1);
        assert_eq!(records[1].kind, "random.bytes");
        let back: Vec<Entry> = records
            .iter()
            .map(|r| Entry::from_record(r).unwrap())
            .collect();
        assert_eq!(back[0], Entry::from(WasiEntry::MonotonicNow { nanos: 10 }));
    }

    #[test]
    fn replay_answers_in_order_and_reports_the_first_divergence() {
        let recorded = vec![
            Entry::from(WasiEntry::WallClockNow {
                seconds: 5,
                nanos: 6,
            }),
            Entry::from(WasiEntry::RandomBytes {
                secure: true,
                hex: "0102".into(),
            }),
            Entry::from(LogEntry::Line {
                stream: "log".into(),
                level: "info".into(),
                message: "hi".into(),
            }),
        ];
        let live = || panic!("replay must not consult live values");

        // Identical calls: every answer comes from the recording, nothing diverges.
        let journal = Journal::replaying(recorded.clone());
        assert_eq!(
            journal.answer(WasiCall::WallClockNow, live),
            Some(recorded[0].clone())
        );
        assert_eq!(
            journal.answer(
                WasiCall::RandomBytes {
                    secure: true,
                    len: 2
                },
                live
            ),
            Some(recorded[1].clone())
        );
        journal.emit(recorded[2].clone());
        assert_eq!(journal.divergence(), None);

        // A different call at entry 1.
        let journal = Journal::replaying(recorded.clone());
        journal.answer(WasiCall::WallClockNow, live);
        assert_eq!(journal.answer(WasiCall::MonotonicNow, live), None);
        let d = journal.divergence().unwrap();
        assert_eq!(d.seq, Some(1));
        assert_eq!(d.expected["kind"], "random.bytes");
        assert_eq!(d.actual["kind"], "monotonic_clock.now");
        // After a divergence every call gets a stand-in, and the first divergence is kept.
        assert_eq!(journal.answer(WasiCall::WallClockNow, live), None);
        assert_eq!(journal.divergence().unwrap().seq, Some(1));

        // Same call, different arguments (8 random bytes instead of 2).
        let journal = Journal::replaying(recorded.clone());
        journal.answer(WasiCall::WallClockNow, live);
        assert_eq!(
            journal.answer(
                WasiCall::RandomBytes {
                    secure: true,
                    len: 8
                },
                live
            ),
            None
        );
        assert_eq!(journal.divergence().unwrap().actual["len"], 8);

        // A different log line.
        let journal = Journal::replaying(recorded.clone());
        journal.answer(WasiCall::WallClockNow, live);
        journal.answer(
            WasiCall::RandomBytes {
                secure: true,
                len: 2,
            },
            live,
        );
        journal.emit(Entry::from(LogEntry::Line {
            stream: "log".into(),
            level: "info".into(),
            message: "bye".into(),
        }));
        let d = journal.divergence().unwrap();
        assert_eq!(
            (d.seq, d.actual["message"].as_str()),
            (Some(2), Some("bye"))
        );

        // The attempt ended early.
        let journal = Journal::replaying(recorded.clone());
        journal.answer(WasiCall::WallClockNow, live);
        let d = journal.divergence().unwrap();
        assert_eq!((d.seq, d.actual["kind"].as_str()), (Some(1), Some("end")));

        // The attempt made more calls than were recorded.
        let journal = Journal::replaying(vec![]);
        assert_eq!(journal.answer(WasiCall::InsecureSeed, live), None);
        assert_eq!(journal.divergence().unwrap().expected["kind"], "end");
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
