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

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::http::{HttpOutcome, HttpRequest};
use crate::model::JournalRecord;
use crate::time::Micros;
use crate::workflow::ChildResult;

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
    /// `hypergraph:task/kv.get`: the value the guest saw, including its own buffered writes, and
    /// the version of the stored key it read (0: absent; none when its own write answered).
    #[serde(rename = "kv.get")]
    KvGet {
        key: String,
        value: Option<Blob>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
    },
    /// `hypergraph:task/kv.list-keys`: the keys the guest saw.
    #[serde(rename = "kv.list_keys")]
    KvListKeys { prefix: String, keys: Vec<String> },
    /// `hypergraph:task/kv.set` (an output): the key and the value written.
    #[serde(rename = "kv.set")]
    KvSet { key: String, value: Blob },
    /// `hypergraph:task/kv.delete` (an output).
    #[serde(rename = "kv.delete")]
    KvDelete { key: String },
    /// `wasi:http/outgoing-handler.handle`: the request the guest sent and what came back.
    #[serde(rename = "http.request")]
    Http {
        request: HttpRequest,
        outcome: HttpOutcome,
    },
    /// `hypergraph:workflow/workflow.start`: the child's position and step id, or why it was not
    /// started.
    #[serde(rename = "workflow.start")]
    WorkflowStart {
        task: String,
        input: String,
        child: Option<u32>,
        step_id: Option<String>,
        error: Option<String>,
    },
    /// `join` (and the join of `call`): the children's results, in the order asked.
    #[serde(rename = "workflow.join")]
    WorkflowJoin {
        children: Vec<u32>,
        results: Vec<ChildResult>,
    },
    /// A DAG's wait for any of `children`: those that had finished, with their results.
    #[serde(rename = "workflow.join_any")]
    WorkflowJoinAny {
        children: Vec<u32>,
        finished: Vec<(u32, ChildResult)>,
    },
    /// `sleep` began: the timer runs until `until` (microseconds since the Unix epoch).
    #[serde(rename = "workflow.sleep")]
    WorkflowSleep { millis: u64, until: Micros },
    /// The timer of the preceding `workflow.sleep` fired.
    #[serde(rename = "workflow.timer_fired")]
    WorkflowTimerFired,
    /// `wait-event` began: events with a sequence number above `after` count.
    #[serde(rename = "workflow.wait_event")]
    WorkflowWaitEvent {
        name: String,
        timeout_millis: Option<u64>,
        after: i64,
        deadline: Option<Micros>,
    },
    /// The wait ended: the event's payload, or none when the timeout passed first.
    #[serde(rename = "workflow.event")]
    WorkflowEvent {
        name: String,
        payload: Option<String>,
    },
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
            Entry::KvGet { .. } => "kv.get",
            Entry::KvListKeys { .. } => "kv.list_keys",
            Entry::KvSet { .. } => "kv.set",
            Entry::KvDelete { .. } => "kv.delete",
            Entry::Http { .. } => "http.request",
            Entry::WorkflowStart { .. } => "workflow.start",
            Entry::WorkflowJoin { .. } => "workflow.join",
            Entry::WorkflowJoinAny { .. } => "workflow.join_any",
            Entry::WorkflowSleep { .. } => "workflow.sleep",
            Entry::WorkflowTimerFired => "workflow.timer_fired",
            Entry::WorkflowWaitEvent { .. } => "workflow.wait_event",
            Entry::WorkflowEvent { .. } => "workflow.event",
        }
    }

    /// True for the entries of `hypergraph:workflow` calls: their attempt is a workflow's.
    pub fn is_workflow(&self) -> bool {
        self.kind().starts_with("workflow.")
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

/// A host call as the guest makes it: what a journal entry must answer during replay. Inputs
/// carry their arguments; outputs (log lines) are the whole entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Call {
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
    #[serde(rename = "kv.get")]
    KvGet { key: String },
    #[serde(rename = "kv.list_keys")]
    KvListKeys { prefix: String },
    /// An HTTP request as the guest hands it over; its body is compared when it has been written
    /// (see [`Deferred::complete`]).
    #[serde(rename = "http.request")]
    Http {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
    },
    #[serde(rename = "workflow.start")]
    WorkflowStart { task: String, input: String },
    #[serde(rename = "workflow.join")]
    WorkflowJoin { children: Vec<u32> },
    #[serde(rename = "workflow.join_any")]
    WorkflowJoinAny { children: Vec<u32> },
    #[serde(rename = "workflow.sleep")]
    WorkflowSleep { millis: u64 },
    #[serde(rename = "workflow.timer_fired")]
    WorkflowTimerFired,
    #[serde(rename = "workflow.wait_event")]
    WorkflowWaitEvent {
        name: String,
        timeout_millis: Option<u64>,
    },
    #[serde(rename = "workflow.event")]
    WorkflowEvent { name: String },
    /// An output the guest emitted; replay requires the identical entry.
    #[serde(rename = "output")]
    Output { entry: Entry },
}

impl Entry {
    /// True when this recorded entry is the answer to `call`.
    pub fn answers(&self, call: &Call) -> bool {
        match (self, call) {
            (Entry::WallClockNow { .. }, Call::WallClockNow)
            | (Entry::WallClockResolution { .. }, Call::WallClockResolution)
            | (Entry::MonotonicNow { .. }, Call::MonotonicNow)
            | (Entry::MonotonicResolution { .. }, Call::MonotonicResolution)
            | (Entry::InsecureSeed { .. }, Call::InsecureSeed) => true,
            (Entry::RandomBytes { secure, hex }, Call::RandomBytes { secure: s, len }) => {
                secure == s && hex.len() == 2 * len
            }
            (Entry::KvGet { key, .. }, Call::KvGet { key: k }) => key == k,
            (Entry::KvListKeys { prefix, .. }, Call::KvListKeys { prefix: p }) => prefix == p,
            (
                Entry::Http { request, .. },
                Call::Http {
                    method,
                    uri,
                    headers,
                },
            ) => request.method == *method && request.uri == *uri && request.headers == *headers,
            (
                Entry::WorkflowStart { task, input, .. },
                Call::WorkflowStart { task: t, input: i },
            ) => task == t && input == i,
            (Entry::WorkflowJoin { children, .. }, Call::WorkflowJoin { children: c }) => {
                children == c
            }
            (Entry::WorkflowJoinAny { children, .. }, Call::WorkflowJoinAny { children: c }) => {
                children == c
            }
            (Entry::WorkflowSleep { millis, .. }, Call::WorkflowSleep { millis: m }) => millis == m,
            (Entry::WorkflowTimerFired, Call::WorkflowTimerFired) => true,
            (
                Entry::WorkflowWaitEvent {
                    name,
                    timeout_millis,
                    ..
                },
                Call::WorkflowWaitEvent {
                    name: n,
                    timeout_millis: t,
                },
            ) => name == n && timeout_millis == t,
            (Entry::WorkflowEvent { name, .. }, Call::WorkflowEvent { name: n }) => name == n,
            (entry, Call::Output { entry: emitted }) => entry == emitted,
            _ => false,
        }
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
                let actual = match call {
                    Call::Output { entry } => serde_json::to_value(entry),
                    call => serde_json::to_value(call),
                }
                .expect("calls serialize");
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

/// Where a failed workflow's journal is cut when its run is resumed: before the first join (or a
/// DAG's join-any) that saw a failed child (so the re-run children are joined again), else nothing is cut.
pub fn resume_cut(entries: &[Entry]) -> usize {
    entries
        .iter()
        .position(|e| match e {
            Entry::WorkflowJoin { results, .. } => {
                results.iter().any(|r| matches!(r, ChildResult::Err { .. }))
            }
            Entry::WorkflowJoinAny { finished, .. } => finished
                .iter()
                .any(|(_, r)| matches!(r, ChildResult::Err { .. })),
            _ => false,
        })
        .unwrap_or(entries.len())
}

/// What [`Journal::lookup`] found for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The recorded entry answers it (a replay, or a resumed journal's prefix).
    Recorded(Entry),
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
    pub fn complete(self, entry: Entry) {
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
    /// replaying. `None` means the replay has diverged; the caller substitutes a stand-in value.
    pub fn answer(&self, call: Call, live: impl FnOnce() -> Entry) -> Option<Entry> {
        let mut state = self.lock();
        if state.is_live() {
            let entry = live();
            state.entries.push(entry.clone());
            return Some(entry);
        }
        state.replay_next(&call)
    }

    /// Fixes the place of a call whose answer arrives after the guest has moved on (an HTTP
    /// response), so the order of entries never depends on timing. When recording, `placeholder`
    /// holds the place until [`Deferred::complete`] replaces it (it stays if the attempt ends
    /// first); when replaying, the recorded entry is consumed now and available through
    /// [`Deferred::recorded`]. `None` means the replay has diverged.
    pub fn defer(&self, call: Call, placeholder: Entry) -> Option<Deferred> {
        let mut state = self.lock();
        let seq = state.entries.len();
        let generation = state.generation;
        let recorded = if state.is_live() {
            state.entries.push(placeholder);
            state.outstanding.push(seq);
            None
        } else {
            Some(state.replay_next(&call)?)
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
    pub fn emit(&self, entry: Entry) -> bool {
        let live = self.is_live();
        self.answer(
            Call::Output {
                entry: entry.clone(),
            },
            || entry,
        );
        live
    }

    /// Looks a call up without answering it live: see [`Lookup`].
    pub fn lookup(&self, call: &Call) -> Lookup {
        let mut state = self.lock();
        if state.is_live() {
            return Lookup::Live;
        }
        match state.replay_next(call) {
            Some(entry) => Lookup::Recorded(entry),
            None => Lookup::Diverged,
        }
    }

    /// Appends a live entry (after [`Journal::lookup`] returned [`Lookup::Live`]).
    pub fn append(&self, entry: Entry) {
        let mut state = self.lock();
        debug_assert!(state.is_live(), "append outside live mode");
        state.entries.push(entry);
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
            Entry::KvGet {
                key: "k".into(),
                value: None,
                version: Some(0),
            },
            Entry::KvListKeys {
                prefix: "p".into(),
                keys: vec![],
            },
            Entry::KvSet {
                key: "k".into(),
                value: Blob::from_bytes(&[0]),
            },
            Entry::KvDelete { key: "k".into() },
        ];
        for entry in all {
            let json: serde_json::Value = serde_json::to_value(&entry).unwrap();
            assert_eq!(json["kind"], entry.kind(), "{entry:?}");
        }
    }

    #[test]
    fn key_value_bytes_are_journaled_compactly_and_old_hex_journals_still_read() {
        let binary = Entry::KvSet {
            key: "k".into(),
            value: Blob::from_bytes(&[0xff; 300]),
        };
        let text = serde_json::to_string(&binary).unwrap();
        assert!(text.contains(r#""base64":"#), "{text}");
        assert!(text.len() < 300 * 2, "{text}");
        let utf8 = serde_json::to_string(&Entry::KvSet {
            key: "k".into(),
            value: Blob::from_bytes(b"hello"),
        })
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
            Entry::KvGet {
                key: "k".into(),
                value: Some(Blob::from_bytes(b"hello")),
                version: None,
            }
        );
        let round: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(round, binary);
    }

    #[test]
    fn checkpoints_hand_out_settled_entries_once() {
        let now = |nanos| Entry::MonotonicNow { nanos };
        let journal = Journal::resuming(vec![now(1)]);
        journal.mark_committed(1);
        journal.answer(Call::MonotonicNow, || now(99));
        journal.answer(Call::MonotonicNow, || now(2));
        // Entry 2 waits for its answer: nothing from it on is stored yet.
        let pending = journal.defer(Call::MonotonicNow, now(0)).unwrap();
        journal.answer(Call::MonotonicNow, || now(4));
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
        journal.answer(Call::MonotonicNow, || Entry::MonotonicNow { nanos: 10 });
        journal.answer(
            Call::RandomBytes {
                secure: false,
                len: 2,
            },
            || Entry::RandomBytes {
                secure: false,
                hex: "abcd".into(),
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
        assert_eq!(back[0], Entry::MonotonicNow { nanos: 10 });
    }

    #[test]
    fn replay_answers_in_order_and_reports_the_first_divergence() {
        let recorded = vec![
            Entry::WallClockNow {
                seconds: 5,
                nanos: 6,
            },
            Entry::RandomBytes {
                secure: true,
                hex: "0102".into(),
            },
            Entry::Log {
                stream: "log".into(),
                level: "info".into(),
                message: "hi".into(),
            },
        ];
        let live = || panic!("replay must not consult live values");

        // Identical calls: every answer comes from the recording, nothing diverges.
        let journal = Journal::replaying(recorded.clone());
        assert_eq!(
            journal.answer(Call::WallClockNow, live),
            Some(recorded[0].clone())
        );
        assert_eq!(
            journal.answer(
                Call::RandomBytes {
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
        journal.answer(Call::WallClockNow, live);
        assert_eq!(journal.answer(Call::MonotonicNow, live), None);
        let d = journal.divergence().unwrap();
        assert_eq!(d.seq, Some(1));
        assert_eq!(d.expected["kind"], "random.bytes");
        assert_eq!(d.actual["kind"], "monotonic_clock.now");
        // After a divergence every call gets a stand-in, and the first divergence is kept.
        assert_eq!(journal.answer(Call::WallClockNow, live), None);
        assert_eq!(journal.divergence().unwrap().seq, Some(1));

        // Same call, different arguments (8 random bytes instead of 2).
        let journal = Journal::replaying(recorded.clone());
        journal.answer(Call::WallClockNow, live);
        assert_eq!(
            journal.answer(
                Call::RandomBytes {
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
        journal.answer(Call::WallClockNow, live);
        journal.answer(
            Call::RandomBytes {
                secure: true,
                len: 2,
            },
            live,
        );
        journal.emit(Entry::Log {
            stream: "log".into(),
            level: "info".into(),
            message: "bye".into(),
        });
        let d = journal.divergence().unwrap();
        assert_eq!(
            (d.seq, d.actual["message"].as_str()),
            (Some(2), Some("bye"))
        );

        // The attempt ended early.
        let journal = Journal::replaying(recorded.clone());
        journal.answer(Call::WallClockNow, live);
        let d = journal.divergence().unwrap();
        assert_eq!((d.seq, d.actual["kind"].as_str()), (Some(1), Some("end")));

        // The attempt made more calls than were recorded.
        let journal = Journal::replaying(vec![]);
        assert_eq!(journal.answer(Call::InsecureSeed, live), None);
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
