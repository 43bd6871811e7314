//! The graph documents, their schema versions and the hop from each version to the next; the
//! key-value layout and audit records. No host calls here, so it is unit-tested on the build
//! machine (`cargo test --lib`).
//!
//! | version | document |
//! | --- | --- |
//! | 1 | `{"nodes": ["api", ...], "edges": [["api", "users"], ...]}` (repeated edges allowed) |
//! | 2 | `"schema": 2`; nodes become `{"id", "label"}` |
//! | 3 | edges become `{"from", "to", "weight"}`: repeats merged, weight = count, sorted |
//! | 4 | nodes get their `degree` (sum of the weights of their edges); `"meta": {"nodes", "edges", "weight"}` |
//! | 5 | nodes become an object keyed by id, `{"name", "degree"}` (`label` renamed `name`) |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The newest schema version this code can migrate to.
pub const LATEST: u32 = 5;

// ---------------------------------------------------------------------------------------------
// key-value layout

/// Checks a graph id: 1 to 64 lower-case letters, digits, `-` or `_` (it is part of keys).
pub fn check_graph_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid graph id {id:?}: use 1 to 64 lower-case letters, digits, `-` or `_`"
        ))
    }
}

/// `graph/<id>/version`.
pub fn version_key(id: &str) -> String {
    format!("graph/{id}/version")
}

/// `graph/<id>/data`.
pub fn data_key(id: &str) -> String {
    format!("graph/{id}/data")
}

/// `audit/<id>/` (the prefix of the graph's audit rows).
pub fn audit_prefix(id: &str) -> String {
    format!("audit/{id}/")
}

/// `audit/<id>/<to>`.
pub fn audit_key(id: &str, to: u32) -> String {
    format!("audit/{id}/{to}")
}

// ---------------------------------------------------------------------------------------------
// audit records

/// How a hop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Success,
    Failed,
}

/// The value stored under `audit/<id>/<to>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuditRecord {
    pub status: Status,
    pub detail: String,
    pub run_id: String,
    /// Earlier records of the same hop, oldest first.
    #[serde(default)]
    pub history: Vec<String>,
}

impl AuditRecord {
    /// A new record that keeps `previous` (if any) in its history.
    pub fn replacing(
        previous: Option<AuditRecord>,
        status: Status,
        detail: String,
        run_id: String,
    ) -> AuditRecord {
        let history = match previous {
            Some(previous) => {
                let mut history = previous.history;
                let status = match previous.status {
                    Status::Success => "success",
                    Status::Failed => "failed",
                };
                history.push(format!(
                    "{status}: {} (run {})",
                    previous.detail, previous.run_id
                ));
                history
            }
            None => Vec::new(),
        };
        AuditRecord {
            status,
            detail,
            run_id,
            history,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// documents

/// The sample graph, at version 1: a few services and who calls whom (one call is listed twice).
pub fn sample() -> Value {
    json!({
        "nodes": ["api", "billing", "invoices", "search", "users"],
        "edges": [
            ["api", "users"],
            ["api", "billing"],
            ["billing", "invoices"],
            ["billing", "users"],
            ["search", "users"],
            ["api", "billing"]
        ]
    })
}

/// The sample graph migrated to `version`.
pub fn sample_at(version: u32) -> Result<Value, String> {
    check_version(version)?;
    let mut doc = sample();
    for from in 1..version {
        doc = upgrade(from, &doc)?;
    }
    Ok(doc)
}

fn check_version(version: u32) -> Result<(), String> {
    if (1..=LATEST).contains(&version) {
        Ok(())
    } else {
        Err(format!(
            "unknown schema version {version}: versions are 1 to {LATEST}"
        ))
    }
}

fn field<'a>(doc: &'a Value, path: &str, key: &str) -> Result<&'a Value, String> {
    doc.get(key)
        .ok_or_else(|| format!("{path}: missing `{key}`"))
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, String> {
    match value.as_str() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!(
            "{path}: expected a non-empty string, found {value}"
        )),
    }
}

fn array<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{path}: expected an array, found {value}"))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{path}: expected an object, found {value}"))
}

fn number(value: &Value, path: &str) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{path}: expected a non-negative integer, found {value}"))
}

/// The keys of `object` must be exactly `keys`.
fn exact_keys(object: &Map<String, Value>, path: &str, keys: &[&str]) -> Result<(), String> {
    for key in keys {
        if !object.contains_key(*key) {
            return Err(format!("{path}: missing `{key}`"));
        }
    }
    if let Some(extra) = object.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!("{path}: unexpected `{extra}`"));
    }
    Ok(())
}

/// The node ids of a document of `version` (checking the nodes' shape).
fn node_ids(version: u32, doc: &Value) -> Result<Vec<String>, String> {
    let nodes = field(doc, "$", "nodes")?;
    let mut ids = Vec::new();
    if version >= 5 {
        for (id, node) in object(nodes, "$.nodes")? {
            let path = format!("$.nodes.{id}");
            exact_keys(object(node, &path)?, &path, &["name", "degree"])?;
            string(&node["name"], &format!("{path}.name"))?;
            number(&node["degree"], &format!("{path}.degree"))?;
            ids.push(id.clone());
        }
    } else {
        for (i, node) in array(nodes, "$.nodes")?.iter().enumerate() {
            let path = format!("$.nodes[{i}]");
            if version == 1 {
                ids.push(string(node, &path)?.to_string());
                continue;
            }
            let keys: &[&str] = if version >= 4 {
                &["id", "label", "degree"]
            } else {
                &["id", "label"]
            };
            exact_keys(object(node, &path)?, &path, keys)?;
            string(&node["label"], &format!("{path}.label"))?;
            if version >= 4 {
                number(&node["degree"], &format!("{path}.degree"))?;
            }
            ids.push(string(&node["id"], &format!("{path}.id"))?.to_string());
        }
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(format!("$.nodes: node `{dup}` appears twice"));
    }
    Ok(ids)
}

/// The edges of a document of `version` as (from, to, weight), checking their shape and that
/// they join known nodes.
fn edges(version: u32, doc: &Value, ids: &[String]) -> Result<Vec<(String, String, u64)>, String> {
    let known = |id: &str, path: &str| -> Result<String, String> {
        if ids.iter().any(|n| n == id) {
            Ok(id.to_string())
        } else {
            Err(format!("{path}: unknown node `{id}`"))
        }
    };
    let mut edges = Vec::new();
    for (i, edge) in array(field(doc, "$", "edges")?, "$.edges")?
        .iter()
        .enumerate()
    {
        let path = format!("$.edges[{i}]");
        if version <= 2 {
            let pair = array(edge, &path)?;
            if pair.len() != 2 {
                return Err(format!("{path}: expected [from, to], found {edge}"));
            }
            let from = known(string(&pair[0], &format!("{path}[0]"))?, &path)?;
            let to = known(string(&pair[1], &format!("{path}[1]"))?, &path)?;
            edges.push((from, to, 1));
        } else {
            let fields = object(edge, &path)?;
            exact_keys(fields, &path, &["from", "to", "weight"])?;
            let from = known(string(&fields["from"], &format!("{path}.from"))?, &path)?;
            let to = known(string(&fields["to"], &format!("{path}.to"))?, &path)?;
            let weight = number(&fields["weight"], &format!("{path}.weight"))?;
            if weight == 0 {
                return Err(format!("{path}.weight: must be at least 1"));
            }
            edges.push((from, to, weight));
        }
    }
    Ok(edges)
}

/// Checks that `doc` is a document of schema `version`; the error names the JSON path.
pub fn validate(version: u32, doc: &Value) -> Result<(), String> {
    check_version(version)?;
    let top = object(doc, "$")?;
    let keys: &[&str] = match version {
        1 => &["nodes", "edges"],
        2 | 3 => &["schema", "nodes", "edges"],
        _ => &["schema", "nodes", "edges", "meta"],
    };
    exact_keys(top, "$", keys)?;
    if version >= 2 && top["schema"].as_u64() != Some(u64::from(version)) {
        return Err(format!(
            "$.schema: expected {version}, found {} (this is not a version {version} document)",
            top["schema"]
        ));
    }
    let ids = node_ids(version, doc)?;
    let edges = edges(version, doc, &ids)?;
    if version >= 3 {
        let mut pairs = BTreeSet::new();
        if let Some((from, to, _)) = edges.iter().find(|(f, t, _)| !pairs.insert((f, t))) {
            return Err(format!("$.edges: the edge {from} -> {to} appears twice"));
        }
    }
    if version >= 4 {
        let meta = object(&top["meta"], "$.meta")?;
        exact_keys(meta, "$.meta", &["nodes", "edges", "weight"])?;
        let expected = meta_of(ids.len(), &edges);
        if Value::Object(meta.clone()) != expected {
            return Err(format!(
                "$.meta: expected {expected}, found {}",
                top["meta"]
            ));
        }
    }
    Ok(())
}

fn meta_of(nodes: usize, edges: &[(String, String, u64)]) -> Value {
    json!({
        "nodes": nodes,
        "edges": edges.len(),
        "weight": edges.iter().map(|e| e.2).sum::<u64>(),
    })
}

fn label(id: &str) -> String {
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Transforms a valid document of version `from` into one of version `from + 1` (and checks
/// both).
pub fn upgrade(from: u32, doc: &Value) -> Result<Value, String> {
    validate(from, doc).map_err(|e| format!("not a valid version {from} document: {e}"))?;
    let to = from + 1;
    check_version(to)?;
    let ids = node_ids(from, doc)?;
    let edges = edges(from, doc, &ids)?;
    let next = match from {
        1 => json!({
            "schema": 2,
            "nodes": ids.iter().map(|id| json!({ "id": id, "label": label(id) })).collect::<Vec<_>>(),
            "edges": doc["edges"].clone(),
        }),
        2 => {
            let mut merged: BTreeMap<(String, String), u64> = BTreeMap::new();
            for (from, to, weight) in edges {
                *merged.entry((from, to)).or_default() += weight;
            }
            json!({
                "schema": 3,
                "nodes": doc["nodes"].clone(),
                "edges": merged
                    .into_iter()
                    .map(|((from, to), weight)| json!({ "from": from, "to": to, "weight": weight }))
                    .collect::<Vec<_>>(),
            })
        }
        3 => {
            let degree = |id: &str| -> u64 {
                edges
                    .iter()
                    .filter(|(f, t, _)| f == id || t == id)
                    .map(|e| e.2)
                    .sum()
            };
            let nodes: Vec<Value> = array(&doc["nodes"], "$.nodes")?
                .iter()
                .map(|n| {
                    let id = n["id"].as_str().unwrap_or_default();
                    json!({ "id": id, "label": n["label"], "degree": degree(id) })
                })
                .collect();
            json!({
                "schema": 4,
                "nodes": nodes,
                "edges": doc["edges"].clone(),
                "meta": meta_of(ids.len(), &edges),
            })
        }
        4 => {
            let nodes: Map<String, Value> = array(&doc["nodes"], "$.nodes")?
                .iter()
                .map(|n| {
                    let id = n["id"].as_str().unwrap_or_default().to_string();
                    (id, json!({ "name": n["label"], "degree": n["degree"] }))
                })
                .collect();
            json!({
                "schema": 5,
                "nodes": nodes,
                "edges": doc["edges"].clone(),
                "meta": doc["meta"].clone(),
            })
        }
        _ => return Err(format!("no migration from version {from}")),
    };
    validate(to, &next)
        .map_err(|e| format!("the migration to version {to} produced an invalid document: {e}"))?;
    Ok(next)
}

/// One line about a valid document: `v3: 5 nodes, 5 weighted edges`.
pub fn summary(version: u32, doc: &Value) -> String {
    let nodes = doc["nodes"]
        .as_array()
        .map(Vec::len)
        .or_else(|| doc["nodes"].as_object().map(Map::len))
        .unwrap_or(0);
    let edges = doc["edges"].as_array().map(Vec::len).unwrap_or(0);
    let kind = if version >= 3 {
        "weighted edges"
    } else {
        "edges"
    };
    format!("v{version}: {nodes} nodes, {edges} {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_migrates_through_every_version() {
        let mut doc = sample();
        validate(1, &doc).unwrap();
        for from in 1..LATEST {
            doc = upgrade(from, &doc).unwrap();
            validate(from + 1, &doc).unwrap();
            // A document is valid for its own version only.
            assert!(
                validate(from, &doc).is_err(),
                "v{} doc passed as v{from}",
                from + 1
            );
        }
        assert_eq!(
            doc,
            json!({
                "schema": 5,
                "nodes": {
                    "api": {"name": "Api", "degree": 3},
                    "billing": {"name": "Billing", "degree": 4},
                    "invoices": {"name": "Invoices", "degree": 1},
                    "search": {"name": "Search", "degree": 1},
                    "users": {"name": "Users", "degree": 3}
                },
                "edges": [
                    {"from": "api", "to": "billing", "weight": 2},
                    {"from": "api", "to": "users", "weight": 1},
                    {"from": "billing", "to": "invoices", "weight": 1},
                    {"from": "billing", "to": "users", "weight": 1},
                    {"from": "search", "to": "users", "weight": 1}
                ],
                "meta": {"nodes": 5, "edges": 5, "weight": 6}
            })
        );
        assert_eq!(summary(5, &doc), "v5: 5 nodes, 5 weighted edges");
        assert_eq!(sample_at(5).unwrap(), doc);
        assert_eq!(summary(1, &sample()), "v1: 5 nodes, 6 edges");
    }

    #[test]
    fn invalid_documents_are_refused_with_a_path() {
        let err = |version, doc: Value| validate(version, &doc).unwrap_err();
        assert_eq!(err(1, json!({"nodes": ["a"]})), "$: missing `edges`");
        assert_eq!(
            err(1, json!({"nodes": ["a", 3], "edges": []})),
            "$.nodes[1]: expected a non-empty string, found 3"
        );
        assert_eq!(
            err(1, json!({"nodes": ["a"], "edges": [["a", "b"]]})),
            "$.edges[0]: unknown node `b`"
        );
        assert_eq!(
            err(2, json!({"schema": 3, "nodes": [], "edges": []})),
            "$.schema: expected 2, found 3 (this is not a version 2 document)"
        );
        assert!(err(6, json!({})).starts_with("unknown schema version 6"));
        assert!(upgrade(LATEST, &sample_at(LATEST).unwrap()).is_err());
        assert!(upgrade(2, &sample())
            .unwrap_err()
            .starts_with("not a valid version 2 document"));
    }

    #[test]
    fn graph_ids_are_safe_in_keys() {
        assert!(check_graph_id("team-graph_2").is_ok());
        for bad in ["", "a/b", "Upper", &"x".repeat(65)] {
            assert!(check_graph_id(bad).is_err(), "{bad}");
        }
        assert_eq!(audit_key("g", 3), "audit/g/3");
    }

    #[test]
    fn audit_records_keep_their_history() {
        let failed = AuditRecord::replacing(None, Status::Failed, "boom".into(), "r1".into());
        let ok = AuditRecord::replacing(Some(failed), Status::Success, "v3".into(), "r2".into());
        assert_eq!(ok.history, ["failed: boom (run r1)"]);
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["status"], "success");
        assert_eq!(json["run-id"], "r2");
    }
}
