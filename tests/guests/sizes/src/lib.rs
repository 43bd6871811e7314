//! Test guest: asks the host to keep hostile amounts of data (log lines, outputs, key-value
//! writes), so the host's tests can show its limits hold and its memory stays bounded.

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:sizes/sizes",
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

use hypergraph_guest::kv;

struct Sizes;

impl Guest for Sizes {
    fn log_line(bytes: u32) {
        hypergraph_guest::info!("{}", "x".repeat(bytes as usize));
    }

    fn big_output(bytes: u32) -> String {
        "y".repeat(bytes as usize)
    }

    fn kv_flood(count: u32, size: u32) -> u32 {
        let value = vec![7u8; size as usize];
        for i in 0..count {
            kv::set(&format!("flood/{i}"), &value);
        }
        count
    }

    fn measure(text: String) -> u32 {
        text.len() as u32
    }
}

export!(Sizes);
