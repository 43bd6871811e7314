//! `hypergraph workers list`: the worker processes using the database.

use anyhow::Result;

use crate::args::WorkersListArgs;
use crate::io::print_json;
use crate::render;
use crate::Hypergraph;

/// `hypergraph workers list`: the workers seen within `--since` (and any still holding a
/// step), newest first, with their state, held steps and recent completions.
pub(crate) async fn list(hg: &Hypergraph, args: WorkersListArgs) -> Result<i32> {
    let workers = hg.store.workers(args.since).await?;
    if args.json.json {
        print_json(&workers);
    } else if workers.is_empty() {
        outln!(
            "no worker seen in the last {} (`hypergraph serve` starts one)",
            humantime::format_duration(args.since)
        );
    } else {
        out!(
            "{}",
            render::workers_text(&workers, crate::store::now_micros())
        );
    }
    Ok(0)
}
