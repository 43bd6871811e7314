//! The Rust reference of the polyglot benchmark and tests: a static counter.

use std::sync::atomic::{AtomicU32, Ordering};

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:rust-bump/rust-bump",
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

static COUNT: AtomicU32 = AtomicU32::new(0);

struct Bump;

impl Guest for Bump {
    fn bump() -> u32 {
        COUNT.fetch_add(1, Ordering::Relaxed) + 1
    }
}

export!(Bump);
