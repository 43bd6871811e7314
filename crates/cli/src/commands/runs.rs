//! `hypergraph runs ...`: list, show, logs, export, cancel and resume runs.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;

use crate::args::{ExportArgs, ListArgs, ResumeArgs, RunIdArgs, ShowArgs};
use crate::bundle;
use crate::io::print_json;
use crate::render;
use crate::resume::Resumed;
use crate::store::{RunDetail, StepQuery};
use crate::Hypergraph;

/// `hypergraph runs list`: the newest runs the filters select (50 unless `--limit` says).
pub(crate) async fn list(hg: &Hypergraph, args: ListArgs) -> Result<i32> {
    let runs = hg.store.list_runs(&args.filter.to_filter(50)).await?;
    if args.json.json {
        print_json(&runs);
    } else if runs.is_empty() {
        outln!("no runs match");
    } else {
        out!("{}", render::runs_table(&runs));
    }
    Ok(0)
}

/// `hypergraph runs resume`: the runs given by id, or every run the filters select (failed runs
/// unless `--status` says; all of them unless `--limit` says).
pub(crate) async fn resume(hg: &Hypergraph, args: ResumeArgs) -> Result<i32> {
    let resumed = if args.ids.is_empty() {
        hg.resume_runs(&args.filter.to_filter(0), args.latest)
            .await?
    } else {
        let mut resumed = Vec::with_capacity(args.ids.len());
        for id in &args.ids {
            resumed.push(hg.resume_run(id, args.latest).await?);
        }
        resumed
    };
    print_resumed(&resumed, args.json.json)
}

/// Run `id`, or an error saying there is none.
async fn find_run(hg: &Hypergraph, id: &str) -> Result<RunDetail> {
    match hg.store.run(id).await? {
        Some(run) => Ok(run),
        None => bail!("run `{id}` not found (`hypergraph runs list` shows recent runs)"),
    }
}

/// `hypergraph runs show <id>`.
pub(crate) async fn show(hg: &Hypergraph, args: ShowArgs) -> Result<i32> {
    let query = StepQuery {
        status: args.step_status,
        limit: args.steps,
    };
    let Some(run) = hg.store.run_view(&args.id, &query).await? else {
        bail!(
            "run `{}` not found (`hypergraph runs list` shows recent runs)",
            args.id
        );
    };
    if args.json.json {
        print_json(&render::run_detail_json(&run));
    } else {
        out!("{}", render::run_detail_text(&run));
    }
    Ok(0)
}

/// `hypergraph runs logs <id>`.
pub(crate) async fn logs(hg: &Hypergraph, args: RunIdArgs) -> Result<i32> {
    find_run(hg, &args.id).await?;
    let logs = hg.store.run_logs(&args.id).await?;
    if args.json.json {
        print_json(&logs);
    } else if logs.is_empty() {
        outln!("run {} has no log lines", args.id);
    } else {
        out!("{}", render::logs_text(&logs));
    }
    Ok(0)
}

/// `hypergraph runs export <id>`: writes the run's replay bundle.
pub(crate) async fn export(hg: &Hypergraph, args: ExportArgs) -> Result<i32> {
    let bundle = hg.export_run(&args.id).await?;
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.hgbundle", bundle.run.run_id)));
    bundle::write(&bundle, &path)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if args.json.json {
        print_json(&json!({ "bundle": path, "bytes": bytes, "run_id": bundle.run.run_id }));
    } else {
        outln!(
            "wrote {} ({} KiB): run {} with its component, journals and logs",
            path.display(),
            bytes / 1024,
            bundle.run.run_id
        );
    }
    Ok(0)
}

/// `hypergraph runs cancel <id>`.
pub(crate) async fn cancel(hg: &Hypergraph, args: RunIdArgs) -> Result<i32> {
    let (id, as_json) = (args.id.as_str(), args.json.json);
    let Some(cancelled) = hg.store.cancel_run(id).await? else {
        anyhow::bail!("no run `{id}` (list runs with `hypergraph runs list`)");
    };
    if as_json {
        print_json(
            &json!({ "run_id": id, "cancelled_steps": cancelled.steps, "changed": cancelled.changed }),
        );
    } else if cancelled.changed {
        outln!(
            "cancelled run {id}: {} unfinished step(s) cancelled; running attempts stop within a second",
            cancelled.steps
        );
    } else {
        outln!("run {id} had already finished; nothing changed");
    }
    Ok(0)
}

/// Prints what `runs resume` (or `runs replay --resume`) did.
pub(crate) fn print_resumed(resumed: &[Resumed], as_json: bool) -> Result<i32> {
    if as_json {
        print_json(&resumed);
        return Ok(0);
    }
    if resumed.is_empty() {
        outln!("no runs match");
    }
    for r in resumed {
        let moved: Vec<String> = r
            .moved_to
            .iter()
            .map(|(name, version)| format!("{name} v{version}"))
            .collect();
        let moved = if moved.is_empty() {
            String::new()
        } else {
            format!(" on {}", moved.join(", "))
        };
        outln!(
            "resumed run {}: {} step(s) queued again{moved}; completed steps are reused",
            r.run_id,
            r.steps
        );
    }
    if !resumed.is_empty() {
        outln!("a worker executes them: `hypergraph serve` or `hypergraph worker --until-idle`");
    }
    Ok(0)
}
