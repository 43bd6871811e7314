//! One attempt of one task: a fresh instance, a call, and everything it produced.
//!
//! [`invoke`] instantiates the prepared component into a new `Store` (new WASI context, journal,
//! log sink and limits), calls the task's export with the converted parameters, and drops the store.
//! No state survives between attempts. Every way an attempt can end (a result, an application
//! error, a trap, a timeout, the memory cap, a stack overflow, `exit`) becomes an [`Outcome`]; the
//! host itself never fails because of what a guest did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use wasmtime::component::Val;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use crate::capabilities::kv::{KvBackend, KvState};
use crate::capabilities::limiter::MemoryLimitExceeded;
use crate::capabilities::workflow::{Linger, WorkflowHost, WorkflowState};
use crate::capabilities::{HostFault, HostState, InvocationContext, Produced};
use crate::convert::{results_buffer, results_to_json, val_json_len};
use crate::engine::{Engine, Prepared, PreparedTask, EPOCH_TICK};
use crate::journal::Journal;
use crate::limits::{format_bytes, LimitExceeded, Limits};
use crate::store::{now_micros, LogRecord, Micros};
use crate::Hypergraph;
pub use hypergraph_core::error::{ErrorKind, TaskError};

/// How often an attempt blocked in a host call checks for cancellation and its deadline.
const CANCEL_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// The inputs of one attempt.
pub struct Invocation<'a> {
    pub context: InvocationContext,
    pub params: &'a [Val],
    pub limits: &'a Limits,
    /// [`Journal::recording`] for a live attempt, [`Journal::replaying`] to replay one.
    pub journal: Journal,
    /// Where key-value reads go when recording (`None` in replay: the journal answers).
    pub kv: Option<Arc<dyn KvBackend>>,
    /// Where live workflow calls go (`None` in replay: the journal answers).
    pub workflow: Option<Hypergraph>,
    /// Lets a workflow's joins wait in place before suspending (workers set it).
    pub linger: Option<Linger>,
    /// Interrupts the attempt (at the next epoch tick) once set: the step was cancelled.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Everything one attempt produced.
#[derive(Debug)]
pub struct Outcome {
    pub started_at: Micros,
    pub completed_at: Micros,
    /// The task's results as JSON (`null` for none), or why the attempt failed. An application
    /// error still carries the full output in [`TaskError::value`]. Meaningless when a workflow
    /// suspended (`produced.wait` is set).
    pub result: Result<Value, TaskError>,
    /// What its capabilities produced: journal, logs, divergence, key-value writes and reads,
    /// children and wait.
    pub produced: Produced,
}

/// Runs one attempt of `task` in a fresh instance of `prepared`.
pub async fn invoke(
    engine: &Engine,
    prepared: &Prepared,
    task: &PreparedTask,
    invocation: Invocation<'_>,
) -> Outcome {
    let started_at = now_micros();
    let limits = invocation.limits;
    let mut store = Store::new(
        &engine.wasmtime,
        HostState::new(
            invocation.context,
            limits,
            invocation.journal.clone(),
            KvState::new(invocation.kv, limits.max_kv_write_bytes),
            WorkflowState::new(
                invocation
                    .workflow
                    .map(|hg| Arc::new(hg) as Arc<dyn WorkflowHost>),
                invocation.linger,
            ),
        ),
    );
    store.limiter(|state| state.limiter());
    let deadline = Instant::now() + limits.timeout;
    let cancel = invocation.cancel.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let cancelled = cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        if cancelled || Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });

    // Epoch interruption stops running wasm; this stops a guest blocked in a host call (a
    // sleep, an HTTP request) too, by dropping the call at the deadline or on cancellation.
    let cancelled = || {
        invocation
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    let blocked_too_long = async {
        let mut every = tokio::time::interval(CANCEL_CHECK);
        loop {
            every.tick().await;
            if cancelled() || Instant::now() >= deadline + EPOCH_TICK * 10 {
                return;
            }
        }
    };
    // Biased: the call first, so an attempt that finishes at once never arms the watchdog's timer.
    let result = tokio::select! {
        biased;
        result = call(&mut store, prepared, task, invocation.params, limits) => Some(result),
        () = blocked_too_long => None,
    };
    let result = match result {
        Some(Ok(results)) => Ok(results),
        _ if cancelled() => Err(TaskError {
            kind: ErrorKind::Cancelled,
            message: "the step was cancelled while the attempt ran".into(),
            backtrace: None,
            value: None,
        }),
        Some(Err(error)) => Err(classify(error, &store, limits, deadline)),
        None => Err(TaskError {
            kind: ErrorKind::Timeout,
            message: timeout_message(limits),
            backtrace: None,
            value: None,
        }),
    };
    let produced = store.into_data().finish();
    let logs = &produced.logs;
    let result = result.map_err(|mut error| {
        if error.kind == ErrorKind::Trap {
            if let Some(exception) = guest_exception(logs) {
                error.message = format!("{}\n{exception}", error.message);
            } else if let Some(panic) = panic_message(logs) {
                error.message = format!("{} ({panic})", error.message);
            } else if let Some(panic) = go_panic(logs) {
                error.message = format!("{}\n{panic}", error.message);
            }
        }
        error
    });
    Outcome {
        started_at,
        completed_at: now_micros(),
        result: result.and_then(application_result),
        produced,
    }
}

/// The uncaught exception an interpreted guest printed to stderr before trapping: a Python
/// traceback (componentize-py prints it, then aborts) or a JavaScript error and its stack
/// (ComponentizeJS prints the message, `Stack:` and the frames).
fn guest_exception(logs: &[LogRecord]) -> Option<String> {
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.message.as_str())
        .collect();
    let block = |from: usize, stop: &dyn Fn(&str) -> bool| {
        let mut lines: Vec<&str> = stderr[from..]
            .iter()
            .copied()
            .take_while(|l| !stop(l))
            .collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        lines.join("\n")
    };
    if let Some(at) = stderr
        .iter()
        .rposition(|l| l.trim() == "Traceback (most recent call last):")
    {
        // The traceback ends where componentize-py's runtime reports the failed call.
        return Some(block(at, &|l| l.starts_with("thread '")));
    }
    let at = stderr.iter().rposition(|l| l.trim() == "Stack:")?;
    let start = at.checked_sub(1)?;
    Some(block(start, &|l| l.trim().is_empty()))
}

/// The panic message a Rust guest printed to stderr before trapping: the last `panicked at` line
/// and the message line after it.
fn panic_message(logs: &[LogRecord]) -> Option<String> {
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.message.as_str())
        .collect();
    let at = stderr.iter().rposition(|l| l.contains("panicked at"))?;
    let mut text = stderr[at].trim().trim_end_matches(':').to_string();
    if let Some(message) = stderr.get(at + 1) {
        text.push_str(": ");
        text.push_str(message.trim());
    }
    Some(text)
}

/// The panic a Go guest printed to stderr before its runtime aborted (a trap): the last `panic: `
/// line and the stack of the goroutine that panicked (to the next blank line).
fn go_panic(logs: &[LogRecord]) -> Option<String> {
    let stderr: Vec<&str> = logs
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.message.as_str())
        .collect();
    let at = stderr.iter().rposition(|l| l.starts_with("panic: "))?;
    let mut lines = vec![stderr[at]];
    lines.extend(
        stderr[at + 1..]
            .iter()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !l.trim().is_empty())
            .take(40),
    );
    Some(lines.join("\n"))
}

/// Longest pause between two tries to get an instance from an exhausted pool.
const POOL_RETRY_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// Instantiates and calls the task. An output larger than `limits` allow fails with
/// [`LimitExceeded`] before it is converted.
async fn call(
    store: &mut Store<HostState>,
    prepared: &Prepared,
    task: &PreparedTask,
    params: &[Val],
    limits: &Limits,
) -> wasmtime::Result<Vec<Val>> {
    // Every instance slot of the pool busy (other attempts, lingering workflows, replays) is
    // not this attempt's failure: wait for one (the attempt's deadline still applies).
    let mut pause = std::time::Duration::from_millis(1);
    let instance = loop {
        match prepared.pre.instantiate_async(&mut *store).await {
            Ok(instance) => break instance,
            Err(e)
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some() =>
            {
                tracing::debug!("waiting for a free instance slot: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POOL_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    };
    let func = instance
        .get_func(&mut *store, task.index)
        .ok_or_else(|| wasmtime::format_err!("export `{}` is not a function", task.export.name))?;
    let mut results = results_buffer(&task.export.ty);
    func.call_async(&mut *store, params, &mut results).await?;
    let size: u64 = results.iter().map(val_json_len).sum();
    if size > limits.max_output_bytes {
        return Err(wasmtime::Error::new(LimitExceeded(format!(
            "the task's output is {} of JSON, larger than the deployment's limit of {} \
             (raise it with `hypergraph deploy --max-output`)",
            format_bytes(size),
            format_bytes(limits.max_output_bytes)
        ))));
    }
    Ok(results)
}

fn timeout_message(limits: &Limits) -> String {
    format!(
        "the attempt exceeded its execution deadline of {} ms and was interrupted \
         (raise it with the deployment's timeout)",
        limits.timeout.as_millis()
    )
}

/// A `result` whose `err` case was returned fails the attempt as an application error.
fn application_result(results: Vec<Val>) -> Result<Value, TaskError> {
    let failed = matches!(results.as_slice(), [Val::Result(Err(_))]);
    let json = results_to_json(&results);
    if failed {
        let value = json.get("err").cloned().unwrap_or(Value::Null);
        return Err(TaskError {
            kind: ErrorKind::Application,
            message: "the task returned an error".into(),
            backtrace: None,
            value: Some(value),
        });
    }
    Ok(json)
}

fn classify(
    error: wasmtime::Error,
    store: &Store<HostState>,
    limits: &Limits,
    deadline: Instant,
) -> TaskError {
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|bt| !bt.trim().is_empty());
    let with = |kind, message: String| TaskError {
        kind,
        message,
        backtrace: backtrace.clone(),
        value: None,
    };
    if let Some(hit) = store.data().memory_limit_hit() {
        return with(
            ErrorKind::MemoryLimit,
            MemoryLimitExceeded {
                requested: hit.requested,
                limit: hit.limit,
            }
            .to_string(),
        );
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return with(
            ErrorKind::Exit,
            format!("the task called exit with status {}", exit.0),
        );
    }
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return with(ErrorKind::Limit, limit.to_string());
    }
    if let Some(fault) = error.downcast_ref::<HostFault>() {
        return with(ErrorKind::Host, fault.to_string());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if Instant::now() + EPOCH_TICK >= deadline => {
            with(ErrorKind::Timeout, timeout_message(limits))
        }
        Some(Trap::StackOverflow) => with(
            ErrorKind::StackOverflow,
            "the guest overflowed its call stack (unbounded recursion?)".into(),
        ),
        Some(trap) => with(ErrorKind::Trap, format!("the guest trapped: {trap}")),
        // Anything else is the guest's doing: it broke the component ABI (a string that is not
        // UTF-8, a pointer out of bounds, a bad discriminant) or misused a host call.
        None => with(
            ErrorKind::Trap,
            format!("the guest made an invalid call: {error:#}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: &str, message: &str) -> LogRecord {
        LogRecord {
            seq: 0,
            at: 0,
            stream: stream.into(),
            level: "warn".into(),
            message: message.into(),
        }
    }

    #[test]
    fn finds_python_tracebacks_and_javascript_stacks() {
        let python = [
            line("stdout", "working"),
            line("stderr", "Traceback (most recent call last):"),
            line("stderr", "  File \"/0/app.py\", line 3, in fail"),
            line("stderr", "ValueError: boom"),
            line("stderr", ""),
            line(
                "stderr",
                "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:",
            ),
            line("stderr", "Python function threw an unexpected exception"),
        ];
        assert_eq!(
            guest_exception(&python).unwrap(),
            "Traceback (most recent call last):\n  File \"/0/app.py\", line 3, in fail\nValueError: boom"
        );
        let js = [
            line("stderr", "Error: boom"),
            line("stderr", "Stack:"),
            line("stderr", "  inner@index.js:31:9"),
            line("stderr", "  fail@index.js:35:8"),
            line("stderr", ""),
            line("stderr", "Redirecting call to abort() to mozalloc_abort"),
        ];
        assert_eq!(
            guest_exception(&js).unwrap(),
            "Error: boom\nStack:\n  inner@index.js:31:9\n  fail@index.js:35:8"
        );
        assert_eq!(guest_exception(&python[..1]), None);
    }

    #[test]
    fn finds_the_rust_panic_message() {
        let logs = [
            line("stdout", "working"),
            line("stderr", "thread '<unnamed>' panicked at src/lib.rs:7:9:"),
            line(
                "stderr",
                "index out of bounds: the len is 3 but the index is 5",
            ),
            line(
                "stderr",
                "note: run with `RUST_BACKTRACE=1` environment variable",
            ),
        ];
        assert_eq!(
            panic_message(&logs).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:7:9: index out of bounds: the len is 3 but the index is 5"
        );
        assert_eq!(panic_message(&logs[..1]), None);
    }

    #[test]
    fn finds_the_go_panic_and_its_stack() {
        let logs = [
            line("stderr", "about to fail"),
            line("stderr", "panic: giving up: boom"),
            line("stderr", ""),
            line("stderr", "goroutine 1 [running]:"),
            line("stderr", "main.inner(...)"),
            line("stderr", "\tgo-guarantees/main.go:41"),
            line("stderr", ""),
            line("stderr", "later"),
        ];
        assert_eq!(
            go_panic(&logs).unwrap(),
            "panic: giving up: boom\ngoroutine 1 [running]:\nmain.inner(...)\n\tgo-guarantees/main.go:41"
        );
        assert_eq!(go_panic(&logs[..1]), None);
    }
}
