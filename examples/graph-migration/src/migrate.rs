//! The `migrate` workflow: one child step per hop, so each hop commits on its own.
//!
//! Re-executed from the start on every resume (a child finished, a timer fired, a worker
//! crashed): the `state` read and the hops already done are answered from the journal, so the plan
//! continues at the first hop without a result. A hop's key-value writes and its result commit in
//! one transaction, so a hop this plan saw finish is never applied again by it. A hop applied by
//! *another* plan after this one read the graph's version is found by `apply-hop` through its
//! success audit row and answered `skipped`.

use hypergraph_guest::workflow::{self, ChildError};
use serde::Deserialize;
use serde_json::json;

use crate::schema;
use crate::{HopOutcome, HopResult, Migration, Plan};

/// The child task names: tasks of the deployment this workflow runs in (`graph-migration` unless
/// deployed under another name).
struct Tasks {
    deployment: String,
}

impl Tasks {
    fn of_this_run() -> Self {
        let name = hypergraph_guest::context::task_name();
        let deployment = name
            .split_once('/')
            .map(|(deployment, _)| deployment.to_string())
            .unwrap_or_else(|| "graph-migration".to_string());
        Tasks { deployment }
    }

    fn task(&self, function: &str) -> String {
        format!("{}/{function}", self.deployment)
    }
}

/// The part of `state`'s output (WIT `graph-state`) the workflow needs.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct StateView {
    version: u32,
    summary: String,
}

/// `apply-hop`'s output (WIT `hop-result`; the enum `hop-outcome` is its case name).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct HopView {
    from: u32,
    to: u32,
    outcome: String,
    detail: String,
}

impl From<HopView> for HopResult {
    fn from(hop: HopView) -> Self {
        HopResult {
            from: hop.from,
            to: hop.to,
            outcome: if hop.outcome == "skipped" {
                HopOutcome::Skipped
            } else {
                HopOutcome::Applied
            },
            detail: hop.detail,
        }
    }
}

/// The error a child returned (the string of its `result<_, string>`), else the whole failure.
fn reason(error: &ChildError) -> String {
    error
        .value_as::<String>()
        .filter(|_| error.is_application())
        .unwrap_or_else(|| error.to_string())
}

/// Refuses a plan that cannot be carried out, before any step runs: a graph id that is not one, a
/// target ahead of the plugin, or a target this code does not know (0, or past
/// [`schema::LATEST`]). Nothing is read or written, and the error says so.
fn check_plan(graph: &str, target: u32, plugin: u32) -> Result<(), String> {
    schema::check_graph_id(graph)?;
    if target > plugin {
        return Err(format!(
            "target version {target} is ahead of the plugin (version {plugin}): aborted, graph \
             {graph} was not touched"
        ));
    }
    if target == 0 || target > schema::LATEST {
        return Err(format!(
            "target version {target} is not one this code migrates to (1 to {}): aborted, graph \
             {graph} was not touched",
            schema::LATEST
        ));
    }
    Ok(())
}

/// The workflow `migrate(plan) -> result<migration, string>`.
pub fn run(plan: Plan) -> Result<Migration, String> {
    let Plan {
        graph,
        target_version: target,
        plugin_version: plugin,
        fail_at_hop,
        hop_delay_ms,
    } = plan;
    // Impossible plans abort here, before any step runs: nothing is read or written.
    check_plan(&graph, target, plugin)?;
    let tasks = Tasks::of_this_run();

    let state: StateView = workflow::call(&tasks.task("state"), &json!({ "graph": graph }))
        .map_err(|e| format!("cannot read graph {graph}: {}", reason(&e)))?;
    let from = state.version;
    if from == target {
        hypergraph_guest::info!("graph {graph} is already at version {target}: nothing to do");
        return Ok(Migration {
            graph,
            from,
            to: target,
            hops: Vec::new(),
        });
    }
    if from > target {
        return Err(format!(
            "graph {graph} is at version {from}, past the target {target}: downgrades are not \
             supported"
        ));
    }
    hypergraph_guest::info!(
        "graph {graph}: {} -> version {target}, {} hop(s)",
        state.summary,
        target - from
    );

    let mut hops: Vec<HopResult> = Vec::new();
    for version in from..target {
        let to = version + 1;
        if let Some(ms) = hop_delay_ms.filter(|&ms| ms > 0 && version > from) {
            // A durable pause between hops: no instance is held, and a worker stopped now
            // resumes the plan at this hop.
            workflow::sleep(std::time::Duration::from_millis(u64::from(ms)));
        }
        let input = json!({
            "graph": graph,
            "from": version,
            "to": to,
            "fail": fail_at_hop == Some(to),
        });
        match workflow::call::<_, HopView>(&tasks.task("apply-hop"), &input) {
            Ok(hop) => hops.push(hop.into()),
            Err(error) => {
                let why = reason(&error);
                // The failed hop's own writes were discarded with its attempt: the failure row
                // is written by a step of its own, which commits.
                let record = json!({ "graph": graph, "to": to, "error": why });
                if let Err(e) =
                    workflow::call::<_, serde_json::Value>(&tasks.task("record-failure"), &record)
                {
                    hypergraph_guest::error!("could not record the failure of hop {to}: {e}");
                }
                return Err(format!(
                    "graph {graph}: hop {version} -> {to} failed: {why}. The graph stays at \
                     version {version}; resume this run or run the plan again to go on from there"
                ));
            }
        }
    }
    hypergraph_guest::info!("graph {graph} migrated from version {from} to {target}");
    Ok(Migration {
        graph,
        from,
        to: target,
        hops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_plans_are_refused_before_any_step() {
        assert_eq!(check_plan("team", 3, 5), Ok(()));
        assert_eq!(check_plan("team", 5, 5), Ok(()));
        assert_eq!(
            check_plan("team", 6, 5).unwrap_err(),
            "target version 6 is ahead of the plugin (version 5): aborted, graph team was not \
             touched"
        );
        assert_eq!(
            check_plan("team", 4, 3).unwrap_err(),
            "target version 4 is ahead of the plugin (version 3): aborted, graph team was not \
             touched"
        );
        // A plugin newer than this code does not make its versions reachable.
        assert!(check_plan("team", 6, 9)
            .unwrap_err()
            .starts_with("target version 6 is not one this code migrates to (1 to 5)"));
        assert!(check_plan("team", 0, 5).is_err());
        assert!(check_plan("Team!", 3, 5).is_err());
    }

    #[test]
    fn child_errors_read_as_their_string() {
        let error = ChildError {
            task: "graph-migration/apply-hop".to_string(),
            kind: ChildError::APPLICATION.to_string(),
            message: "the task returned an error".to_string(),
            value: Some(serde_json::json!("graph team is at version 3")),
        };
        assert_eq!(reason(&error), "graph team is at version 3");
        let trap = ChildError {
            kind: "trap".to_string(),
            value: None,
            ..error
        };
        assert_eq!(
            reason(&trap),
            "`graph-migration/apply-hop` failed (trap): the task returned an error"
        );
    }
}
