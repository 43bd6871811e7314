//! Example workflow: a durable multi-hop schema migration of graph documents in key-value storage.
//!
//! `apply-hop` migrates one graph by one version and writes the new version, the new data and
//! the hop's audit row in one attempt, so they commit together (and not at all if the hop fails);
//! `migrate` is the workflow that runs one `apply-hop` child per hop, so every hop commits on its
//! own and a crash mid-plan keeps the hops before it. See README.md.

// The generated export glue of functions with many (flattened) parameters.
#![allow(clippy::too_many_arguments)]

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-examples:graph-migration/graph-migration",
    path: ["../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
        "hypergraph:workflow/workflow@0.1.0": hypergraph_guest::bindings::workflow,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

pub mod migrate;
pub mod schema;

use hypergraph_guest::{context, kv};
use serde_json::Value;

use schema::{AuditRecord, Status};

impl From<Status> for AuditStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => AuditStatus::Success,
            Status::Failed => AuditStatus::Failed,
        }
    }
}

/// The stored version of `graph`, or none when it was never seeded.
fn stored_version(graph: &str) -> Result<Option<u32>, String> {
    match kv::get_string(&schema::version_key(graph)) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("graph {graph}: the stored version {text:?} is not a number")),
    }
}

/// The stored document of `graph`.
fn stored_data(graph: &str) -> Result<Value, String> {
    let text = kv::get_string(&schema::data_key(graph))
        .ok_or_else(|| format!("graph {graph} has a version but no data"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("graph {graph}: the stored data is not JSON: {e}"))
}

/// The audit record of the hop of `graph` to `to`, if any.
fn stored_audit(graph: &str, to: u32) -> Result<Option<AuditRecord>, String> {
    kv::get_string(&schema::audit_key(graph, to))
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                format!("graph {graph}: the audit row of version {to} is unreadable: {e}")
            })
        })
        .transpose()
}

fn write_audit(graph: &str, to: u32, record: &AuditRecord) {
    let text = serde_json::to_string(record).expect("an audit record serializes");
    kv::set_string(&schema::audit_key(graph, to), &text);
}

fn audit_row(to: u32, record: AuditRecord) -> AuditRow {
    AuditRow {
        to,
        status: record.status.into(),
        detail: record.detail,
        run_id: record.run_id,
        history: record.history,
    }
}

/// The graph as stored, with its audit rows in version order.
fn read_state(graph: &str) -> Result<GraphState, String> {
    schema::check_graph_id(graph)?;
    let version = stored_version(graph)?.ok_or_else(|| {
        format!("graph {graph} does not exist: seed it first (graph-migration/seed)")
    })?;
    let data = stored_data(graph)?;
    let mut audits = Vec::new();
    for key in kv::list_keys(&schema::audit_prefix(graph)) {
        let Some(to) = key.rsplit('/').next().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(record) = stored_audit(graph, to)? {
            audits.push(audit_row(to, record));
        }
    }
    // Keys come in byte order ("10" before "2"): order by version.
    audits.sort_by_key(|row| row.to);
    Ok(GraphState {
        graph: graph.to_string(),
        version,
        summary: schema::summary(version, &data),
        data: data.to_string(),
        audits,
    })
}

struct GraphMigration;

impl Guest for GraphMigration {
    fn seed(graph: String, version: u32, data: Option<String>) -> Result<GraphState, String> {
        schema::check_graph_id(&graph)?;
        let doc = match &data {
            Some(text) => {
                let doc: Value =
                    serde_json::from_str(text).map_err(|e| format!("data is not JSON: {e}"))?;
                schema::validate(version, &doc)
                    .map_err(|e| format!("data is not a version {version} document: {e}"))?;
                doc
            }
            None => schema::sample_at(version)?,
        };
        let stale = kv::list_keys(&schema::audit_prefix(&graph));
        for key in &stale {
            kv::delete(key);
        }
        kv::set_string(&schema::version_key(&graph), &version.to_string());
        kv::set_string(&schema::data_key(&graph), &doc.to_string());
        hypergraph_guest::info!(
            "seeded graph {graph}: {} ({} audit rows deleted)",
            schema::summary(version, &doc),
            stale.len()
        );
        read_state(&graph)
    }

    fn apply_hop(graph: String, from: u32, to: u32, fail: bool) -> Result<HopResult, String> {
        schema::check_graph_id(&graph)?;
        if to != from + 1 {
            return Err(format!(
                "a hop goes from one version to the next, not {from} -> {to}"
            ));
        }
        // Idempotence: a hop whose audit row says success was applied, by another plan on the
        // same graph that got there first, and is not applied again. (This plan's own earlier
        // attempts cannot have committed: a failed attempt's writes are discarded, and a
        // succeeded one ends the step.) Two plans whose hops run at the same moment are not
        // serialized: key-value writes are last-writer-wins, see README.md.
        let previous = stored_audit(&graph, to)?;
        if let Some(record) = previous.as_ref().filter(|r| r.status == Status::Success) {
            hypergraph_guest::info!(
                "graph {graph}: hop {from} -> {to} already applied (run {}), skipped",
                record.run_id
            );
            return Ok(HopResult {
                from,
                to,
                outcome: HopOutcome::Skipped,
                detail: format!("already applied: {}", record.detail),
            });
        }
        let version = stored_version(&graph)?
            .ok_or_else(|| format!("graph {graph} does not exist: seed it first"))?;
        if version != from {
            return Err(format!(
                "graph {graph} is at version {version}, but this hop migrates from version {from}"
            ));
        }
        let data = schema::upgrade(from, &stored_data(&graph)?)
            .map_err(|e| format!("graph {graph}: hop {from} -> {to}: {e}"))?;
        let detail = schema::summary(to, &data);

        // Version, data and audit row: buffered by this attempt, committed together with its
        // successful result, discarded if it fails.
        kv::set_string(&schema::version_key(&graph), &to.to_string());
        kv::set_string(&schema::data_key(&graph), &data.to_string());
        let record =
            AuditRecord::replacing(previous, Status::Success, detail.clone(), context::run_id());
        write_audit(&graph, to, &record);

        let attempt = context::attempt();
        if fail && attempt == 1 {
            // A transient failure on purpose, after the writes: none of them commits, as `state`
            // shows. A later attempt of this step (a retry, or `hypergraph runs resume`) goes on.
            hypergraph_guest::warn!(
                "graph {graph}: hop {from} -> {to} fails on purpose on attempt 1 (fail-at-hop)"
            );
            return Err(format!(
                "fail-at-hop = {to}: the hop failed on purpose (attempt 1 only) after writing \
                 version {to}, its data and its audit row, and none of these writes is kept"
            ));
        }
        hypergraph_guest::info!(
            "graph {graph}: hop {from} -> {to} applied (attempt {attempt}): {detail}"
        );
        Ok(HopResult {
            from,
            to,
            outcome: HopOutcome::Applied,
            detail,
        })
    }

    fn record_failure(graph: String, to: u32, error: String) -> AuditRow {
        let previous = match stored_audit(&graph, to) {
            Ok(previous) => previous,
            Err(unreadable) => {
                hypergraph_guest::warn!("{unreadable}; replacing it");
                None
            }
        };
        if let Some(record) = previous.clone().filter(|r| r.status == Status::Success) {
            // A success is never overwritten by a failure record.
            hypergraph_guest::warn!(
                "graph {graph}: hop to {to} already succeeded; failure not recorded: {error}"
            );
            return audit_row(to, record);
        }
        let record = AuditRecord::replacing(previous, Status::Failed, error, context::run_id());
        write_audit(&graph, to, &record);
        hypergraph_guest::error!("graph {graph}: hop to {to} failed: {}", record.detail);
        audit_row(to, record)
    }

    fn state(graph: String) -> Result<GraphState, String> {
        read_state(&graph)
    }

    fn migrate(plan: Plan) -> Result<Migration, String> {
        migrate::run(plan)
    }
}

export!(GraphMigration);
