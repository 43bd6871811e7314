//! Test guest: workflows (fan-out, chains, durable sleep, events) and the children they run.

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:flow/flow",
    path: ["../../../wit", "wit"],
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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hypergraph_guest::{context, kv, workflow};
use serde::Serialize;

struct Flow;

/// The input of a `work` child, keyed by parameter name.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Work {
    key: String,
    n: u32,
    sleep_ms: u32,
    fail_attempts: u32,
}

/// The input of a `fan-out` child workflow.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct FanOut {
    prefix: String,
    n: u32,
    sleep_ms: u32,
    fail_index: Option<u32>,
}

fn executions_key(key: &str) -> String {
    format!("executions/{key}")
}

fn read_count(key: &str) -> u32 {
    kv::get_string(&executions_key(key))
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Guest for Flow {
    fn work(key: String, n: u32, sleep_ms: u32, fail_attempts: u32) -> Result<u32, Failure> {
        kv::set_string(&executions_key(&key), &(read_count(&key) + 1).to_string());
        if sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(u64::from(sleep_ms)));
        }
        let attempt = context::attempt();
        if attempt <= fail_attempts {
            return Err(Failure::Retryable(format!(
                "{key} fails on attempt {attempt} of its first {fail_attempts}"
            )));
        }
        Ok(n * 2)
    }

    fn broken(n: u32) -> Result<u32, Failure> {
        Err(Failure::Fatal(format!("broken child {n}")))
    }

    fn add(left: u32, right: u32) -> u32 {
        left + right
    }

    fn report(failures: Vec<(String, String)>) -> String {
        kv::set_string(&executions_key("report"), &(read_count("report") + 1).to_string());
        let lines: Vec<String> = failures
            .iter()
            .map(|(step, error)| format!("{step}: {error}"))
            .collect();
        lines.join("\n")
    }

    fn executions(key: String) -> u32 {
        read_count(&key)
    }

    fn fan_out(prefix: String, n: u32, sleep_ms: u32, fail_index: Option<u32>) -> Vec<Result<u32, String>> {
        let inputs = (0..n).map(|i| Work {
            key: format!("{prefix}/{i}"),
            n: i,
            sleep_ms,
            fail_attempts: u32::from(fail_index == Some(i)),
        });
        let task = format!("{}/work", deployment());
        let children = workflow::start_all(&task, inputs).expect("children start");
        workflow::join::<u32>(&children)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    fn strict(prefix: String, n: u32, fail_index: u32, fail_attempts: u32) -> Result<u32, String> {
        let inputs = (0..n).map(|i| Work {
            key: format!("{prefix}/{i}"),
            n: i,
            sleep_ms: 0,
            fail_attempts: if i == fail_index { fail_attempts } else { 0 },
        });
        let task = format!("{}/work", deployment());
        let children = workflow::start_all(&task, inputs).map_err(|e| e.to_string())?;
        let mut total = 0;
        for result in workflow::join::<u32>(&children) {
            total += result.map_err(|e| e.to_string())?;
        }
        Ok(total)
    }

    fn chain(prefix: String, n: u32, sleep_ms: Option<u32>) -> u32 {
        let task = format!("{}/work", deployment());
        let mut total = 0;
        for i in 0..n {
            let input = Work {
                key: format!("{prefix}/{i}"),
                n: i,
                sleep_ms: sleep_ms.unwrap_or(0),
                fail_attempts: 0,
            };
            total += workflow::call::<_, u32>(&task, &input).expect("child succeeds");
        }
        total
    }

    fn recurse(depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        let task = format!("{}/recurse", deployment());
        workflow::call::<_, u32>(&task, &(depth - 1)).expect("the deeper call succeeds") + 1
    }

    fn nap(ms: u64) -> u64 {
        let before = now_millis();
        workflow::sleep(Duration::from_millis(ms));
        now_millis() - before
    }

    fn await_event(name: String, timeout_ms: Option<u64>) -> Option<String> {
        workflow::wait_event::<serde_json::Value>(&name, timeout_ms.map(Duration::from_millis))
            .map(|payload| payload.map(|v| v.to_string()).unwrap_or_else(|e| e.to_string()))
    }

    fn mixed(prefix: String) -> Vec<Result<u32, String>> {
        let deployment = deployment();
        let broken = workflow::start(&format!("{deployment}/broken"), &7u32).expect("starts");
        let work = workflow::start(
            &format!("{deployment}/work"),
            &Work {
                key: format!("{prefix}/ok"),
                n: 21,
                sleep_ms: 0,
                fail_attempts: 0,
            },
        )
        .expect("starts");
        workflow::join::<u32>(&[broken, work])
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    fn hasty(prefix: String, sleep_ms: u32) -> Result<u32, String> {
        let deployment = deployment();
        let input = FanOut {
            prefix: prefix.clone(),
            n: 2,
            sleep_ms,
            fail_index: None,
        };
        workflow::start(&format!("{deployment}/fan-out"), &input).map_err(|e| e.to_string())?;
        workflow::wait_event::<serde_json::Value>(&format!("go-{prefix}"), None);
        workflow::call::<_, u32>(&format!("{deployment}/broken"), &1u32).map_err(|e| e.to_string())
    }
}

/// This workflow's own deployment, so children run in the same deployment whatever its name.
fn deployment() -> String {
    let task = context::task_name();
    task.split('/').next().unwrap_or_default().to_string()
}

export!(Flow);
