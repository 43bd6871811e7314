//! Workers: lease steps from the store, execute them in fresh instances, commit the results.
//!
//! A worker claims batches of steps (as many as it has free execution slots), runs each attempt on
//! its own task, and hands completions to a single committer that writes everything finished since
//! its last commit in one transaction (group commit). Each completion is still atomic and fenced
//! by its attempt number in the store. Leases of in-flight steps are renewed while they run; a
//! worker that dies simply stops renewing, and its steps are claimed again after the lease expires.
//!
//! A worker is visible in the database: it registers itself ([`WorkerInfo`]) when it starts,
//! heartbeats every [`WorkerOptions::heartbeat`] while it runs, and marks itself stopped when it
//! stops cleanly. One that stops heartbeating is stale, then dead
//! ([`hypergraph_core::worker`]), and the steps it holds are claimed again by other workers
//! without waiting for their leases to expire. At `info` level (`-v`) it logs every step it
//! claims and every completion it commits.
//!
//! Workflow activations may linger on their children (see
//! [`crate::capabilities::workflow`]): their checkpoints go through the same committer, and while
//! they wait they hand their execution slot to other steps.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::capabilities::kv::MAX_RERUNS;
use crate::capabilities::workflow::{Activation, Linger, Progress};
use crate::capabilities::{InvocationContext, Produced};
use crate::convert::params_from_json;
use crate::dag_runner::run_dag;
use crate::invoke::{invoke, ErrorKind, Invocation, Outcome, TaskError};
use crate::journal::{Entry, Journal};
use crate::kv_host::StoreKv;
use crate::limits::Limits;
use crate::outage::{retry_transient, Repeated};
use crate::registry::function_of;
use crate::store::{
    now_micros, ClaimedStep, CommitOutcome, Completion, DeploymentKind, KvWrite, Status, WorkerInfo,
};
use crate::Hypergraph;
use hypergraph_core::worker::{DEFAULT_HEARTBEAT, MIN_HEARTBEAT};

/// Most steps claimed in one query, and most completions committed in one transaction.
const BATCH: usize = 256;

/// How long a stopping worker lets a claim already under way finish, so that it runs the steps
/// the claim took instead of abandoning them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Most steps one worker executes at once: the instance pool is sized from this (each slot may
/// also have a lingering workflow), and one process serves at most this many.
pub const MAX_CONCURRENCY: usize = 1024;

/// Worker tuning.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Steps executed at once.
    pub concurrency: usize,
    /// How long a claim is valid without renewal; renewed every third of it.
    pub lease: Duration,
    /// Longest sleep between polls when the queue is empty and other processes' wake-ups do not
    /// reach this worker (SQLite, or a PostgreSQL listener that lost its connection): wake-ups
    /// from this process are immediate; other processes' submissions are found by polling.
    pub max_poll_interval: Duration,
    /// Longest sleep between polls when the queue is empty while other processes' wake-ups
    /// reach this worker ([`Hypergraph::listening`]: on PostgreSQL, while its listener is
    /// connected), which wake it at once: polling then only finds what was never announced
    /// (timers and retries coming due, deadlines, announcements lost), so this also bounds how
    /// late an idle worker runs those.
    pub listening_poll_interval: Duration,
    /// How long a workflow joining a few unfinished children waits for them in place before it
    /// suspends (zero: suspend at once). See [`crate::capabilities::workflow`].
    pub linger: Duration,
    /// How often the worker records a heartbeat (at least
    /// [`hypergraph_core::worker::MIN_HEARTBEAT`]); it counts as stale, then dead, after
    /// multiples of it without one (see [`hypergraph_core::worker`]).
    pub heartbeat: Duration,
}

/// The default [`WorkerOptions::linger`]: long enough for short children, short enough that a
/// waiting workflow soon holds nothing.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(200);

/// The default [`WorkerOptions::listening_poll_interval`]: a retry's backoff or a durable timer
/// that comes due on an idle worker runs at most this late; an idle poll is one cheap claim.
pub const DEFAULT_LISTENING_POLL: Duration = Duration::from_millis(250);

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 32,
            lease: Duration::from_secs(30),
            max_poll_interval: Duration::from_millis(100),
            listening_poll_interval: DEFAULT_LISTENING_POLL,
            linger: DEFAULT_LINGER,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

/// What a worker did, returned when it stops.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStats {
    pub executed: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Workflow activations that suspended (waiting for children, a timer or an event).
    pub suspended: u64,
    /// Completions refused because the step no longer ran under that attempt (its lease expired
    /// and a newer attempt owns it, or it was cancelled).
    pub fenced: u64,
    /// Completions refused because a key-value key they read changed before they committed;
    /// their steps were queued to run again (see `capabilities::kv`).
    pub conflicts: u64,
}

/// When a worker stops.
enum StopWhen<F> {
    /// After the stop future resolves.
    Signal(F),
    /// As soon as there is nothing to claim and nothing in flight.
    Idle,
}

/// A worker process's execution loop.
pub struct Worker {
    hg: Hypergraph,
    info: WorkerInfo,
    options: WorkerOptions,
}

impl Worker {
    /// A worker with a fresh id identifying this host and process, and the hypergraph version,
    /// concurrency and heartbeat interval it registers with.
    pub fn new(hg: Hypergraph, options: WorkerOptions) -> Worker {
        let host = hostname();
        let info = WorkerInfo {
            id: format!(
                "{host}/{}/{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            ),
            host,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            concurrency: u32::try_from(options.concurrency).unwrap_or(u32::MAX),
            heartbeat_ms: u64::try_from(options.heartbeat.as_millis()).unwrap_or(u64::MAX),
            started_at: now_micros(),
        };
        Worker { hg, info, options }
    }

    /// This worker's identity and settings, as it registers them (its id is recorded with every
    /// attempt it runs).
    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// Runs until `stop` resolves, then finishes in-flight steps, commits them and returns.
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> Result<WorkerStats> {
        self.run(StopWhen::Signal(stop)).await
    }

    /// Runs this worker on its own task until [`WorkerHandle::stop`].
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            self.run_until(async {
                let _ = stopped.await;
            })
            .await
        });
        WorkerHandle { stop, task }
    }

    /// Runs until no step is claimable and none is in flight.
    pub async fn run_until_idle(&self) -> Result<WorkerStats> {
        self.run(StopWhen::<std::future::Pending<()>>::Idle).await
    }

    async fn run<F: Future<Output = ()>>(&self, stop_when: StopWhen<F>) -> Result<WorkerStats> {
        anyhow::ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.options.concurrency),
            "a worker's concurrency must be between 1 and {MAX_CONCURRENCY}, not {}",
            self.options.concurrency
        );
        anyhow::ensure!(
            self.options.heartbeat >= MIN_HEARTBEAT,
            "a worker's heartbeat interval must be at least {MIN_HEARTBEAT:?}, not {:?}",
            self.options.heartbeat
        );
        retry_transient("registering the worker", || {
            self.hg.store.register_worker(&self.info)
        })
        .await?;
        // Aborted when this function returns, however it returns: a worker that no longer runs
        // must not look alive.
        let heartbeat = Heartbeat(tokio::spawn(heartbeat_loop(
            self.hg.clone(),
            self.info.id.clone(),
            self.options.heartbeat,
        )));
        tracing::info!(
            worker = %self.info.id,
            concurrency = self.options.concurrency,
            heartbeat = ?self.options.heartbeat,
            "worker started"
        );
        let slots = Arc::new(Semaphore::new(self.options.concurrency));
        let in_flight: InFlight = Arc::default();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Commit>();
        let (handed_tx, mut handed_rx) = mpsc::unbounded_channel::<Vec<ClaimedStep>>();
        // Completions sent to the committer and not yet committed: children and woken workflows
        // only become claimable once they are, so an idle worker waits for them.
        let uncommitted = Arc::new(AtomicUsize::new(0));
        let claiming = Arc::new(AtomicBool::new(true));
        let committer = tokio::spawn(commit_loop(
            self.hg.clone(),
            done_rx,
            uncommitted.clone(),
            ClaimOnCommit {
                worker_id: self.info.id.clone(),
                lease: self.options.lease,
                slots: slots.clone(),
                enabled: claiming.clone(),
                handed: handed_tx,
            },
        ));
        let renewer = tokio::spawn(renew_loop(
            self.hg.clone(),
            self.info.id.clone(),
            in_flight.clone(),
            self.options.lease,
        ));
        let canceller = tokio::spawn(cancel_loop(self.hg.clone(), in_flight.clone()));
        let launcher = Launcher {
            hg: self.hg.clone(),
            worker_id: self.info.id.clone(),
            slots: slots.clone(),
            lingering: Arc::new(Semaphore::new(self.options.concurrency)),
            in_flight: in_flight.clone(),
            committer: Committer {
                done: done_tx,
                uncommitted: uncommitted.clone(),
            },
            linger: self.options.linger,
        };

        let mut running = JoinSet::new();
        let mut handed: Vec<ClaimedStep> = Vec::new();
        let mut idle_poll = Duration::from_millis(1);
        // Whether the next round claims from the store. Not right after running steps the
        // committer handed over: its claim took every claimable step it had room for (when it
        // filled its room it raises `submitted`), so a claim now would find nothing.
        let mut poll = true;
        let (mut stop, idle_mode) = match stop_when {
            StopWhen::Signal(f) => (Some(Box::pin(f)), false),
            StopWhen::Idle => (None, true),
        };
        loop {
            while running.try_join_next().is_some() {}
            // Created before claiming: a submission committed while the claim query runs still
            // wakes us (tokio delivers `notify_waiters` to every `Notified` that exists).
            let wake = self.hg.signals.submitted.notified();
            // Read before claiming: a completion committed after this claim's snapshot must
            // keep an idle worker going, since it may have made children claimable (the
            // committer hands what it claimed over before it counts the commit done).
            let settled = running.is_empty() && uncommitted.load(Ordering::SeqCst) == 0;
            while let Ok(steps) = handed_rx.try_recv() {
                handed.extend(steps);
            }
            let mut claimed = std::mem::take(&mut handed);
            let from_committer = !claimed.is_empty();
            let free = slots.available_permits().min(BATCH);
            let polled = claimed.is_empty() && free > 0 && poll;
            if polled {
                let mut claim = pin!(retry_transient("claiming steps", || {
                    self.hg
                        .store
                        .claim_steps(&self.info.id, free, self.options.lease)
                }));
                let stopping = tokio::select! {
                    _ = async { stop.as_mut().unwrap().await }, if stop.is_some() => true,
                    got = &mut claim => {
                        claimed = got?;
                        false
                    }
                };
                if stopping {
                    // A claim under way commits in milliseconds: let it, and run what it
                    // claimed, rather than leave steps leased to a worker that will never run
                    // them (they would run again under a new attempt). A claim waiting out an
                    // outage is abandoned so the worker still stops: its steps, if it claimed
                    // any, are taken over once this worker is seen stopped or their leases end.
                    if let Ok(Ok(steps)) = tokio::time::timeout(STOP_GRACE, claim).await {
                        for step in steps {
                            launcher.launch(&mut running, step).await?;
                        }
                    }
                    break;
                }
            }
            if claimed.is_empty() {
                if idle_mode && settled && polled {
                    break;
                }
                // Checked at every sleep: while wake-ups from other processes are lost (a
                // listener that lost its connection reports it, which also wakes us), poll as
                // if there were none.
                let longest = if self.hg.listening() {
                    self.options.listening_poll_interval
                } else {
                    self.options.max_poll_interval
                };
                let sleep = tokio::time::sleep(idle_poll.min(longest));
                let slot_freed = running.join_next();
                poll = true;
                tokio::select! {
                    _ = async { stop.as_mut().unwrap().await }, if stop.is_some() => break,
                    Some(steps) = handed_rx.recv() => {
                        handed.extend(steps);
                        poll = false;
                    }
                    _ = wake => idle_poll = Duration::from_millis(1),
                    _ = sleep => idle_poll = (idle_poll * 2).min(longest),
                    _ = slot_freed, if free == 0 || idle_mode => {}
                }
                continue;
            }
            poll = !from_committer;
            if poll {
                idle_poll = Duration::from_millis(1);
            }
            for step in claimed {
                launcher.launch(&mut running, step).await?;
            }
        }
        // No more claims; steps the committer claimed meanwhile still run, as do whatever their
        // completions hand over, until nothing is left in flight.
        claiming.store(false, Ordering::SeqCst);
        loop {
            while running.join_next().await.is_some() {}
            let settled = uncommitted.load(Ordering::SeqCst) == 0;
            while let Ok(steps) = handed_rx.try_recv() {
                handed.extend(steps);
            }
            if handed.is_empty() {
                if settled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for step in std::mem::take(&mut handed) {
                launcher.launch(&mut running, step).await?;
            }
        }
        drop(launcher);
        renewer.abort();
        canceller.abort();
        let stats = committer.await.context("committer task failed")??;
        drop(heartbeat);
        // Everything it ran is committed: it holds nothing any more (a step a claim cut short by
        // the stop handed it is claimed again at once, being held by a stopped worker).
        if let Err(e) = self.hg.store.stop_worker(&self.info.id).await {
            tracing::warn!(
                worker = %self.info.id,
                "cannot mark the worker stopped (it will show as dead): {e:#}"
            );
        }
        tracing::info!(worker = %self.info.id, ?stats, "worker stopped");
        Ok(stats)
    }
}

/// Starts claimed steps on a worker's tasks.
struct Launcher {
    hg: Hypergraph,
    worker_id: String,
    slots: Arc<Semaphore>,
    /// Places for lingering activations (see [`Slot`]).
    lingering: Arc<Semaphore>,
    in_flight: InFlight,
    committer: Committer,
    linger: Duration,
}

impl Launcher {
    /// Takes an execution slot (waiting for one) and executes `step` on a task of `running`,
    /// sending its completion to the committer.
    async fn launch(&self, running: &mut JoinSet<()>, step: ClaimedStep) -> Result<()> {
        let permit = self.slots.clone().acquire_owned().await?;
        tracing::info!(
            step = %step.step_id,
            attempt = step.attempt,
            task = %step.task,
            run = %step.run_id,
            "claimed"
        );
        let cancel = Arc::new(AtomicBool::new(false));
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((step.step_id.clone(), step.attempt), cancel.clone());
        let hg = self.hg.clone();
        let worker_id = self.worker_id.clone();
        let committer = self.committer.clone();
        let in_flight = self.in_flight.clone();
        let slot = Slot {
            slots: self.slots.clone(),
            held: Mutex::new(Some(permit)),
            places: self.lingering.clone(),
            place: Mutex::new(None),
        };
        let linger_window = self.linger;
        running.spawn(async move {
            let key = (step.step_id.clone(), step.attempt);
            let activation = Arc::new(WorkerActivation {
                committer: committer.clone(),
                step_id: step.step_id.clone(),
                attempt: step.attempt,
                worker_id: worker_id.clone(),
                run_id: step.run_id.clone(),
                started_at: now_micros(),
                slot,
            });
            let linger = (!linger_window.is_zero()).then(|| Linger {
                window: linger_window,
                run_id: step.run_id.clone(),
                activation: activation.clone(),
            });
            let completion = execute(&hg, &worker_id, step, cancel, linger).await;
            committer.send(completion);
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            // Frees the execution slot (unless a lingering activation gave it back).
            drop(activation);
        });
        Ok(())
    }
}

/// A worker running on its own task in this process (for `run --wait`, the demo, embedders).
pub struct WorkerHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerStats>>,
}

impl WorkerHandle {
    /// Stops claiming, lets in-flight steps finish, commits them and returns what was done.
    pub async fn stop(self) -> Result<WorkerStats> {
        let _ = self.stop.send(());
        self.task.await.context("the worker task panicked")?
    }
}

/// What the committer receives: a completion, or a checkpoint whose sender awaits the outcome.
struct Commit {
    completion: Completion,
    ack: Option<oneshot::Sender<CommitOutcome>>,
}

/// The sending side of the committer, counting what it has not committed yet.
#[derive(Clone)]
struct Committer {
    done: mpsc::UnboundedSender<Commit>,
    /// Completions sent and not yet committed (see [`Worker::run_until_idle`]).
    uncommitted: Arc<AtomicUsize>,
}

impl Committer {
    fn send(&self, completion: Completion) {
        self.uncommitted.fetch_add(1, Ordering::SeqCst);
        let _ = self.done.send(Commit {
            completion,
            ack: None,
        });
    }

    /// Sends a checkpoint and waits until it is committed.
    async fn commit(&self, completion: Completion) -> Result<CommitOutcome> {
        let (ack, committed) = oneshot::channel();
        self.uncommitted.fetch_add(1, Ordering::SeqCst);
        self.done
            .send(Commit {
                completion,
                ack: Some(ack),
            })
            .map_err(|_| anyhow::anyhow!("the committer stopped"))?;
        committed
            .await
            .map_err(|_| anyhow::anyhow!("the committer failed"))
    }
}

/// An execution slot, given back while its activation lingers, and the lingering place taken
/// meanwhile (as many places as slots, so lingering never holds more than `concurrency`
/// instances on top of the running ones).
struct Slot {
    slots: Arc<Semaphore>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
    places: Arc<Semaphore>,
    place: Mutex<Option<OwnedSemaphorePermit>>,
}

/// The worker's side of one attempt's workflow activation: checkpoints and its execution slot.
struct WorkerActivation {
    committer: Committer,
    step_id: String,
    attempt: u32,
    worker_id: String,
    run_id: String,
    started_at: i64,
    slot: Slot,
}

#[async_trait::async_trait]
impl Activation for WorkerActivation {
    async fn checkpoint(&self, progress: Progress) -> Result<bool> {
        let checkpoint = Completion {
            step_id: self.step_id.clone(),
            attempt: self.attempt,
            worker_id: self.worker_id.clone(),
            started_at: self.started_at,
            completed_at: now_micros(),
            status: Status::Running,
            output: None,
            error: None,
            journal: progress.journal,
            logs: progress.logs,
            kv_writes: Vec::new(),
            kv_reads: Vec::new(),
            run_id: self.run_id.clone(),
            children: progress.children,
            wait: None,
            retry_at: None,
            reruns: 0,
        };
        Ok(self.committer.commit(checkpoint).await? == CommitOutcome::Committed)
    }

    fn release_slot(&self) -> bool {
        let Ok(place) = self.slot.places.clone().try_acquire_owned() else {
            return false;
        };
        *self.slot.place.lock().unwrap_or_else(|e| e.into_inner()) = Some(place);
        drop(
            self.slot
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        true
    }

    async fn reacquire_slot(&self) {
        if let Ok(permit) = self.slot.slots.clone().acquire_owned().await {
            *self.slot.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
        }
        drop(
            self.slot
                .place
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}

/// How the committer claims steps for its worker in the transaction of each commit.
struct ClaimOnCommit {
    worker_id: String,
    lease: Duration,
    /// The worker's execution slots: claims take at most as many steps as are free.
    slots: Arc<Semaphore>,
    /// Cleared when the worker stops claiming.
    enabled: Arc<AtomicBool>,
    /// Where claimed steps go to be executed.
    handed: mpsc::UnboundedSender<Vec<ClaimedStep>>,
}

/// Commits completions and checkpoints in batches until every sender is gone, claiming in the
/// same transaction as many steps as the worker has free slots.
async fn commit_loop(
    hg: Hypergraph,
    mut done: mpsc::UnboundedReceiver<Commit>,
    uncommitted: Arc<AtomicUsize>,
    claim: ClaimOnCommit,
) -> Result<WorkerStats> {
    let mut stats = WorkerStats::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut acks = Vec::with_capacity(BATCH);
    while let Some(commit) = done.recv().await {
        batch.push(commit.completion);
        acks.push(commit.ack);
        while batch.len() < BATCH {
            match done.try_recv() {
                Ok(commit) => {
                    batch.push(commit.completion);
                    acks.push(commit.ack);
                }
                Err(_) => break,
            }
        }
        let free = if claim.enabled.load(Ordering::SeqCst) {
            claim.slots.available_permits().min(BATCH)
        } else {
            0
        };
        // Run again after a lost connection: the transaction either committed or not, and a
        // completion that did commit is fenced the second time, never recorded twice.
        let (outcomes, claimed) = retry_transient("committing completions", || {
            hg.store
                .complete_and_claim(&batch, &claim.worker_id, free, claim.lease)
        })
        .await?;
        let more = free > 0 && claimed.len() == free;
        if !claimed.is_empty() {
            let _ = claim.handed.send(claimed);
        }
        let mut finished = Vec::new();
        for ((completion, outcome), ack) in batch.iter().zip(outcomes).zip(acks.drain(..)) {
            if let Some(ack) = ack {
                // A checkpoint: the attempt goes on.
                let _ = ack.send(outcome);
                continue;
            }
            stats.executed += 1;
            match outcome {
                CommitOutcome::Committed => {
                    let ended = if completion.wait.is_some() {
                        stats.suspended += 1;
                        "suspended"
                    } else if completion.status == Status::Succeeded {
                        stats.succeeded += 1;
                        "succeeded"
                    } else {
                        stats.failed += 1;
                        if completion.retry_at.is_some() {
                            "failed (retry queued)"
                        } else {
                            "failed"
                        }
                    };
                    tracing::info!(
                        step = %completion.step_id,
                        attempt = completion.attempt,
                        outcome = ended,
                        "completed"
                    );
                }
                CommitOutcome::Cancelled => {
                    stats.fenced += 1;
                    tracing::info!(
                        step = %completion.step_id,
                        attempt = completion.attempt,
                        "attempt interrupted: its step was cancelled"
                    );
                }
                CommitOutcome::Conflict => {
                    stats.conflicts += 1;
                    tracing::info!(
                        step = %completion.step_id,
                        attempt = completion.attempt,
                        "a key the attempt read changed before it committed: running it again"
                    );
                }
                CommitOutcome::Fenced => {
                    stats.fenced += 1;
                    tracing::warn!(
                        step = %completion.step_id,
                        attempt = completion.attempt,
                        "result discarded: a newer attempt owns this step (its lease had expired)"
                    );
                }
            }
            if outcome == CommitOutcome::Committed && completion.ends_step() {
                finished.push(completion);
            }
        }
        uncommitted.fetch_sub(batch.len(), Ordering::SeqCst);
        // Only a step's end can end its run (a checkpoint or a suspension cannot).
        hg.signals
            .runs
            .completed(finished.iter().map(|c| c.run_id.as_str()));
        hg.signals
            .steps
            .completed(finished.iter().map(|c| c.step_id.as_str()));
        if free == 0 || more {
            // Completions may have created children or woken workflows that this commit did not
            // claim: let idle workers look.
            hg.signals.submitted.notify_waiters();
        }
        batch.clear();
    }
    Ok(stats)
}

/// The attempts a worker is executing, each with the flag that interrupts it.
type InFlight = Arc<Mutex<HashMap<(String, u32), Arc<AtomicBool>>>>;

/// How often a worker checks whether one of its attempts was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(250);

fn in_flight_keys(in_flight: &InFlight) -> Vec<(String, u32)> {
    in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect()
}

/// Interrupts in-flight attempts whose step was cancelled (`runs cancel`), within
/// [`CANCEL_POLL`] plus one epoch tick.
async fn cancel_loop(hg: Hypergraph, in_flight: InFlight) {
    let mut every = tokio::time::interval(CANCEL_POLL);
    let mut log = Repeated::new("checking for cancelled steps");
    loop {
        every.tick().await;
        let steps = in_flight_keys(&in_flight);
        if steps.is_empty() {
            continue;
        }
        let checked = hg.store.cancelled_steps(&steps).await;
        log.record(&checked);
        if let Ok(cancelled) = checked {
            let flags = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for key in cancelled {
                if let Some(flag) = flags.get(&key) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Renews the leases of in-flight steps every third of the lease.
async fn renew_loop(hg: Hypergraph, worker_id: String, in_flight: InFlight, lease: Duration) {
    let mut every = tokio::time::interval(lease / 3);
    let mut log = Repeated::new("renewing leases");
    every.tick().await;
    loop {
        every.tick().await;
        let steps = in_flight_keys(&in_flight);
        log.record(&hg.store.renew_leases(&worker_id, &steps, lease).await);
    }
}

/// The task recording a worker's heartbeats, aborted when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records a heartbeat of worker `id` every `every` (the registration was the first). A failed
/// heartbeat is logged when heartbeats start failing and when they succeed again, not at every
/// tick; the next tick tries again.
async fn heartbeat_loop(hg: Hypergraph, id: String, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut log = Repeated::new(
        "recording a heartbeat (while it fails, other workers take this one's steps over once \
         it has been silent for six heartbeats)",
    );
    loop {
        ticks.tick().await;
        log.record(&hg.store.heartbeat_worker(&id).await);
    }
}

/// Executes one claimed step and turns the outcome into a completion. Never fails: host-side
/// problems (a missing component, an input that no longer converts) fail the attempt instead.
///
/// A workflow that suspended yields a completion that keeps the attempt going (with the children
/// it started and what it waits for); a workflow that no longer matches its journal fails; a
/// failed task whose deployment's retry policy allows it is queued again after its backoff.
/// `cancel` interrupts the attempt when set; with `linger`, a workflow's joins may wait in place.
async fn execute(
    hg: &Hypergraph,
    worker_id: &str,
    step: ClaimedStep,
    cancel: Arc<AtomicBool>,
    linger: Option<Linger>,
) -> Completion {
    let journal = journal_of(&step);
    let handle = journal.as_ref().ok().cloned();
    let outcome = match journal {
        Ok(_) if step.reruns >= MAX_RERUNS => Err(TaskError {
            kind: ErrorKind::KvConflict,
            message: format!(
                "the keys this attempt reads kept changing before it could commit: it ran \
                 {MAX_RERUNS} times and was refused each time (make the keys it reads less \
                 contended, e.g. one key per writer)"
            ),
            backtrace: None,
            value: None,
        }),
        Ok(journal) => prepare_and_invoke(hg, &step, journal, cancel, linger)
            .await
            .map_err(|e| TaskError::host(format!("{e:#}"))),
        Err(e) => Err(TaskError::host(format!("{e:#}"))),
    };
    let mut outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let now = now_micros();
            Outcome {
                started_at: now,
                completed_at: now,
                result: Err(error),
                produced: Produced::default(),
            }
        }
    };
    let is_workflow =
        !step.resume.is_empty() || outcome.produced.journal.iter().any(Entry::is_workflow);
    if let Some(divergence) = outcome.produced.divergence.take() {
        outcome.produced.wait = None;
        outcome.produced.children.clear();
        outcome.result = Err(TaskError::host(format!(
            "the workflow no longer matches its journal, so it cannot resume (its code must be \
             deterministic, and a deployment must not change under a running workflow): {divergence}"
        )));
    }
    let wait = outcome.produced.wait.take();
    // A suspension stores its reads as history (see `capabilities::kv`); an attempt's end has
    // them checked.
    let kv_reads = if wait.is_none() {
        outcome.produced.kv_reads
    } else {
        Vec::new()
    };
    let kv_writes = if outcome.result.is_ok() && wait.is_none() {
        let scope = kv_scope(&step.deployment);
        outcome
            .produced
            .kv_writes
            .into_iter()
            .map(|(key, value)| KvWrite {
                scope: scope.clone(),
                key,
                value,
            })
            .collect()
    } else {
        Vec::new()
    };
    let (status, output, error, retry_at) = match (&wait, outcome.result) {
        (Some(_), _) => (Status::Running, None, None, None),
        (None, Ok(output)) => (Status::Succeeded, Some(output), None, None),
        (None, Err(error)) => {
            let retry = &step.policy.retry;
            let retry_at = (!is_workflow && retry.should_retry(&error, step.attempt)).then(|| {
                let delay = retry.delay(step.attempt, &mut rand::rng());
                now_micros().saturating_add(delay.as_micros() as i64)
            });
            let error = serde_json::to_value(&error).expect("errors serialize");
            (Status::Failed, None, Some(error), retry_at)
        }
    };
    // Only what is not stored yet: not the prefix a resumed attempt stored before, nor what
    // this activation's checkpoints stored.
    let mut journal = Journal::to_records(&outcome.produced.journal);
    let stored = handle.map_or(0, |h| h.committed());
    journal.drain(..journal.len().min(stored));
    Completion {
        step_id: step.step_id,
        attempt: step.attempt,
        worker_id: worker_id.to_string(),
        started_at: outcome.started_at,
        completed_at: outcome.completed_at,
        status,
        output,
        error,
        journal,
        logs: outcome.produced.logs,
        kv_writes,
        kv_reads,
        run_id: step.run_id,
        children: if status == Status::Failed {
            Vec::new()
        } else {
            outcome.produced.children
        },
        wait,
        retry_at,
        reruns: step.reruns,
    }
}

/// The journal `step` runs with: recording, or resuming its workflow journal. A workflow resumed
/// within the same attempt stored that prefix before; a new attempt that inherited a crashed
/// attempt's journal stores all of it again, under its own attempt.
fn journal_of(step: &ClaimedStep) -> Result<Journal> {
    if step.resume.is_empty() {
        return Ok(Journal::recording());
    }
    let prefix = step
        .resume
        .iter()
        .map(Entry::from_record)
        .collect::<Result<Vec<_>>>()?;
    let len = prefix.len();
    let journal = Journal::resuming(prefix);
    if step.resume_attempt == step.attempt {
        journal.mark_committed(len);
    }
    Ok(journal)
}

async fn prepare_and_invoke(
    hg: &Hypergraph,
    step: &ClaimedStep,
    journal: Journal,
    cancel: Arc<AtomicBool>,
    linger: Option<Linger>,
) -> Result<Outcome> {
    // A DAG workflow's root step: its deployment is a DAG file.
    if step.kind == DeploymentKind::Dag {
        return run_dag(hg, step, journal, linger).await;
    }
    let prepared = hg.prepared_digest(&step.digest).await?;
    let function = function_of(&step.task);
    let task = prepared.task(function).with_context(|| {
        format!(
            "component {} has no task `{function}`",
            &step.digest[..12.min(step.digest.len())]
        )
    })?;
    let params = params_from_json(&task.export.ty, &step.input)
        .map_err(|e| anyhow::anyhow!("stored input no longer matches the task: {e}"))?;
    let limits = Limits::from_policy(&step.policy);
    let context = InvocationContext {
        run_id: step.run_id.clone(),
        task_name: step.task.clone(),
        attempt: step.attempt,
    };
    Ok(invoke(
        &hg.engine,
        &prepared,
        task,
        Invocation {
            context,
            params: &params,
            limits: &limits,
            journal,
            kv: Some(Arc::new(StoreKv::new(
                hg.store.clone(),
                kv_scope(&step.deployment),
            ))),
            workflow: Some(hg.clone()),
            linger,
            cancel: Some(cancel),
        },
    )
    .await)
}

/// The key-value namespace of a deployment: `<tenant>/<deployment>` (one tenant, `default`, until
/// tenants exist).
pub fn kv_scope(deployment: &str) -> String {
    hypergraph_core::tenant::TenantId::default().kv_scope(deployment)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
