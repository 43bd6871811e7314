//! Test guest: reads every outside source a task has (clock, random, kv, HTTP), so the host's
//! tests can prove a replay consults none of them.

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:outside/outside",
    path: ["../../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

use std::time::{SystemTime, UNIX_EPOCH};

use hypergraph_guest::{http, kv};

struct Outside;

impl Guest for Outside {
    fn observe(key: String, url: String) -> Observation {
        let wall_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let random = wasi::random::random::get_random_u64();
        let stored = kv::get_string(&key);
        let http = http::get(&url)
            .and_then(|response| Ok((response.status, response.text()?.to_string())))
            .map_err(|e| e.to_string());
        hypergraph_guest::info!("observed {url}: {http:?}");
        Observation {
            wall_seconds,
            random,
            stored,
            http,
        }
    }

    fn remember(key: String, value: String) {
        kv::set_string(&key, &value);
    }

    fn post(url: String, body: String) -> Result<String, String> {
        let response = http::Request::post(&url, body)
            .header("content-type", "text/plain")
            .send()
            .map_err(|e| e.to_string())?;
        Ok(response.text().map_err(|e| e.to_string())?.to_string())
    }
}

export!(Outside);
