//! `hypergraph deploy` and `hypergraph tasks`.

use anyhow::{Context as _, Result};

use crate::args::{DeployArgs, JsonFlag};
use crate::io::print_json;
use crate::render;
use crate::retry::RetryPolicy;
use crate::store::Policy;
use crate::Hypergraph;

/// `hypergraph deploy <file>`: a component, or a DAG workflow file (`.toml`), with the policy
/// the flags set.
pub(crate) async fn deploy(hg: &Hypergraph, args: DeployArgs) -> Result<i32> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read component file `{}`", args.file.display()))?;
    let policy = Policy {
        memory_limit_bytes: args.memory,
        timeout_ms: args.timeout.map(|d| d.as_millis() as u64),
        max_log_lines: args.max_log_lines,
        max_log_line_bytes: args.max_log_line,
        max_log_bytes: args.max_log_bytes,
        max_input_bytes: args.max_input,
        max_output_bytes: args.max_output,
        max_kv_write_bytes: args.max_kv_write,
        max_lost_leases: args.max_lost_leases,
        http_allow: args.allow_http,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            backoff: args.backoff,
            max_backoff: args.max_backoff,
            retry_on: args.retry_on,
        },
        schedule_to_start_ms: args.schedule_to_start.map(|d| d.as_millis() as u64),
        run_timeout_ms: args.run_timeout.map(|d| d.as_millis() as u64),
    };
    let is_dag = args.file.extension().is_some_and(|e| e == "toml");
    let report = if is_dag {
        let text = String::from_utf8(bytes).context("a DAG file must be UTF-8 text")?;
        hg.deploy_dag(args.name.as_deref(), &text, &policy).await
    } else {
        let name = args
            .name
            .as_deref()
            .context("--name is required for a component: tasks are named `<name>/<function>`")?;
        hg.deploy(name, &bytes, &policy).await
    }
    .with_context(|| format!("cannot deploy `{}`", args.file.display()))?;
    if args.json.json {
        print_json(&report);
        return Ok(0);
    }
    let d = &report.deployment;
    if report.created {
        outln!(
            "deployed {} version {} (digest {})",
            d.name,
            d.version,
            render::short_digest(&d.digest)
        );
    } else {
        outln!(
            "{} version {} already has this component and policy; nothing changed",
            d.name,
            d.version
        );
    }
    out!("{}", render::tasks_table(&report.tasks));
    Ok(0)
}

/// `hypergraph tasks`.
pub(crate) async fn tasks(hg: &Hypergraph, args: JsonFlag) -> Result<i32> {
    let tasks = hg.tasks().await?;
    if args.json {
        print_json(&tasks);
    } else if tasks.is_empty() {
        outln!("no tasks deployed yet: hypergraph deploy <file.wasm> --name <name>");
    } else {
        out!("{}", render::tasks_table(&tasks));
    }
    Ok(0)
}
