//! `hypergraph build` and `hypergraph new`: task projects.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::args::{BuildArgs, NewArgs};
use crate::builder::{build_guest, BuildOptions};
use crate::io::print_json;

/// `hypergraph build <dir>`: builds the task project and prints the component's path.
pub(crate) fn build(args: &BuildArgs) -> Result<i32> {
    let started = Instant::now();
    let output = build_guest(
        &args.dir,
        &BuildOptions {
            release: !args.debug,
            features: args.features.clone(),
            language: args.language,
            ..BuildOptions::default()
        },
    )?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    if args.json.json {
        print_json(
            &json!({ "component": output, "bytes": size, "seconds": started.elapsed().as_secs_f64() }),
        );
    } else {
        outln!("{}", output.display());
        if std::io::stderr().is_terminal() {
            eprintln!(
                "built in {:.1} s ({} KiB); deploy it with: hypergraph deploy {} --name <name>",
                started.elapsed().as_secs_f64(),
                size / 1024,
                output.display()
            );
        }
    }
    Ok(0)
}

/// `hypergraph new <language> <dir>`: creates a task (or workflow) project.
pub(crate) fn new_project(args: &NewArgs) -> Result<i32> {
    let project = crate::builder::scaffold::new_project(args.language, &args.dir, args.workflow)?;
    let dir = args.dir.display();
    outln!(
        "created {} {} project `{}` in {dir}",
        args.language,
        if args.workflow { "workflow" } else { "task" },
        project.name
    );
    for file in project
        .files
        .iter()
        .filter(|f| !f.starts_with(".hypergraph"))
    {
        outln!("  {}", file.display());
    }
    outln!("next:");
    outln!(
        "  hypergraph deploy \"$(hypergraph build {dir})\" --name {}",
        project.name
    );
    outln!(
        "  hypergraph run {}/greet --input '\"Ada\"' --wait",
        project.name
    );
    Ok(0)
}
