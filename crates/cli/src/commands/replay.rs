//! `hypergraph runs replay`, `hypergraph replay <bundle>` and `hypergraph check-upgrade`.

use std::path::PathBuf;

use anyhow::Result;

use super::runs::print_resumed;
use crate::args::{BundleArgs, CheckUpgradeArgs, ReplayArgs};
use crate::bundle;
use crate::engine::{Engine, EngineOptions};
use crate::io::{print_json, read_component};
use crate::render;
use crate::replay::{self, ReplayWith};
use crate::Hypergraph;

/// `hypergraph runs replay <id>`: replays the run against its journal (exit code 1 when it
/// diverges), or with `--resume` re-runs it from its failed steps.
pub(crate) async fn runs_replay(hg: &Hypergraph, args: ReplayArgs) -> Result<i32> {
    if args.resume {
        let resumed = vec![hg.resume_run(&args.id, args.latest).await?];
        return print_resumed(&resumed, args.json.json);
    }
    let with = match (&args.component, args.version) {
        (Some(path), _) => ReplayWith::Component(read_component(path)?),
        (None, Some(version)) => ReplayWith::Version(version),
        (None, None) => ReplayWith::Pinned,
    };
    let report = hg.replay_run(&args.id, &with).await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::replay_text(&report));
    }
    Ok(if report.identical() { 0 } else { 1 })
}

/// Replays a bundle with an engine of its own: no database is opened, nothing is written. The
/// bundle comes from elsewhere: its limits are capped by this host's (`--timeout`, `--memory`).
pub(crate) async fn replay_bundle(cache_dir: &Option<PathBuf>, args: &BundleArgs) -> Result<i32> {
    let mut bundle = bundle::read(&args.bundle)?;
    let capped = replay::cap_limits(&mut bundle.run.policy, args.timeout, args.memory);
    for note in capped {
        eprintln!("note: {note}");
    }
    let engine = Engine::new(EngineOptions {
        cache_dir: cache_dir.clone(),
        ..EngineOptions::default()
    })?;
    let component = match &args.component {
        Some(path) => read_component(path)?,
        None => bundle.component.clone(),
    };
    let prepared = engine.prepare_bytes(&component).await?;
    let report = replay::replay(&engine, &prepared, &bundle.run).await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::replay_text(&report));
    }
    Ok(if report.identical() { 0 } else { 1 })
}

/// `hypergraph check-upgrade <deployment> <component>`: the deploy gate (exit code 1 when a run
/// diverges).
pub(crate) async fn check_upgrade(hg: &Hypergraph, args: CheckUpgradeArgs) -> Result<i32> {
    let bytes = read_component(&args.component)?;
    let report = hg
        .check_upgrade(&args.deployment, &bytes, args.last)
        .await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::upgrade_text(&report));
    }
    Ok(if report.diverged == 0 { 0 } else { 1 })
}
