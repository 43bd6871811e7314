//! Test guest: counters and notes in the key-value store.

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:kv-counter/kv-counter",
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

struct Counter;

fn bump_counter(key: &str) -> u64 {
    let current = kv::get(key)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let next = current + 1;
    kv::set(key, &next.to_le_bytes());
    // Read-your-writes within the attempt.
    assert_eq!(kv::get(key), Some(next.to_le_bytes().to_vec()));
    next
}

impl Guest for Counter {
    fn bump(key: String) -> u64 {
        bump_counter(&key)
    }

    fn bump_then_fail(key: String) -> Result<u64, String> {
        let n = bump_counter(&key);
        Err(format!("failing after bumping `{key}` to {n}"))
    }

    fn bump_then_panic(key: String) -> u64 {
        let n = bump_counter(&key);
        panic!("panicking after bumping `{key}` to {n}")
    }

    fn put(key: String, note: String) {
        kv::set_string(&key, &note);
    }

    fn read(key: String) -> Option<String> {
        kv::get_string(&key)
    }

    fn forget(key: String) {
        kv::delete(&key);
    }

    fn keys(prefix: String) -> Vec<String> {
        kv::list_keys(&prefix)
    }
}

export!(Counter);
