//! Text and JSON renderings of what the CLI prints.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::registry::TaskInfo;
use crate::replay::{AttemptReplay, ReplayReport, UpgradeReport, Verdict};
use crate::store::copy::CopyReport;
use crate::store::{
    Micros, RunDetail, RunLogLine, RunResult, RunSummary, Status, StepDetail, WorkerState,
    WorkerView,
};
use hypergraph_core::worker::{DEAD_AFTER_BEATS, STALE_AFTER_BEATS};

/// The first 12 hex digits of a digest, enough to tell components apart.
pub fn short_digest(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

/// An RFC 3339 UTC time with milliseconds.
pub fn time(micros: Micros) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn opt_time(micros: Option<Micros>) -> String {
    micros.map(time).unwrap_or_else(|| "-".into())
}

/// A duration between two timestamps, in the most readable unit.
pub fn span(from: Option<Micros>, to: Option<Micros>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => human_micros(b - a),
        _ => "-".into(),
    }
}

fn human_micros(us: i64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `hypergraph tasks` and the task list after a deploy.
pub fn tasks_table(tasks: &[TaskInfo]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("v{}", t.version),
                t.signature.clone(),
            ]
        })
        .collect();
    table(&["TASK", "VERSION", "SIGNATURE"], &rows)
}

/// The rows per table of `hypergraph db copy`.
pub fn copy_table(report: &CopyReport) -> String {
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| vec![t.table.clone(), t.rows.to_string()])
        .collect();
    table(&["TABLE", "ROWS"], &rows)
}

/// `hypergraph runs list`.
pub fn runs_table(runs: &[RunSummary]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.task.clone(),
                r.status.to_string(),
                r.attempts.to_string(),
                time(r.created_at),
                span(Some(r.created_at), r.completed_at),
            ]
        })
        .collect();
    table(
        &["RUN", "TASK", "STATUS", "ATTEMPTS", "CREATED", "DURATION"],
        &rows,
    )
}

/// How long before `now` `at` was: `1.2 s ago`.
fn ago(at: Micros, now: Micros) -> String {
    format!("{} ago", human_micros(now.saturating_sub(at).max(0)))
}

/// `hypergraph workers list`: one row per worker, then the steps each holds, then what the
/// states mean.
pub fn workers_text(workers: &[WorkerView], now: Micros) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.info.id.clone(),
                w.state.to_string(),
                w.info.host.clone(),
                w.info.pid.to_string(),
                w.info.version.clone(),
                w.info.concurrency.to_string(),
                time(w.info.started_at),
                ago(w.last_seen_at, now),
                w.holding.len().to_string(),
                w.completed_recently.to_string(),
                w.last_completed_at
                    .map_or_else(|| "-".to_string(), |at| ago(at, now)),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "WORKER",
            "STATE",
            "HOST",
            "PID",
            "VERSION",
            "CONCURRENCY",
            "STARTED",
            "LAST HEARTBEAT",
            "HOLDING",
            "DONE (1 MIN)",
            "LAST DONE",
        ],
        &rows,
    );
    for w in workers.iter().filter(|w| !w.holding.is_empty()) {
        let _ = writeln!(
            out,
            "
{} holds:",
            w.info.id
        );
        for step in &w.holding {
            let lease = match step.lease_expires_at {
                Some(at) if at >= now => format!("lease for {}", human_micros(at - now)),
                Some(at) => format!("lease ended {}", ago(at, now)),
                None => "no lease".to_string(),
            };
            let _ = writeln!(
                out,
                "  step {} attempt {} ({}, run {}; {lease})",
                step.step_id, step.attempt, step.task, step.run_id
            );
        }
        if w.state == WorkerState::Dead {
            let _ = writeln!(
                out,
                "  (its worker is dead: the next claim by a live worker takes these over)"
            );
        }
    }
    let _ = writeln!(
        out,
        "\nlive: heartbeat within {STALE_AFTER_BEATS} intervals; stale: silent longer; dead: \
         silent over {DEAD_AFTER_BEATS} intervals (its steps are claimed again); stopped: shut \
         down cleanly"
    );
    out
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialize")
}

fn error_text(error: &Value) -> String {
    let kind = error.get("kind").and_then(Value::as_str).unwrap_or("error");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| compact(error));
    let mut text = format!("{kind}: {message}");
    if let Some(value) = error.get("value") {
        let _ = write!(text, "\n  value: {}", compact(value));
    }
    if let Some(bt) = error.get("backtrace").and_then(Value::as_str) {
        text.push_str("\n  wasm backtrace:");
        for frame in bt.lines().filter(|l| !l.trim().is_empty()) {
            let _ = write!(text, "\n    {}", frame.trim_end());
        }
    }
    text
}

/// `run --wait --json`.
pub fn run_result_json(run: &RunResult) -> Value {
    json!({
        "run_id": run.id,
        "task": run.task,
        "status": run.status,
        "output": run.output,
        "error": run.error,
        "attempts": run.attempts,
        "queue_us": run.queue_us,
        "execution_us": run.execution_us,
    })
}

/// `run --wait` in text: the output (or the error) and where to look next.
pub fn run_result_text(run: &RunResult) -> String {
    let mut out = String::new();
    match (&run.output, &run.error) {
        (_, Some(error)) => {
            let _ = writeln!(out, "run {} {}", run.id, run.status);
            let _ = writeln!(out, "{}", error_text(error));
            let _ = writeln!(
                out,
                "inspect: hypergraph runs show {0}   logs: hypergraph runs logs {0}",
                run.id
            );
        }
        (Some(output), None) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(output).expect("serializes")
            );
        }
        (None, None) => {
            let _ = writeln!(out, "run {} {}", run.id, run.status);
        }
    }
    out
}

fn step_json(step: &StepDetail) -> Value {
    let mut value = serde_json::to_value(step).expect("steps serialize");
    value["queue_us"] = json!(crate::store::span(Some(step.created_at), step.assigned_at));
    value["execution_us"] = json!(crate::store::span(step.started_at, step.completed_at));
    value
}

/// `runs show --json`: the stored run plus derived queue and execution times per step.
pub fn run_detail_json(run: &RunDetail) -> Value {
    let mut value = serde_json::to_value(run).expect("runs serialize");
    value["steps"] = Value::Array(run.steps.iter().map(step_json).collect());
    value["step_total"] = json!(run.step_total());
    value["step_counts"] = Value::Object(
        run.step_counts
            .iter()
            .map(|(status, n)| (status.to_string(), json!(n)))
            .collect(),
    );
    value["meta"] = Value::Object(
        run.meta
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    value
}

/// `runs show` in text.
pub fn run_detail_text(run: &RunDetail) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run        {}", run.id);
    let _ = writeln!(out, "task       {}", run.task);
    let _ = writeln!(out, "status     {}", run.status);
    let _ = writeln!(
        out,
        "deployment {} v{} (component {})",
        run.deployment, run.version, run.digest
    );
    let _ = writeln!(out, "created    {}", time(run.created_at));
    let _ = writeln!(out, "completed  {}", opt_time(run.completed_at));
    if !run.meta.is_empty() {
        let tags: Vec<String> = run.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "meta       {}", tags.join(" "));
    }
    let _ = writeln!(out, "input      {}", compact(&run.input));
    if let Some(output) = &run.output {
        let _ = writeln!(out, "output     {}", compact(output));
    }
    if let Some(error) = &run.error {
        let _ = writeln!(out, "error      {}", error_text(error));
    }
    let total = run.step_total();
    if total > 1 {
        let counts: Vec<String> = run
            .step_counts
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        let _ = writeln!(out, "\nsteps      {total}: {}", counts.join(", "));
        step_tree(&mut out, &run.steps, None, "");
        let hidden = total.saturating_sub(run.steps.len() as u64);
        if hidden > 0 {
            let _ = writeln!(
                out,
                "  ... {hidden} more step(s) not shown (`runs show {} --steps 0` shows all, \
                 `--step-status failed` only the failed ones)",
                run.id
            );
        }
    }
    // Details for the root step and every step that did not succeed; the tree shows the rest.
    let detailed = run
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parent_id.is_none() || s.status != Status::Succeeded);
    for (i, step) in detailed {
        let _ = writeln!(out, "\nstep {} {} [{}]", i + 1, step.task, step.status);
        let _ = writeln!(
            out,
            "  queue time {}   execution {}   total {}",
            span(Some(step.created_at), step.assigned_at),
            span(step.started_at, step.completed_at),
            span(Some(step.created_at), step.completed_at)
        );
        let _ = writeln!(
            out,
            "  created {}  assigned {}  started {}  completed {}",
            time(step.created_at),
            opt_time(step.assigned_at),
            opt_time(step.started_at),
            opt_time(step.completed_at)
        );
        let _ = writeln!(
            out,
            "  worker {}   component {}",
            step.worker_id.as_deref().unwrap_or("-"),
            short_digest(&step.digest)
        );
        if let Some(note) = why_late(step, crate::store::now_micros()) {
            let _ = writeln!(out, "  note: {note}");
        }
        let rows: Vec<Vec<String>> = step
            .attempts
            .iter()
            .map(|a| {
                vec![
                    format!("#{}", a.attempt),
                    if a.reruns > 0 {
                        format!("{} (ran {}x: key-value conflicts)", a.status, a.reruns + 1)
                    } else {
                        a.status.to_string()
                    },
                    a.worker_id.clone().unwrap_or_else(|| "-".into()),
                    a.hypergraph_version.clone().unwrap_or_else(|| "-".into()),
                    span(a.started_at, a.completed_at),
                    a.journal_entries.to_string(),
                    a.log_lines.to_string(),
                    a.error
                        .as_ref()
                        .and_then(|e| e.get("kind").and_then(Value::as_str))
                        .unwrap_or("")
                        .to_string(),
                ]
            })
            .collect();
        for line in table(
            &[
                "ATTEMPT",
                "STATUS",
                "WORKER",
                "VERSION",
                "EXECUTION",
                "JOURNAL",
                "LOGS",
                "ERROR",
            ],
            &rows,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Why a step that has not finished is not running yet, or is late, when it can be told from
/// what is stored: an expired lease (its worker died or stalled), a delay (backoff, timer), or
/// no worker claiming it.
fn why_late(step: &StepDetail, now: Micros) -> Option<String> {
    let lost = match step.lost_leases {
        0 => String::new(),
        n => format!(" (it has lost {n} lease(s) before)"),
    };
    match step.status {
        Status::Running => {
            let expired = step.lease_expires_at.filter(|&at| at < now)?;
            Some(format!(
                "its lease expired {} ago: worker {} stopped renewing it (it died or stalled); \
                 the next free worker claims the step again{lost}",
                human_micros(now - expired),
                step.worker_id.as_deref().unwrap_or("-")
            ))
        }
        Status::Queued => match step.wake_at {
            Some(at) if at > now => Some(format!(
                "not claimed before {} (a retry's backoff){lost}",
                time(at)
            )),
            _ if now - step.created_at > 5_000_000 && step.assigned_at.is_none() => Some(format!(
                "queued for {} and no worker has claimed it: is a worker (`hypergraph serve`) \
                 running on this database, and does it have free slots?",
                human_micros(now - step.created_at)
            )),
            _ if !lost.is_empty() => {
                Some(format!("queued to run again after its worker died{lost}"))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The steps of a run as a tree: each workflow step with its children below it, in the order
/// they were started, with status, attempts, execution time and the error kind of failures.
fn step_tree(out: &mut String, steps: &[StepDetail], parent: Option<&str>, indent: &str) {
    let children: Vec<&StepDetail> = steps
        .iter()
        .filter(|s| s.parent_id.as_deref() == parent)
        .collect();
    for (i, step) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let branch = if parent.is_none() {
            ""
        } else if last {
            "└─ "
        } else {
            "├─ "
        };
        let index = match (step.child_index, parent) {
            (Some(c), _) => format!("#{c} "),
            (None, Some(_)) => "(superseded by a resume) ".to_string(),
            (None, None) => String::new(),
        };
        let attempts = match step.attempt {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        let error = step
            .error
            .as_ref()
            .and_then(|e| e.get("kind").and_then(Value::as_str))
            .map(|kind| format!("  {kind}"))
            .unwrap_or_default();
        let name = step
            .name
            .as_ref()
            .map(|n| format!("{n}: "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}{branch}{index}{name}{} [{}] {attempts}, {}{error}",
            step.task,
            step.status,
            span(step.started_at, step.completed_at)
        );
        let deeper = if parent.is_none() {
            indent.to_string()
        } else if last {
            format!("{indent}   ")
        } else {
            format!("{indent}│  ")
        };
        step_tree(out, steps, Some(&step.id), &deeper);
    }
}

/// `runs logs` in text: one line per log line, with attempt, time, stream and level.
pub fn logs_text(logs: &[RunLogLine]) -> String {
    let mut out = String::new();
    for log in logs {
        let _ = writeln!(
            out,
            "#{} {} {:<6} {:<5} {}",
            log.attempt,
            time(log.line.at),
            log.line.stream,
            log.line.level,
            log.line.message
        );
    }
    out
}

fn verdict_text(out: &mut String, replay: &AttemptReplay) {
    let attempt = if replay.task.is_empty() {
        format!("attempt #{}", replay.attempt)
    } else {
        format!("{} attempt #{}", replay.task, replay.attempt)
    };
    match &replay.verdict {
        Verdict::Identical => {
            let _ = writeln!(out, "  {attempt}: identical");
        }
        Verdict::Skipped { reason } => {
            let _ = writeln!(out, "  {attempt}: skipped ({reason})");
        }
        Verdict::Diverged { divergence } => {
            let place = match divergence.seq {
                Some(seq) => format!("at journal entry {seq}"),
                None => "in its result".to_string(),
            };
            let _ = writeln!(out, "  {attempt}: diverged {place}");
            let _ = writeln!(out, "    recorded: {}", compact(&divergence.expected));
            let _ = writeln!(out, "    replayed: {}", compact(&divergence.actual));
        }
    }
}

/// `runs replay` in text: one line per attempt, then the verdict.
pub fn replay_text(report: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} ({}) replayed on component {}",
        report.run_id,
        report.task,
        short_digest(&report.digest)
    );
    for attempt in &report.attempts {
        verdict_text(&mut out, attempt);
    }
    let verdict = if !report.identical() {
        "diverged"
    } else if report.replayed() == 0 {
        "nothing to replay"
    } else {
        "identical"
    };
    let _ = writeln!(out, "{verdict}");
    out
}

/// `check-upgrade` in text: each run's verdict, then the summary.
pub fn upgrade_text(report: &UpgradeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checking component {} against {} run(s) of `{}`",
        short_digest(&report.digest),
        report.runs.len(),
        report.deployment
    );
    for run in &report.runs {
        match run.first_divergence() {
            None if run.replayed() == 0 => {
                let reason = run.attempts.iter().find_map(|a| match &a.verdict {
                    Verdict::Skipped { reason } => Some(reason.as_str()),
                    _ => None,
                });
                let _ = writeln!(
                    out,
                    "{}  skipped  {} ({})",
                    run.run_id,
                    run.task,
                    reason.unwrap_or("nothing to replay")
                );
            }
            None => {
                let _ = writeln!(out, "{}  identical  {}", run.run_id, run.task);
            }
            Some(attempt) => {
                let _ = writeln!(out, "{}  DIVERGED  {}", run.run_id, run.task);
                verdict_text(&mut out, attempt);
            }
        }
    }
    let _ = writeln!(
        out,
        "{} identical, {} diverged, {} skipped{}",
        report.identical,
        report.diverged,
        report.skipped,
        if report.diverged > 0 {
            ": the upgrade changes behaviour"
        } else {
            ""
        }
    );
    out
}
