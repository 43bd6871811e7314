//! `hypergraph:workflow/workflow`: child tasks, joins, durable sleep and external events.
//!
//! A workflow is re-executed from the start in a fresh instance every time it resumes, with a
//! journal in resume mode ([`Journal::resuming`]): every call it made before is answered from the
//! journal, so completed children are never started again. A live call that cannot be answered
//! yet (a join on unfinished children, a timer that has not fired, an event not yet sent) records
//! what the workflow waits for in [`WorkflowState`] and stops the instance with [`Suspended`]; the
//! worker then commits the new journal entries, the children started in this activation and the
//! wait in one transaction, and the step is claimed again when the wait is over.
//!
//! # Lingering
//!
//! Re-executing a workflow costs an instantiation and a replay of its journal, and suspending one
//! costs a commit and a claim; for a child that finishes in a millisecond that is most of the
//! time a sequence of `call`s takes. So when a worker gives an activation a [`Linger`], a join on
//! a few unfinished children first *checkpoints*: the journal entries, log lines and children
//! of the activation so far are committed (the attempt keeps running under its lease, and the
//! children become claimable), the activation gives its execution slot back, and it waits in
//! place for up to the linger window. If the children finish in time it goes on in the same
//! instance; if not it suspends as usual, and from then on holds nothing. A crash while lingering
//! loses nothing that was checkpointed: the next attempt inherits the journal.
//!
//! Journal entries: `workflow.start` (the child's position and step id, or why it was not
//! started), `workflow.join` (the children's results), `workflow.sleep` and `workflow.timer_fired`,
//! `workflow.wait_event` and `workflow.event`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use hypergraph_core::model::{JournalRecord, LogRecord, Policy};
use hypergraph_core::signals::Signals;
use hypergraph_core::time::{micros_after, now_micros};
pub use hypergraph_core::workflow::*;

use super::bindings::hypergraph::workflow::workflow::{self, ChildError};
use super::kv::KvState;
use super::log::LogSink;
use crate::journal::{Journal, Lookup, WorkflowCall, WorkflowEntry};

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:workflow/workflow@0.1.0"];

/// A task resolved for starting children ([`WorkflowHost::child_task`]).
pub trait ChildTask: Send + Sync {
    /// The child to start at position `index` with `input`, checked against, and canonicalized
    /// by, the task's signature. The error says why the child cannot start.
    fn child(&self, input: &serde_json::Value, index: u32) -> Result<NewChild, String>;
}

/// What a live workflow needs from the runtime around it: resolving the tasks of new children,
/// reading how children ended, reading events, and hearing of steps this process finished.
/// Implemented by the runtime; a replay has none (every call is answered by the journal).
#[async_trait::async_trait]
pub trait WorkflowHost: Send + Sync {
    /// How each step in `ids` ended, in that order (`None` while it has not finished), as its
    /// workflow receives it (see [`ChildResult::of`]). Fails if a step does not exist.
    async fn child_results(&self, ids: &[String]) -> anyhow::Result<Vec<Option<ChildResult>>>;
    /// `task` resolved to its deployment's latest version, to start children of. An activation
    /// resolves a name once for all the children it creates together (at its next checkpoint
    /// or its end). The error says why no child of `task` can start, for the workflow to see.
    async fn child_task(&self, task: &str) -> Result<Arc<dyn ChildTask>, String>;
    /// The sequence number of the newest event (0 when none was sent).
    async fn last_event_seq(&self) -> anyhow::Result<i64>;
    /// The oldest event named `name` newer than `after`: its sequence number and payload.
    async fn next_event(&self, name: &str, after: i64) -> anyhow::Result<Option<(i64, String)>>;
    /// The in-process signals: raised when steps finish here, and when other processes announce
    /// that steps of a run ended (where the store delivers their wake-ups).
    fn signals(&self) -> &Signals;
    /// How often a lingering activation looks at its children when nothing wakes it, while
    /// other processes' completions wake it too (their announcements are being delivered: only
    /// a lost one needs the look). `None` while they are not: it then looks again after 1 ms,
    /// doubling up to [`LINGER_POLL`].
    fn linger_poll(&self) -> Option<Duration>;
}

/// Most unfinished children a join lingers on; a larger join suspends at once (re-reading many
/// children on every completion would cost more than a resume).
pub const LINGER_MAX_CHILDREN: usize = 32;

/// Longest pause between two looks at lingered-on children when completions in other processes
/// are not announced to this one (see [`WorkflowHost::linger_poll`]).
pub const LINGER_POLL: Duration = Duration::from_millis(25);

/// The pause between two looks at lingered-on children while other processes' completions are
/// announced to this one: a fallback for an announcement lost between two notices of it.
pub const LINGER_ANNOUNCED_POLL: Duration = Duration::from_millis(100);

/// What an activation did since its last checkpoint: stored while the attempt goes on.
#[derive(Debug, Default)]
pub struct Progress {
    pub journal: Vec<JournalRecord>,
    pub logs: Vec<LogRecord>,
    pub children: Vec<NewChild>,
}

/// The worker's side of a lingering activation.
#[async_trait::async_trait]
pub trait Activation: Send + Sync {
    /// Commits `progress` durably, fenced by the attempt; false when the attempt no longer owns
    /// its step (its lease expired and it was claimed again, or the run was cancelled).
    async fn checkpoint(&self, progress: Progress) -> anyhow::Result<bool>;
    /// The activation starts waiting: its execution slot may run other steps meanwhile. False
    /// (and the slot is kept) when as many activations linger already as the worker allows:
    /// the activation must suspend instead, so lingering never holds more instances than that.
    fn release_slot(&self) -> bool;
    /// The activation runs again: takes an execution slot back, waiting for one, and frees its
    /// lingering place.
    async fn reacquire_slot(&self);
}

/// Lets an activation wait in place for its children (see the module docs).
#[derive(Clone)]
pub struct Linger {
    /// Longest wait in place; the activation suspends after it.
    pub window: Duration,
    /// The activation's run: other processes announce the ends of its steps under it.
    pub run_id: String,
    pub activation: Arc<dyn Activation>,
}

/// Stops a workflow instance that must wait; never an error of the guest.
#[derive(Debug)]
pub struct Suspended;

impl std::fmt::Display for Suspended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the workflow is waiting")
    }
}

impl std::error::Error for Suspended {}

/// A DAG step's name and policy overrides, for the child that runs it.
#[derive(Clone, Debug, Default)]
pub struct ChildOptions {
    pub name: Option<String>,
    pub policy: Option<Policy>,
}

/// The workflow state of one activation.
#[derive(Default)]
pub struct WorkflowState {
    /// Where live calls resolve tasks and read children and events; `None` in a replay, where
    /// every call is answered from the journal.
    live: Option<Arc<dyn WorkflowHost>>,
    /// The step id of every child started so far (journaled or live), by position.
    children: Vec<String>,
    /// Children started by this activation.
    new_children: Vec<NewChild>,
    /// The tasks `new_children` were resolved to, by name: the children created together
    /// resolve each name once (emptied when they are stored).
    tasks: HashMap<String, Arc<dyn ChildTask>>,
    /// Set when the activation suspended.
    wait: Option<Wait>,
    /// How the next child started is named and configured (set by the DAG runner per step,
    /// consumed by the next `start`).
    next_child: ChildOptions,
    /// Set when joins may wait in place before suspending.
    linger: Option<Linger>,
}

impl WorkflowState {
    /// State whose live calls go to `live` (`None` when replaying), lingering on joins when
    /// `linger` is set.
    pub fn new(live: Option<Arc<dyn WorkflowHost>>, linger: Option<Linger>) -> WorkflowState {
        WorkflowState {
            live,
            linger,
            ..WorkflowState::default()
        }
    }

    /// What the activation produced: the children it started and, if it suspended, its wait.
    pub fn take(&mut self) -> (Vec<NewChild>, Option<Wait>) {
        (self.take_children(), self.wait.take())
    }

    /// The children started since they were last taken, for storing; later children resolve
    /// their tasks anew.
    fn take_children(&mut self) -> Vec<NewChild> {
        self.tasks.clear();
        std::mem::take(&mut self.new_children)
    }

    /// The child of `task` at position `index` with `input` (JSON text), its task resolved by
    /// `live` unless this activation's unstored children resolved it already.
    async fn new_child(
        &mut self,
        live: &dyn WorkflowHost,
        task: &str,
        input: &str,
        index: u32,
    ) -> Result<NewChild, String> {
        let value: serde_json::Value = serde_json::from_str(input)
            .map_err(|e| format!("the input of `{task}` is not valid JSON: {e}"))?;
        let resolved = match self.tasks.get(task) {
            Some(resolved) => resolved.clone(),
            None => {
                let resolved = live.child_task(task).await?;
                self.tasks.insert(task.to_string(), resolved.clone());
                resolved
            }
        };
        resolved.child(&value, index)
    }

    fn live(&self) -> wasmtime::Result<&Arc<dyn WorkflowHost>> {
        self.live
            .as_ref()
            .ok_or_else(|| super::host_fault("workflow calls are not available here".into()))
    }

    fn suspend(&mut self, wait: Wait) -> wasmtime::Error {
        self.wait = Some(wait);
        wasmtime::Error::new(Suspended)
    }
}

/// This capability's view of the store data: its state, the journal, and what a checkpoint
/// takes from the rest of the instance (the log lines kept so far; the key-value reads, which a
/// checkpoint stores as history). Built by `HostState::workflow`.
pub struct WorkflowCtx<'a> {
    pub(crate) state: &'a mut WorkflowState,
    pub(crate) journal: &'a Journal,
    pub(crate) logs: &'a LogSink,
    pub(crate) kv: &'a mut KvState,
    /// When the attempt's execution time runs out (lingering takes at most half of what is left).
    pub(crate) deadline: Instant,
}

/// Marks the projection to [`WorkflowCtx`] for the generated `add_to_linker`.
struct HasWorkflow;

impl HasData for HasWorkflow {
    type Data<'a> = WorkflowCtx<'a>;
}

/// A child's result as the guest receives it.
fn into_wit(result: ChildResult) -> Result<String, ChildError> {
    match result {
        ChildResult::Ok(output) => Ok(output),
        ChildResult::Err {
            kind,
            message,
            value,
        } => Err(ChildError {
            kind,
            message,
            value,
        }),
    }
}

/// The trap that ends an activation whose calls no longer match its journal.
fn diverged() -> wasmtime::Error {
    super::host_fault(
        "the workflow made a call its journal does not hold: workflow code must be deterministic \
         (see the divergence)"
            .into(),
    )
}

/// The result of each child in `ids`, `None` for those that have not finished.
async fn child_states(
    host: &dyn WorkflowHost,
    ids: &[String],
) -> wasmtime::Result<Vec<Option<ChildResult>>> {
    host.child_results(ids)
        .await
        .map_err(|e| super::host_fault(format!("reading child results failed: {e:#}")))
}

/// Fills `states` as children in `ids` (steps of run `run_id`) finish, until the wait is
/// [`over`] (true) or `until` passes (false). Completions committed by this process wake it at
/// once, and so do the ends of steps of its run announced by other processes; it also looks
/// every [`WorkflowHost::linger_poll`] (or, when nothing is announced, after 1 ms doubling up to
/// [`LINGER_POLL`]).
async fn wait_in_place(
    hg: &dyn WorkflowHost,
    run_id: &str,
    ids: &[String],
    states: &mut [Option<ChildResult>],
    any: bool,
    until: Instant,
) -> wasmtime::Result<bool> {
    let mut backoff = Duration::from_millis(1);
    loop {
        let open: Vec<usize> = (0..ids.len()).filter(|&i| states[i].is_none()).collect();
        let open_ids: Vec<String> = open.iter().map(|&i| ids[i].clone()).collect();
        // Registered before reading: a child finishing in between still wakes us.
        let signals = hg.signals();
        let finished = signals.steps.register(open_ids.iter().map(String::as_str));
        let announced = signals.runs.register([run_id]);
        let read = child_states(hg, &open_ids).await;
        let outcome = match read {
            Ok(read) => {
                for (i, state) in open.into_iter().zip(read) {
                    states[i] = state;
                }
                let now = Instant::now();
                if over(states, any) {
                    Some(Ok(true))
                } else if now >= until {
                    Some(Ok(false))
                } else {
                    let pause = hg.linger_poll().unwrap_or(backoff);
                    tokio::select! {
                        _ = finished.notified() => {}
                        _ = announced.notified() => {}
                        _ = tokio::time::sleep(pause.min(until - now)) => {
                            backoff = (backoff * 2).min(LINGER_POLL);
                        }
                    }
                    None
                }
            }
            Err(e) => Some(Err(e)),
        };
        drop((finished, announced));
        signals.steps.forget(open_ids.iter().map(String::as_str));
        signals.runs.forget([run_id]);
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
}

/// True when the wait for `states` is over: all have finished, or with `any` one.
fn over(states: &[Option<ChildResult>], any: bool) -> bool {
    if any {
        states.iter().any(Option::is_some)
    } else {
        states.iter().all(Option::is_some)
    }
}

impl WorkflowCtx<'_> {
    /// Names and configures the next child [`start`](workflow::Host::start) starts (a DAG step's
    /// name and policy overrides); consumed by that start.
    pub fn set_next_child(&mut self, options: ChildOptions) {
        self.state.next_child = options;
    }

    /// The state of each child in `ids` once the wait for them is over (all finished, or with
    /// `any` at least one), lingering for them when allowed; `None` when the activation must
    /// suspend instead.
    async fn await_children(
        &mut self,
        ids: &[String],
        any: bool,
    ) -> wasmtime::Result<Option<Vec<Option<ChildResult>>>> {
        // Children started by this activation are not stored yet: none has finished.
        let new: HashSet<&str> = self
            .state
            .new_children
            .iter()
            .map(|c| c.step_id.as_str())
            .collect();
        let stored: Vec<usize> = (0..ids.len())
            .filter(|&i| !new.contains(ids[i].as_str()))
            .collect();
        let mut states = vec![None; ids.len()];
        if !stored.is_empty() {
            let stored_ids: Vec<String> = stored.iter().map(|&i| ids[i].clone()).collect();
            let read = child_states(self.state.live()?.as_ref(), &stored_ids).await?;
            for (i, state) in stored.into_iter().zip(read) {
                states[i] = state;
            }
        }
        if over(&states, any) {
            return Ok(Some(states));
        }
        self.linger(ids, states, any).await
    }

    /// Checkpoints the activation and waits in place for the children (see the module docs),
    /// for at most the linger window and half the attempt's remaining execution time. `None`:
    /// the activation must suspend (no linger, too many children, too many activations lingering
    /// already, or the window passed).
    async fn linger(
        &mut self,
        ids: &[String],
        mut states: Vec<Option<ChildResult>>,
        any: bool,
    ) -> wasmtime::Result<Option<Vec<Option<ChildResult>>>> {
        let Some(linger) = self.state.linger.clone() else {
            return Ok(None);
        };
        let open = states.iter().filter(|s| s.is_none()).count();
        let now = Instant::now();
        let until = now
            + linger
                .window
                .min(self.deadline.saturating_duration_since(now) / 2);
        if open > LINGER_MAX_CHILDREN || until <= now {
            return Ok(None);
        }
        let hg = self.state.live()?.clone();
        // Before anything is handed to the checkpoint: with no lingering place free, suspend.
        if !linger.activation.release_slot() {
            return Ok(None);
        }
        let progress = Progress {
            journal: self.journal.checkpoint(),
            logs: self.logs.take_lines(),
            children: self.state.take_children(),
        };
        let waited = match linger.activation.checkpoint(progress).await {
            Ok(true) => {
                // The reads are stored history now: the end of the step does not check them.
                self.kv.take_reads();
                wait_in_place(hg.as_ref(), &linger.run_id, ids, &mut states, any, until).await
            }
            Ok(false) => Err(super::host_fault(
                "the attempt no longer owns its step (its lease expired and it was claimed \
                 again, or the run was cancelled)"
                    .into(),
            )),
            Err(e) => Err(super::host_fault(format!(
                "storing the workflow's progress failed: {e:#}"
            ))),
        };
        linger.activation.reacquire_slot().await;
        Ok(waited?.then_some(states))
    }

    /// Waits until at least one of `children` has finished and returns every one that has, with
    /// its result, in the order given (journaled as `workflow.join_any`). Used by the DAG runner.
    pub async fn join_any(
        &mut self,
        children: Vec<u32>,
    ) -> wasmtime::Result<Vec<(u32, ChildResult)>> {
        let started = self.state.children.len();
        if let Some(unknown) = children.iter().find(|&&c| c as usize >= started) {
            wasmtime::bail!("join: there is no child {unknown} (this workflow started {started})");
        }
        let call = WorkflowCall::JoinAny {
            children: children.clone(),
        };
        match self.journal.lookup(call) {
            Lookup::Diverged => Err(diverged()),
            Lookup::Recorded(WorkflowEntry::JoinAny { finished, .. }) => Ok(finished),
            Lookup::Recorded(other) => unreachable!("journal answered `join-any` with {other:?}"),
            Lookup::Live => {
                let ids: Vec<String> = children
                    .iter()
                    .map(|&c| self.state.children[c as usize].clone())
                    .collect();
                let Some(states) = self.await_children(&ids, true).await? else {
                    return Err(self.state.suspend(Wait::AnyChild(ids)));
                };
                let finished: Vec<(u32, ChildResult)> = children
                    .iter()
                    .zip(states)
                    .filter_map(|(&c, state)| state.map(|r| (c, r)))
                    .collect();
                self.journal.append(WorkflowEntry::JoinAny {
                    children,
                    finished: finished.clone(),
                });
                Ok(finished)
            }
        }
    }
}

impl workflow::Host for WorkflowCtx<'_> {
    async fn start(
        &mut self,
        task: String,
        input: String,
    ) -> wasmtime::Result<Result<u32, String>> {
        let call = WorkflowCall::Start {
            task: task.clone(),
            input: input.clone(),
        };
        let options = std::mem::take(&mut self.state.next_child);
        let entry = match self.journal.lookup(call) {
            Lookup::Diverged => return Err(diverged()),
            Lookup::Recorded(entry) => entry,
            Lookup::Live => {
                let index = self.state.children.len();
                let started = if index >= MAX_CHILDREN {
                    Err(format!(
                        "a workflow may start at most {MAX_CHILDREN} children"
                    ))
                } else {
                    let live = self.state.live()?.clone();
                    self.state
                        .new_child(live.as_ref(), &task, &input, index as u32)
                        .await
                        .map(|child| {
                            let ChildOptions { name, policy } = options;
                            let start_deadline = policy
                                .as_ref()
                                .and_then(|p| p.schedule_to_start_ms)
                                .map(|ms| micros_after(now_micros(), ms))
                                .or(child.start_deadline);
                            NewChild {
                                policy,
                                name,
                                start_deadline,
                                ..child
                            }
                        })
                };
                let entry = match started {
                    Ok(child) => {
                        let entry = WorkflowEntry::Start {
                            task,
                            input,
                            child: Some(child.index),
                            step_id: Some(child.step_id.clone()),
                            error: None,
                        };
                        self.state.new_children.push(child);
                        entry
                    }
                    Err(error) => WorkflowEntry::Start {
                        task,
                        input,
                        child: None,
                        step_id: None,
                        error: Some(error),
                    },
                };
                self.journal.append(entry.clone());
                entry
            }
        };
        match entry {
            WorkflowEntry::Start {
                child: Some(child),
                step_id: Some(step_id),
                ..
            } => {
                self.state.children.push(step_id);
                Ok(Ok(child))
            }
            WorkflowEntry::Start { error, .. } => Ok(Err(error.unwrap_or_default())),
            other => unreachable!("journal answered `start` with {other:?}"),
        }
    }

    async fn join(
        &mut self,
        children: Vec<u32>,
    ) -> wasmtime::Result<Vec<Result<String, ChildError>>> {
        let started = self.state.children.len();
        if let Some(unknown) = children.iter().find(|&&c| c as usize >= started) {
            wasmtime::bail!("join: there is no child {unknown} (this workflow started {started})");
        }
        let call = WorkflowCall::Join {
            children: children.clone(),
        };
        let results = match self.journal.lookup(call) {
            Lookup::Diverged => return Err(diverged()),
            Lookup::Recorded(WorkflowEntry::Join { results, .. }) => results,
            Lookup::Recorded(other) => unreachable!("journal answered `join` with {other:?}"),
            Lookup::Live => {
                let ids: Vec<String> = children
                    .iter()
                    .map(|&c| self.state.children[c as usize].clone())
                    .collect();
                let Some(states) = self.await_children(&ids, false).await? else {
                    return Err(self.state.suspend(Wait::Children(ids)));
                };
                let results: Vec<ChildResult> = states.into_iter().flatten().collect();
                self.journal.append(WorkflowEntry::Join {
                    children,
                    results: results.clone(),
                });
                results
            }
        };
        Ok(results.into_iter().map(into_wit).collect())
    }

    async fn call(
        &mut self,
        task: String,
        input: String,
    ) -> wasmtime::Result<Result<String, ChildError>> {
        match self.start(task, input).await? {
            Ok(child) => Ok(self.join(vec![child]).await?.remove(0)),
            Err(message) => Ok(Err(ChildError {
                kind: "host".into(),
                message,
                value: None,
            })),
        }
    }

    async fn sleep(&mut self, millis: u64) -> wasmtime::Result<()> {
        let until = match self.journal.lookup(WorkflowCall::Sleep { millis }) {
            Lookup::Diverged => return Err(diverged()),
            Lookup::Recorded(WorkflowEntry::Sleep { until, .. }) => until,
            Lookup::Recorded(other) => unreachable!("journal answered `sleep` with {other:?}"),
            Lookup::Live => {
                let until = micros_after(now_micros(), millis);
                self.journal.append(WorkflowEntry::Sleep { millis, until });
                until
            }
        };
        match self
            .journal
            .lookup::<WorkflowEntry>(WorkflowCall::TimerFired)
        {
            Lookup::Diverged => Err(diverged()),
            Lookup::Recorded(_) => Ok(()),
            Lookup::Live if now_micros() >= until => {
                self.journal.append(WorkflowEntry::TimerFired);
                Ok(())
            }
            Lookup::Live => Err(self.state.suspend(Wait::Timer(until))),
        }
    }

    async fn wait_event(
        &mut self,
        name: String,
        timeout_millis: Option<u64>,
    ) -> wasmtime::Result<Option<String>> {
        if let Err(e) = validate_event_name(&name) {
            wasmtime::bail!("wait-event: {e}");
        }
        let call = WorkflowCall::WaitEvent {
            name: name.clone(),
            timeout_millis,
        };
        let (after, deadline) = match self.journal.lookup(call) {
            Lookup::Diverged => return Err(diverged()),
            Lookup::Recorded(WorkflowEntry::WaitEvent {
                after, deadline, ..
            }) => (after, deadline),
            Lookup::Recorded(other) => unreachable!("journal answered `wait-event` with {other:?}"),
            Lookup::Live => {
                let after = self
                    .state
                    .live()?
                    .last_event_seq()
                    .await
                    .map_err(|e| super::host_fault(format!("reading events failed: {e:#}")))?;
                let deadline = timeout_millis.map(|ms| micros_after(now_micros(), ms));
                self.journal.append(WorkflowEntry::WaitEvent {
                    name: name.clone(),
                    timeout_millis,
                    after,
                    deadline,
                });
                (after, deadline)
            }
        };
        let received = WorkflowCall::Event { name: name.clone() };
        match self.journal.lookup(received) {
            Lookup::Diverged => Err(diverged()),
            Lookup::Recorded(WorkflowEntry::Event { payload, .. }) => Ok(payload),
            Lookup::Recorded(other) => unreachable!("journal answered an event with {other:?}"),
            Lookup::Live => {
                let event = self
                    .state
                    .live()?
                    .next_event(&name, after)
                    .await
                    .map_err(|e| super::host_fault(format!("reading events failed: {e:#}")))?;
                let payload = match event {
                    Some((_, payload)) => Some(payload),
                    None if deadline.is_some_and(|d| now_micros() >= d) => None,
                    None => {
                        return Err(self.state.suspend(Wait::Event {
                            name,
                            after,
                            deadline,
                        }))
                    }
                };
                self.journal.append(WorkflowEntry::Event {
                    name,
                    payload: payload.clone(),
                });
                Ok(payload)
            }
        }
    }
}

/// Registers `hypergraph:workflow/workflow` in `linker`, served from the view `project` takes of
/// the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> WorkflowCtx<'_>,
) -> anyhow::Result<()> {
    workflow::add_to_linker::<T, HasWorkflow>(linker, project)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// A host whose one child finishes when the test says so, counting the reads of it.
    #[derive(Default)]
    struct Host {
        result: Mutex<Option<ChildResult>>,
        reads: AtomicUsize,
        read: tokio::sync::Notify,
        signals: Signals,
        /// The task names resolved, in order.
        resolved: Mutex<Vec<String>>,
    }

    /// A task of deployment version 1 whose children take their input as it is.
    struct Task(String);

    impl ChildTask for Task {
        fn child(&self, input: &serde_json::Value, index: u32) -> Result<NewChild, String> {
            Ok(NewChild {
                step_id: format!("{}-{index}", self.0),
                index,
                task: self.0.clone(),
                deployment: self.0.clone(),
                version: 1,
                digest: "d".into(),
                input: input.clone(),
                policy: None,
                name: None,
                start_deadline: None,
            })
        }
    }

    #[async_trait::async_trait]
    impl WorkflowHost for Host {
        async fn child_results(&self, ids: &[String]) -> anyhow::Result<Vec<Option<ChildResult>>> {
            let result = self.result.lock().unwrap().clone();
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.read.notify_one();
            Ok(ids.iter().map(|_| result.clone()).collect())
        }
        async fn child_task(&self, task: &str) -> Result<Arc<dyn ChildTask>, String> {
            self.resolved.lock().unwrap().push(task.to_string());
            if task.starts_with("missing") {
                return Err(format!("no task `{task}`"));
            }
            Ok(Arc::new(Task(task.to_string())))
        }
        async fn last_event_seq(&self) -> anyhow::Result<i64> {
            unreachable!()
        }
        async fn next_event(&self, _: &str, _: i64) -> anyhow::Result<Option<(i64, String)>> {
            unreachable!()
        }
        fn signals(&self) -> &Signals {
            &self.signals
        }
        /// Announcements are delivered, and nothing is polled within the test's time.
        fn linger_poll(&self) -> Option<Duration> {
            Some(Duration::from_secs(3600))
        }
    }

    /// The children created together resolve each task name once; once they are taken for
    /// storing, later children resolve their tasks anew (a version deployed meanwhile counts).
    /// A name that does not resolve is asked again each time.
    #[tokio::test]
    async fn children_created_together_resolve_each_task_once() {
        let host = Arc::new(Host::default());
        let mut state = WorkflowState::default();
        for (i, task) in ["a/x", "a/x", "b/y", "a/x"].into_iter().enumerate() {
            let child = state
                .new_child(host.as_ref(), task, "{\"n\": 1}", i as u32)
                .await
                .unwrap();
            assert_eq!((child.task.as_str(), child.index), (task, i as u32));
        }
        assert!(state
            .new_child(host.as_ref(), "a/x", "{", 4)
            .await
            .unwrap_err()
            .contains("not valid JSON"));
        for _ in 0..2 {
            assert_eq!(
                state
                    .new_child(host.as_ref(), "missing/z", "{}", 4)
                    .await
                    .unwrap_err(),
                "no task `missing/z`"
            );
        }
        assert_eq!(
            *host.resolved.lock().unwrap(),
            ["a/x", "b/y", "missing/z", "missing/z"]
        );
        state.take_children();
        state
            .new_child(host.as_ref(), "a/x", "{}", 4)
            .await
            .unwrap();
        assert_eq!(
            host.resolved.lock().unwrap().len(),
            5,
            "resolved anew after storing"
        );
    }

    /// A child finished by another process is seen when its end is announced under the run,
    /// not at the next poll.
    #[tokio::test]
    async fn a_lingering_activation_wakes_when_another_process_announces_its_run() {
        let host = Arc::new(Host::default());
        let waiting = {
            let host = host.clone();
            tokio::spawn(async move {
                let mut states = vec![None];
                let until = Instant::now() + Duration::from_secs(3600);
                let over = wait_in_place(
                    host.as_ref(),
                    "run-1",
                    &["child-1".to_string()],
                    &mut states,
                    false,
                    until,
                )
                .await
                .unwrap();
                (over, states)
            })
        };
        host.read.notified().await;
        *host.result.lock().unwrap() = Some(ChildResult::Ok("7".into()));
        // Another run's announcement does not concern it.
        host.signals.runs.completed(["run-2"]);
        tokio::task::yield_now().await;
        assert_eq!(host.reads.load(Ordering::SeqCst), 1);
        host.signals.runs.completed(["run-1"]);
        let (over, states) = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("woken by the announcement")
            .unwrap();
        assert!(over);
        assert_eq!(states, vec![Some(ChildResult::Ok("7".into()))]);
        assert_eq!(host.reads.load(Ordering::SeqCst), 2);
    }
}
