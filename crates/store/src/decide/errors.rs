//! The errors the store records on its own (not reported by a worker), as stored JSON values
//! `{"kind": ..., "message": ...}`. Every backend records the same ones.

use serde_json::{json, Value};

/// A step failed because it lost `lost` leases, its policy's `max_lost_leases`.
pub fn outlived_workers(lost: u32) -> Value {
    json!({
        "kind": "lease_expired",
        "message": format!(
            "the step outlived {lost} worker(s): each time, its attempt's lease expired \
             before it completed (the worker died or stalled); after {lost} lost \
             lease(s) it is not claimed again (deployment policy max_lost_leases; a step \
             that always kills its worker would otherwise take every worker down in turn)"
        ),
    })
}

/// An attempt whose lease expired; its step was claimed again.
pub fn lease_lost() -> Value {
    json!({
        "kind": "lease_expired",
        "message": "the attempt's lease expired before it completed (its worker died or \
                    stalled); the step was claimed again",
    })
}
