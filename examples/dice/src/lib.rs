//! Example task: roll dice, reading the wall clock, the monotonic clock and random numbers.
//!
//! Plain `std::time` and `getrandom` are all it takes: on wasm32-wasip2 they call the WASI
//! interfaces the host serves, and the host journals every value, so a replay returns the same
//! roll.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-examples:dice/dice",
    path: ["../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

struct Dice;

impl Guest for Dice {
    fn roll(count: u8, sides: u8) -> Result<Roll, String> {
        if !(1..=100).contains(&count) {
            return Err(format!("count must be between 1 and 100, got {count}"));
        }
        if sides < 2 {
            return Err(format!("a die needs at least 2 sides, got {sides}"));
        }
        let started = Instant::now();
        let rolled_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("wall clock before 1970: {e}"))?
            .as_millis() as u64;
        let dice = (0..count)
            .map(|_| die(sides))
            .collect::<Result<Vec<u8>, String>>()?;
        let nonce = getrandom::u64().map_err(|e| format!("no random numbers: {e}"))?;
        let elapsed_ns = started.elapsed().as_nanos() as u64;
        let total = dice.iter().map(|&d| u32::from(d)).sum();
        hypergraph_guest::info!("rolled {count}d{sides}: {dice:?} = {total}");
        Ok(Roll {
            dice,
            total,
            rolled_at_ms,
            elapsed_ns,
            nonce,
        })
    }
}

/// One fair roll in `1..=sides`, rejecting the random bytes that would bias the result.
fn die(sides: u8) -> Result<u8, String> {
    let sides = u32::from(sides);
    let zone = u32::MAX - u32::MAX % sides;
    loop {
        let r = getrandom::u32().map_err(|e| format!("no random numbers: {e}"))?;
        if r < zone {
            return Ok((r % sides) as u8 + 1);
        }
    }
}

export!(Dice);
